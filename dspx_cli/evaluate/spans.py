"""The span of one evaluated example (core/telemetry.py): the parent of its program run's span.

example {index}   dspx.example.index, dspx.example.score, dspx.example.error (its message)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dspx_cli.core.telemetry import Telemetry

if TYPE_CHECKING:
    from dspx_cli.evaluate.evaluator import ExampleResult


async def scored(telemetry: Telemetry, index: int, score: Callable[[int], Awaitable[ExampleResult]]) -> ExampleResult:
    """`score(index)` inside the example's span when tracing is on; else just `score(index)`."""
    if not telemetry.enabled:
        return await score(index)
    with telemetry.span(f"example {index}", {"dspx.example.index": index}) as span:
        result = await score(index)
        span.update({"dspx.example.score": result.score, "dspx.example.error": result.error})
        return result
