"""What a workflow tells its caller while it works: progress and one-line notices.

The command line passes its progress display and a stderr writer; a test or a library caller
passes nothing and hears nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from dspx_cli.lm.usage import UsageMeter


class Tracker(Protocol):
    def update(self, score: float | None, failed: bool) -> None:
        """One example (or row) finished."""


class ProgressFactory(Protocol):
    """Shaped like `cli.progress.Progress`: called with the run's usage meter and a label."""

    def __call__(
        self,
        meter: UsageMeter,
        label: str,
        *,
        total: int | None = None,
        unit: str = "examples",
        scored: bool = True,
    ) -> AbstractContextManager[Tracker]: ...


class Silent:
    """A progress display that shows nothing."""

    def __init__(
        self,
        meter: UsageMeter,
        label: str,
        *,
        total: int | None = None,
        unit: str = "examples",
        scored: bool = True,
    ) -> None:
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        pass

    def update(self, score: float | None, failed: bool) -> None:
        pass


class StepTracker(Protocol):
    def step(self, step: int, total: int, loss: float, tokens_per_second: float, eta_seconds: float) -> None:
        """Optimizer step `step` of `total` is done: its training loss, the tokens per second of
        training and the trainer's estimate of the time left."""


class TrainingProgressFactory(Protocol):
    """Shaped like `cli.train_progress.TrainingProgress`."""

    def __call__(self, label: str) -> AbstractContextManager[StepTracker]: ...


class SilentTraining:
    def __init__(self, label: str) -> None:
        pass

    def __enter__(self) -> SilentTraining:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        pass

    def step(self, step: int, total: int, loss: float, tokens_per_second: float, eta_seconds: float) -> None:
        pass


def _ignore(text: str) -> None:
    pass


def _ignore_trial(record: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True)
class Hooks:
    progress: ProgressFactory = Silent
    notice: Callable[[str], object] = _ignore  # a whole line, newline included
    training: TrainingProgressFactory = SilentTraining
    # One finished optimizer trial (mipro_v2; CompileJob.on_trial documents the record's keys).
    trial: Callable[[dict[str, Any]], None] = _ignore_trial
