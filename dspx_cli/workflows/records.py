"""Outputs as JSON-ready records: `run --json` and each line of `run --batch`."""

from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def outputs_record(outputs: dict[str, Any], completions: list[dict[str, Any]]) -> dict[str, Any]:
    """The outputs, plus DSPy's `completions` (every sampled completion's outputs, the first being
    the top-level fields) when a module sampled several."""
    record = dict(outputs)
    if len(completions) > 1:
        record["completions"] = completions
    return record
