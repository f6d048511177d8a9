"""Progress of a long command on stderr: a rich bar on a terminal, plain lines otherwise.

Both are driven by a clock, not by finished examples: a line (or a refresh of the bar's figures)
comes every `interval` seconds even while nothing finishes, as when a local model works through a
long generation. The figures are LM calls done (from the run's usage meter), tokens per second
and, when the number of examples is known, an ETA computed from calls: calls per finished example
(at least one) times the examples left, at the call rate so far.

Off a terminal the lines are plain text (no bar, spinner or colour); `DSPX_PROGRESS_INTERVAL`
sets the interval in seconds (default 5).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import Any

from dspx_cli.lm.usage import UsageMeter

DEFAULT_INTERVAL_S = 5.0
INTERVAL_ENV = "DSPX_PROGRESS_INTERVAL"
TERMINAL_REFRESH_S = 1.0


def progress_interval() -> float:
    text = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


class Progress:
    """`with Progress(meter, "evaluate", total=40) as progress: ... progress.update(score, failed)`.

    `total` is the number of examples (or rows) when known; `scored` shows the running mean score.
    """

    def __init__(
        self,
        meter: UsageMeter,
        label: str,
        *,
        total: int | None = None,
        unit: str = "examples",
        scored: bool = True,
    ) -> None:
        self.meter = meter
        self.label = label
        self.total = total
        self.unit = unit
        self.scored = scored
        self.done = 0
        self.errors = 0
        self.score_sum = 0.0
        self.started = time.monotonic()
        self._calls_before = self._tokens_before = 0
        self.interval = progress_interval()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._live: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        # The meter counts the whole run; rates and estimates are this phase's own.
        before = self.meter.totals()
        self._calls_before, self._tokens_before = before.calls, before.completion_tokens
        if sys.stderr.isatty():
            self._start_bar()
        every = min(self.interval, TERMINAL_REFRESH_S) if self._live is not None else self.interval
        self._ticker = threading.Thread(target=self._tick, args=(every,), name="dspx-progress", daemon=True)
        self._ticker.start()
        return self

    def update(self, score: float | None, failed: bool) -> None:
        """One example (or row) finished."""
        with self._lock:
            self.done += 1
            self.errors += failed
            self.score_sum += score or 0.0
        if self._live is not None:
            self._refresh_bar()
        elif self.total is not None and self.done == self.total:
            self._write_line()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)
        if self._live is not None:
            self._refresh_bar()
            self._live.__exit__(kind, error, tb)

    # ----- figures ------------------------------------------------------------------------------

    def figures(self) -> str:
        """`12 calls (2 cached) · 35.2 tok/s · 15 s elapsed, ~30 s left`"""
        totals = self.meter.totals()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        calls = f"{totals.calls} call{'s' if totals.calls != 1 else ''}"
        if totals.cached_calls:
            calls += f" ({totals.cached_calls} cached)"
        tokens = totals.completion_tokens - self._tokens_before
        parts = [calls, f"{tokens / elapsed:.1f} tok/s", f"{elapsed:.0f} s elapsed"]
        eta = self._eta(totals.calls - self._calls_before, elapsed)
        if eta is not None:
            parts[-1] += f", ~{eta:.0f} s left"
        return " · ".join(parts)

    def _eta(self, calls: int, elapsed: float) -> float | None:
        if self.total is None or calls == 0:
            return None
        if self.done >= self.total:
            return 0.0
        per_example = calls / self.done if self.done else 1.0  # until one finishes: at least one call each
        expected = max(per_example * self.total, calls + (self.total - self.done))
        return (expected - calls) / (calls / elapsed)

    def line(self) -> str:
        if not self.unit:  # nothing is counted but calls (compile's optimizer)
            return f"{self.label}: {self.figures()}"
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done} {self.unit}"
        parts = [f"{self.label}: {count}"]
        if self.scored and self.done:
            parts.append(f"score {self.score_sum / self.done:.3f}")
        parts += [f"{self.errors} error{'s' if self.errors != 1 else ''}", self.figures()]
        return " · ".join(parts)

    # ----- output -------------------------------------------------------------------------------

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            if self._live is not None:
                self._refresh_bar()
            else:
                self._write_line()

    def _write_line(self) -> None:
        with self._lock:
            try:
                sys.stderr.write(self.line() + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed: progress is not worth failing for
                self._stop.set()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as RichProgress

        columns: list[Any] = [TextColumn("[bold]{task.description}")]
        if self.total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        else:
            columns.append(TextColumn("{task.completed} " + self.unit))
        if self.scored:
            columns.append(TextColumn("score {task.fields[score]}"))
        if self.unit:
            columns.append(TextColumn("errors {task.fields[errors]}"))
        columns.append(TextColumn("{task.fields[figures]}"))
        # stdout carries data: let rich route it above the bar only when it is the same screen.
        self._live = RichProgress(
            *columns,
            console=Console(stderr=True),
            transient=False,
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=False,
        )
        self._live.__enter__()
        self._task = self._live.add_task(self.label, total=self.total, score="-", errors=0, figures="")

    def _refresh_bar(self) -> None:
        score = f"{self.score_sum / self.done:.3f}" if self.done else "-"
        self._live.update(self._task, completed=self.done, score=score, errors=self.errors, figures=self.figures())
