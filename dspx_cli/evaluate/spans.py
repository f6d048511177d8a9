"""The span of one evaluated example (core/telemetry.py): the parent of its program run's span.

example {index}   dspx.example.index, dspx.example.score, dspx.example.error (its message)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from dspx_cli.core.telemetry import Telemetry


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
