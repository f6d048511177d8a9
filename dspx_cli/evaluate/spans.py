"""The span of one evaluated example (core/telemetry.py): the parent of its program run's span.

example {index}   dspx.example.index, dspx.example.score, dspx.example.error (its message)

and the attributes of a phase span that scored a set of examples (`dev before`, a candidate).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from dspx_cli.core.telemetry import AttributeValue, Telemetry


class _Scored(Protocol):  # the evaluator's ExampleResult, named by shape: the evaluator imports this module
    @property
    def score(self) -> float: ...
    @property
    def error(self) -> str | None: ...


Result = TypeVar("Result", bound=_Scored)


async def scored(telemetry: Telemetry, index: int, score: Callable[[int], Awaitable[Result]]) -> Result:
    """`score(index)` inside the example's span when tracing is on; else just `score(index)`."""
    if not telemetry.enabled:
        return await score(index)
    with telemetry.span(f"example {index}", {"dspx.example.index": index}) as span:
        result = await score(index)
        span.update({"dspx.example.score": result.score, "dspx.example.error": result.error})
        return result


class _Evaluated(Protocol):  # the evaluator's Evaluation, by shape (see _Scored)
    @property
    def score(self) -> float: ...
    @property
    def errors(self) -> int: ...
    @property
    def total(self) -> int: ...


def evaluation_attributes(evaluation: _Evaluated | None) -> dict[str, AttributeValue | None]:
    """What a phase that scored a set of examples (`dev before`, a candidate) says of the result:
    dspx.score (the mean, in [0, 1] for a [0, 1] metric), dspx.examples, dspx.errors."""
    if evaluation is None:
        return {}
    return {"dspx.score": evaluation.score, "dspx.examples": evaluation.total, "dspx.errors": evaluation.errors}
