"""Progress of a long command on stderr: a rich bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

PLAIN_EVERY_S = 5.0


class EvaluationProgress:
    def __init__(self, total: int, label: str = "evaluate") -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.errors = 0
        self.score_sum = 0.0
        self.started = time.monotonic()
        self._last_line = 0.0
        self._live: Any = None
        self._task: Any = None

    def __enter__(self) -> EvaluationProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._live = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("score {task.fields[score]}"),
                TextColumn("errors {task.fields[errors]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._live.__enter__()
            self._task = self._live.add_task(self.label, total=self.total, score="-", errors=0)
        return self

    def update(self, score: float, failed: bool) -> None:
        self.done += 1
        self.errors += failed
        self.score_sum += score
        mean = f"{self.score_sum / self.done:.3f}"
        if self._live is not None:
            self._live.update(self._task, completed=self.done, score=mean, errors=self.errors)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY_S or self.done == self.total:
            self._last_line = now
            elapsed = now - self.started
            eta = elapsed / self.done * (self.total - self.done)
            sys.stderr.write(
                f"{self.label}: {self.done}/{self.total} · score {mean} · {self.errors} errors · "
                f"{elapsed:.0f} s elapsed, ~{eta:.0f} s left\n"
            )
            sys.stderr.flush()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, tb)
