"""Outputs as JSON-ready records: `run --json` and each line of `run --batch`."""

from __future__ import annotations

from typing import Any

from dspx_cli.core.json_values import jsonable

__all__ = ["jsonable", "outputs_record"]


def outputs_record(outputs: dict[str, Any], completions: list[dict[str, Any]]) -> dict[str, Any]:
    """The outputs, plus DSPy's `completions` (every sampled completion's outputs, the first being
    the top-level fields) when a module sampled several."""
    record = dict(outputs)
    if len(completions) > 1:
        record["completions"] = completions
    return record
