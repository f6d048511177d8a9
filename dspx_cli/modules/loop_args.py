"""What the looping modules (ReAct, CodeAct, ProgramOfThought) take from their caller alike: a
`max_iters` that is a whole number, and the task's inputs picked out of a call's keyword arguments.

Kept apart from the modules so that none of them imports another only for these two rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspx_cli.core import Signature

__all__ = ["check_max_iters", "task_inputs"]


def check_max_iters(max_iters: Any, minimum: int) -> int:
    """`max_iters` itself, or ValueError when it is not a whole number of at least `minimum`."""
    if not isinstance(max_iters, int) or isinstance(max_iters, bool) or max_iters < minimum:
        raise ValueError(f"max_iters must be a whole number, {minimum} or more; got {max_iters!r}")
    return max_iters


def task_inputs(signature: Signature, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The signature's input fields that `inputs` holds, in the signature's order; other keys are dropped."""
    return {name: inputs[name] for name in signature.input_fields if name in inputs}
