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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from dspx_cli.core import Prediction
    from dspx_cli.modules.predict import Predict

__all__ = [
    "SamplingOverride", "TraceStep", "current_override", "current_trace", "record", "sampling_override", "trace_scope",
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


_TRACE: ContextVar[list[TraceStep] | None] = ContextVar("dspx_trace", default=None)
_OVERRIDE: ContextVar[SamplingOverride | None] = ContextVar("dspx_sampling_override", default=None)


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


def current_trace() -> list[TraceStep] | None:
    return _TRACE.get()


def current_override() -> SamplingOverride | None:
    return _OVERRIDE.get()


def record(predictor: Predict, inputs: dict[str, Any], prediction: Prediction) -> None:
    """Append a call to the active trace; outside a trace scope calls are not recorded (no cost)."""
    trace = _TRACE.get()
    if trace is not None:
        trace.append(TraceStep(predictor, dict(inputs), prediction))
