"""Per-run traces and per-call sampling overrides, held in context variables.

Optimizers need two things from a module call that its arguments do not carry:

- a **trace**: every successful `Predict` call appends `(predictor, inputs, prediction)` to the
  trace of the run that made it (DSPy's `settings.trace`). Bootstrapping turns the steps of a
  successful run into demos for the predictors that made them.
- a **sampling override**: a temperature and a rollout id for every call of one run (DSPy's
  `lm.copy(rollout_id=..., temperature=1.0)` in later bootstrap rounds).

Both are `ContextVar`s, not attributes of the modules, because many training examples run at once
over the same modules: asyncio gives each task a copy of the context it was created in, so each
example sees only its own trace and override. The trace is a list object stored in the variable,
and the tasks a flow creates for its steps inherit the reference, so all steps of one run append
to the same list.

    with trace_scope() as trace, sampling_override(temperature=1.0, rollout_id=1):
        result = await runner.run(inputs)
    for predictor, inputs, prediction in trace: ...

A third variable carries **hints**: Refine's advice for the next attempt. DSPy wraps the adapter so
that every predictor call in the attempt gets an extra `hint_` input field; a predictor reads its
hint here when it builds its messages (`current_hint`), so the modules need no hint argument.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from dspx_cli.core import Prediction
    from dspx_cli.modules.predict import Predict

__all__ = [
    "HINT_DESC",
    "HINT_FIELD",
    "SamplingOverride",
    "TraceStep",
    "current_hint",
    "current_override",
    "current_trace",
    "hint_scope",
    "record",
    "sampling_override",
    "trace_scope",
]


class TraceStep(NamedTuple):
    """One successful predictor call; unpacks like DSPy's `(predictor, inputs, outputs)` tuples."""

    predictor: Predict
    inputs: dict[str, Any]
    prediction: Prediction


@dataclass(frozen=True)
class SamplingOverride:
    """Replaces the module's own settings for calls in scope; None keeps the module's value."""

    temperature: float | None = None
    rollout_id: int | None = None


# DSPy's Refine: the input field appended to every signature of a hinted attempt, and its description.
HINT_FIELD = "hint_"
HINT_DESC = "A hint to the module from an earlier run"


class _Hints(NamedTuple):
    """Advice per predictor; a predictor without advice gets `default` (DSPy hints every call).
    A NamedTuple: a private record, cheaper to define than a dataclass (cli/fast_path.py)."""

    advice: Mapping[Predict, str]
    default: str


_TRACE: ContextVar[list[TraceStep] | None] = ContextVar("dspx_trace", default=None)
_OVERRIDE: ContextVar[SamplingOverride | None] = ContextVar("dspx_sampling_override", default=None)
_HINTS: ContextVar[_Hints | None] = ContextVar("dspx_hints", default=None)


@contextmanager
def trace_scope() -> Iterator[list[TraceStep]]:
    """Collect the predictor calls made inside the block (and in tasks it starts) into a new list."""
    trace: list[TraceStep] = []
    token = _TRACE.set(trace)
    try:
        yield trace
    finally:
        _TRACE.reset(token)


@contextmanager
def sampling_override(*, temperature: float | None = None, rollout_id: int | None = None) -> Iterator[None]:
    """Calls inside the block use this temperature and rollout id (a distinct cache key)."""
    token = _OVERRIDE.set(SamplingOverride(temperature, rollout_id))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


@contextmanager
def hint_scope(advice: Mapping[Predict, str], default: str = "N/A") -> Iterator[None]:
    """Every predictor call inside the block gets a `hint_` input: its advice, else `default`."""
    token = _HINTS.set(_Hints(dict(advice), default))
    try:
        yield
    finally:
        _HINTS.reset(token)


def current_hint(predictor: Predict) -> str | None:
    """The hint `predictor` must show in this context; None outside a hint scope."""
    hints = _HINTS.get()
    if hints is None:
        return None
    return hints.advice.get(predictor, hints.default)


def current_trace() -> list[TraceStep] | None:
    return _TRACE.get()


def current_override() -> SamplingOverride | None:
    return _OVERRIDE.get()


def record(predictor: Predict, inputs: dict[str, Any], prediction: Prediction) -> None:
    """Append a call to the active trace; outside a trace scope calls are not recorded (no cost)."""
    trace = _TRACE.get()
    if trace is not None:
        trace.append(TraceStep(predictor, dict(inputs), prediction))
