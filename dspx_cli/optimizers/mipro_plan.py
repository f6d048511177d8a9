"""MIPROv2's run plan: how many candidates and trials, which valset, minibatches or not.

DSPy 3.4.1: `teleprompt/mipro_optimizer_v2.py` (`compile`, `_set_hyperparams_from_run_mode`,
`_set_num_trials_from_num_candidates`, `_set_and_validate_datasets`, the trial count printed by
`_optimize_prompt_parameters`) and `teleprompt/utils.py` (`create_minibatch`). Pinned by
`tests/fixtures/mipro/golden.json` (`hyperparameters`).

- Zero-shot mode: `max_bootstrapped_demos == 0 and max_labeled_demos == 0`. Demo sets are still
  bootstrapped (3 demos, no labeled ones) to show the proposer, but trials choose instructions only.
- `auto` light/medium/heavy sets N demo-set candidates, N (zero-shot) or int(N / 2) instruction
  candidates, the trial count from the formula below, and draws the valset with the shared RNG:
  `rng.sample(range(len(valset)), min(val_size, len(valset)))`, which reorders a small valset too.
  That draw is the RNG's first use. Minibatching is then on only for a kept valset of more than 50.
- Trial count: `int(max(2 * M * log2(N), 1.5 * N))`, M = predictors (zero-shot) or twice that.
- Without a valset DSPy cuts the last `min(1000, max(1, int(0.8 * len(train))))` examples off the
  trainset; dspx keeps that rule for a program without dev data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dspx_cli.errors import UsageError

__all__ = [
    "AUTO_RUN_SETTINGS",
    "BOOTSTRAPPED_DEMOS_IN_CONTEXT",
    "MIN_MINIBATCH_SIZE",
    "MiproPlan",
    "adjusted_num_trials",
    "num_trials_for",
    "plan_mipro",
    "split_valset",
]

# light/medium/heavy: N candidates, and the largest valset kept.
AUTO_RUN_SETTINGS: dict[str, dict[str, int]] = {
    "light": {"n": 6, "val_size": 100},
    "medium": {"n": 12, "val_size": 300},
    "heavy": {"n": 18, "val_size": 1000},
}
# An `auto` run minibatches only when the kept valset is larger than this.
MIN_MINIBATCH_SIZE = 50
# Zero-shot mode bootstraps this many demos per set (DSPy's BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT)
# and no labeled ones (LABELED_FEWSHOT_EXAMPLES_IN_CONTEXT is 0): the proposer's task demos.
BOOTSTRAPPED_DEMOS_IN_CONTEXT = 3

T = TypeVar("T")


def num_trials_for(num_predictors: int, zeroshot: bool, num_candidates: int) -> int:
    """DSPy's `_set_num_trials_from_num_candidates`: instruction and demo choices per predictor."""
    variables = num_predictors if zeroshot else 2 * num_predictors
    return int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))


def adjusted_num_trials(num_trials: int, minibatch: bool, steps: int) -> int:
    """The trial total DSPy announces: objective trials, plus with minibatching the baseline and
    the full evaluations (one every `steps`, and one more at the end unless `steps` divides)."""
    if not minibatch:
        return num_trials
    return num_trials + num_trials // steps + 1 + (1 if num_trials % steps else 0)


def split_valset(trainset: Sequence[T], valset: Sequence[T] | None) -> tuple[list[T], list[T]]:
    """DSPy's `_set_and_validate_datasets`: no valset cuts the last 80% (at most 1000) off the trainset."""
    train = list(trainset)
    if not train:
        raise UsageError("mipro_v2 needs a non-empty trainset")
    if valset:
        return train, list(valset)
    if len(train) < 2:
        raise UsageError("mipro_v2 without dev data needs at least 2 training examples (it splits off a valset)")
    size = min(1000, max(1, int(len(train) * 0.8)))
    cutoff = len(train) - size
    return train[:cutoff], train[cutoff:]


