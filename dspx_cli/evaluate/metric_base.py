"""What every metric shares, and the registry of built-in metrics.

A metric scores one prediction against its example as a float. The built-ins are records in
`METRICS` (name, option keys, builder, docs line); `evaluate/builtin_metrics.py` registers them,
and `resolve_metric`, its error messages and the docs read the registry, so a new built-in is one
function plus its `register_metric` call. The judge and the Python-metric forms import this module
and nothing above it, so imports run one way: metrics -> judge -> metric_base.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dspx_cli.core import Example, Prediction
from dspx_cli.errors import DspxError, ProgramError, UsageError
from dspx_cli.program.model import Program
from dspx_cli.program.source import KeyPath

__all__ = [
    "METRICS",
    "Metric",
    "MetricError",
    "MetricOrigin",
    "MetricType",
    "as_score",
    "metric_forms",
    "register_metric",
]


class Metric(Protocol):
    name: str

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float: ...


class MetricError(DspxError):
    """Scoring one example failed (a missing field, a metric returning a string, ...)."""


def as_score(value: Any, name: str) -> float:
    """bool -> 1.0/0.0, a number -> float; a record with a `score` field (DSPy's dspy.Prediction(score=...))."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Example | Mapping) and "score" in value:
        return as_score(value["score"], name)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise MetricError(f"metric {name} returned {type(value).__name__} {shown}; expected a bool or a number")


@dataclass(frozen=True)
class MetricOrigin:
    """Where a metric spec was written: in the program file (`key_path`) or on the command line."""

    program: Program
    key_path: KeyPath | None

    @property
    def base_dir(self) -> Path:
        return self.program.base_dir if self.key_path is not None else Path.cwd()

    def error(self, message: str, *sub: str | int) -> DspxError:
        if self.key_path is None:
            return UsageError(f"--metric: {message}")
        return ProgramError(message, self.program.positions.locate((*self.key_path, *sub)))


@dataclass(frozen=True)
class MetricType:
    """One built-in metric: `build(options, origin)` checks the options against the program and
    returns the scorer; `options` are the keys allowed beside `name`; `doc` is its docs line."""

    name: str
    options: frozenset[str]
    build: Callable[[Mapping[str, Any], MetricOrigin], Metric]
    doc: str


METRICS: dict[str, MetricType] = {}


def register_metric(name: str, options: set[str], doc: str) -> Callable[[Callable[..., Metric]], Callable[..., Metric]]:
    """Decorates a builder `(options, origin) -> Metric` and records it under `name`."""

    def register(build: Callable[..., Metric]) -> Callable[..., Metric]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = MetricType(name, frozenset(options), build, doc)
        return build

    return register


def metric_forms() -> str:
    """The accepted spellings of `metric:`, for "expected ..." messages."""
    return f'a built-in ({", ".join(METRICS)}), {{python: "file.py:function"}} or {{judge: {{...}}}}'
