"""Training progress on stderr: step, loss, tokens per second and time left.

On a terminal a rich bar (colour unless NO_COLOR is set, which rich reads itself); otherwise a
plain line for the first step, then at most one every `DSPX_PROGRESS_INTERVAL` seconds (default 5),
and one for the last step, so a log shows the run without a line per step. The rate and the time
left are the trainer's: tokens per second of training time in this process (a resumed run counts
from its first step), and the remaining steps at this session's pace.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any

from dspx_cli.cli.progress import progress_interval


class TrainingProgress:
    """`with TrainingProgress("train") as progress: ... progress.step(step, total, loss, rate, eta)`."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.interval = progress_interval()
        self._lock = threading.Lock()
        self._live: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        self._last_line = float("-inf")  # the first step always prints
        self._figures: tuple[int, int, float, float, float] | None = None

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

    def step(self, step: int, total: int, loss: float, tokens_per_second: float, eta_seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._figures = (step, total, loss, tokens_per_second, eta_seconds)
            if self._live is not None:
                self._live.update(self._task, completed=step, total=total, figures=self.figures())
            elif step >= total or now - self._last_line >= self.interval:
                self._last_line = now
                self._write(self.line())

    def figures(self) -> str:
        """`loss 1.234 · 812 tok/s · 40 s elapsed, ~2 min left`"""
        if self._figures is None:
            return "starting"
        step, total, loss, rate, eta = self._figures
        parts = [f"loss {loss:.4f}", f"{rate:.0f} tok/s", f"{time.monotonic() - self._started:.0f} s elapsed"]
        if step < total:
            parts[-1] += f", ~{_duration(eta)} left"
        return " · ".join(parts)

    def line(self) -> str:
        if self._figures is None:
            return f"{self.label}: starting"
        step, total = self._figures[:2]
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
