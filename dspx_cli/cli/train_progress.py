"""Training progress on stderr: step, loss, tokens per second and time left.

On a terminal a rich bar (colour unless NO_COLOR is set, which rich reads itself); otherwise a
plain line at most every `DSPX_PROGRESS_INTERVAL` seconds (default 5) and one for the last step,
so a log shows the run without a line per step. Rates count only the steps of this process: a
resumed run's first step starts the clock.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any

from dspx_cli.cli.progress import progress_interval


class TrainingProgress:
    """`with TrainingProgress("train") as progress: ... progress.step(step, total, loss, tokens)`."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.interval = progress_interval()
        self._lock = threading.Lock()
        self._live: Any = None
        self._task: Any = None
        self._started: float | None = None  # at the first step this process reported
        self._first_step = 0
        self._last_line = float("-inf")  # the first step always prints
        self._figures: tuple[int, int, float, int] | None = None

    def __enter__(self) -> TrainingProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._live = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                console=Console(stderr=True),
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.__enter__()
            self._task = self._live.add_task(self.label, total=None, figures="starting")
        return self

    def step(self, step: int, total: int, loss: float, tokens: int) -> None:
        now = time.monotonic()
        with self._lock:
            if self._started is None:
                self._started, self._first_step = now, step - 1
            self._figures = (step, total, loss, tokens)
            if self._live is not None:
                self._live.update(self._task, completed=step, total=total, figures=self.figures())
            elif step >= total or now - self._last_line >= self.interval:
                self._last_line = now
                self._write(self.line())

    def figures(self) -> str:
        """`loss 1.234 · 812 tok/s · 40 s elapsed, ~2 min left`"""
        if self._figures is None or self._started is None:
            return "starting"
        step, total, loss, tokens = self._figures
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = step - self._first_step
        parts = [f"loss {loss:.4f}", f"{tokens / elapsed:.0f} tok/s", f"{elapsed:.0f} s elapsed"]
        if 0 < done and step < total:
            parts[-1] += f", ~{_duration(elapsed / done * (total - step))} left"
        return " · ".join(parts)

    def line(self) -> str:
        if self._figures is None:
            return f"{self.label}: starting"
        step, total, _, _ = self._figures
        return f"{self.label}: step {step}/{total} · {self.figures()}"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, tb)

    def _write(self, text: str) -> None:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed: progress is not worth failing for
            pass


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
