"""Reward functions for best_of_n and refine modules, made from their `reward:` metric specs.

A reward is scored the moment a module produces a prediction, before any label is known, so the
metric sees an example holding only the module's inputs: use a Python function, an LM judge, or a
label-free built-in such as `{name: regex, pattern: ...}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dspx_cli.core import Example, Prediction
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.program.context import RunContext
from dspx_cli.program.model import Program

if TYPE_CHECKING:
    # A type only: importing dspx_cli.modules at run time would load every module type.
    from dspx_cli.modules import RewardFn

__all__ = ["build_rewards"]


def build_rewards(program: Program, context: RunContext | None, *, run_code: bool = True) -> dict[str, RewardFn]:
    """Checked before any LM call; `context=None` only validates (an LM judge needs a context to run),
    and `run_code=False` checks Python rewards by parsing their files."""
    rewards: dict[str, RewardFn] = {}
    for name, definition in program.modules.items():
        if definition.reward is None:
            continue
        metric = resolve_metric(
            program, context, definition.reward, where=("modules", name, "reward"), run_code=run_code
        )

        async def reward(inputs: dict[str, Any], prediction: Prediction, metric: Any = metric) -> float:
            return await metric(Example(inputs).with_inputs(*inputs), prediction)

        rewards[name] = reward
    return rewards