@dataclass(frozen=True)
class MiproPlan:
    zeroshot: bool
    num_trials: int  # objective trials (the baseline and added full evaluations do not count)
    num_instruction_candidates: int
    num_demo_sets: int
    minibatch: bool
    minibatch_size: int
    full_eval_steps: int
    valset_indexes: tuple[int, ...]  # positions in the given valset, in the order kept

    @property
    def adjusted_num_trials(self) -> int:
        return adjusted_num_trials(self.num_trials, self.minibatch, self.full_eval_steps)

    def full_eval_due(self, trial_num: int) -> bool:
        """After objective trial `trial_num` (optuna's number + 1): a full evaluation of the best
        mean minibatch combination not fully evaluated yet (DSPy's cadence)."""
        if not self.minibatch:
            return False
        return trial_num % (self.full_eval_steps + 1) == 0 or trial_num == self.adjusted_num_trials - 1

    def bootstrap_quota(self, max_bootstrapped_demos: int, max_labeled_demos: int) -> tuple[int, int]:
        """(max_bootstrapped_demos, max_labeled_demos) for the demo sets: zero-shot mode bootstraps
        a few demos for the proposer only."""
        if self.zeroshot:
            return BOOTSTRAPPED_DEMOS_IN_CONTEXT, 0
        return max_bootstrapped_demos, max_labeled_demos


def plan_mipro(settings: dict[str, Any], num_predictors: int, valset_size: int, rng: random.Random) -> MiproPlan:
    """The plan for `settings` (MiproV2Settings' fields). With `auto` this draws the valset from
    `rng` (its first use, as in DSPy); without, the valset is kept whole and in order."""
    auto = settings.get("auto")
    num_candidates = settings.get("num_candidates")
    num_trials = settings.get("num_trials")
    zeroshot = settings.get("max_bootstrapped_demos", 4) == 0 and settings.get("max_labeled_demos", 4) == 0
    minibatch = bool(settings.get("minibatch", True))
    minibatch_size = int(settings.get("minibatch_size", 35))
    steps = int(settings.get("minibatch_full_eval_steps", 5))
    if valset_size < 1:
        raise UsageError("mipro_v2 needs at least one validation example")
    if auto is not None:
        if auto not in AUTO_RUN_SETTINGS:
            raise UsageError(f"mipro_v2: auto must be light, medium or heavy, got {auto!r}")
        if num_candidates is not None or num_trials is not None:
            raise UsageError("mipro_v2: auto sets num_candidates and num_trials; give either auto or both of them")
        n = AUTO_RUN_SETTINGS[auto]["n"]
        indexes = tuple(rng.sample(range(valset_size), min(AUTO_RUN_SETTINGS[auto]["val_size"], valset_size)))
        minibatch = len(indexes) > MIN_MINIBATCH_SIZE
        plan = MiproPlan(
            zeroshot=zeroshot,
            num_trials=num_trials_for(num_predictors, zeroshot, n),
            num_instruction_candidates=n if zeroshot else int(n * 0.5),
            num_demo_sets=n,
            minibatch=minibatch,
            minibatch_size=minibatch_size,
            full_eval_steps=steps,
            valset_indexes=indexes,
        )
    else:
        if num_candidates is None or num_trials is None:
            hint = ""
            if num_candidates is not None and num_candidates >= 1:
                hint = f" (for num_candidates={num_candidates}, about {num_trials_for(num_predictors, zeroshot, num_candidates)})"
            raise UsageError(f"mipro_v2 without auto needs both num_candidates and num_trials{hint}")
        plan = MiproPlan(
            zeroshot=zeroshot,
            num_trials=int(num_trials),
            num_instruction_candidates=int(num_candidates),
            num_demo_sets=int(num_candidates),
            minibatch=minibatch,
            minibatch_size=minibatch_size,
            full_eval_steps=steps,
            valset_indexes=tuple(range(valset_size)),
        )
    if plan.minibatch and plan.minibatch_size > len(plan.valset_indexes):
        raise UsageError(
            f"mipro_v2: minibatch_size {plan.minibatch_size} exceeds the valset ({len(plan.valset_indexes)} examples); "
            "lower it or set minibatch: false"
        )
    if plan.minibatch and plan.full_eval_steps < 1:
        raise UsageError("mipro_v2: minibatch_full_eval_steps must be >= 1")
    return plan
