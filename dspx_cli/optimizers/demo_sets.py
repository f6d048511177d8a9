"""Few-shot demo-set candidates: DSPy 3.4.1's `create_n_fewshot_demo_sets` (dspy/teleprompt/utils.py)
in dspx terms, and the candidate builder it shares with random search (random_search.py).

Candidates are labelled `seed in range(-3, num_sets - 3)`, built in that order, each from the
student as given (the caller's runner is never changed):

- `-3`: zero-shot, every predictor without demos (DSPy's `student.reset_copy()`).
- `-2`: LabeledFewShot(k=max_labeled_demos) on the trainset as given, sampled with `Random(0)`.
  MIPROv2 only takes this branch when `max_labeled_demos > 0`; otherwise `-2` is built like a
  shuffled candidate (below), drawing from the shared RNG. Random search always takes it.
- `-1`: BootstrapFewShot on the trainset as given, with `max_bootstrapped_demos`.
- `>= 0` (and MIPROv2's `-2` as said): the trainset is shuffled and the bootstrap quota drawn,
  `randint(1, max_bootstrapped_demos)`, then BootstrapFewShot on the shuffled trainset with that
  quota. MIPROv2 takes both draws from one shared `random.Random` (the shuffle, then the quota,
  per candidate, so the stream continues across candidates and into the proposer and the
  minibatches); random search makes fresh `Random(s)` RNGs per candidate (see random_search.py).

BootstrapFewShot keeps its own `Random(0)` for the raw demos it adds up to `max_labeled_demos`, and
LabeledFewShot its `Random(0)`: DSPy seeds neither from the optimizer's seed, so MIPROv2's demo sets
pass `seed=0` to both. A shuffled candidate's bootstrapped demos, and its raw ones, come from the
shuffled order.

With `max_bootstrapped_demos < 1` DSPy fails at the first shuffled candidate (`randint(1, 0)`, after
the shuffle); dspx shuffles, then uses a quota of 0 (no bootstrapped demos, raw ones only), so the
RNG stream is the one DSPy consumed up to its failure. MIPROv2 in zero-shot mode never gets there:
it asks for 3 bootstrapped and 0 labeled demos per set (its caller's job).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.optimizers.bootstrap import bootstrap_few_shot
from dspx_cli.optimizers.labeled import clone_runner, labeled_few_shot
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.runner import ProgramRunner

__all__ = [
    "LABELED_ONLY",
    "MIN_NUM_SAMPLES",
    "UNSHUFFLED",
    "ZERO_SHOT",
    "BuiltCandidate",
    "DemoSets",
    "build_candidate",
    "create_demo_sets",
]

ZERO_SHOT, LABELED_ONLY, UNSHUFFLED = -3, -2, -1
# DSPy's `min_num_samples`: the smallest bootstrap quota a shuffled candidate can draw.
MIN_NUM_SAMPLES = 1

# Shuffles a list of trainset indexes in place and returns the bootstrap quota to use with it.
Shuffler = Callable[[list[int]], int]


@dataclass
class BuiltCandidate:
    runner: ProgramRunner  # a clone of the student with this candidate's demos
    max_bootstrapped_demos: int | None  # the bootstrap quota used (None: no bootstrap)
    bootstrapped: list[int] = field(default_factory=list)  # trainset indexes (original order) that became demos


@dataclass
class DemoSets:
    """MIPROv2's demo-set candidates: `sets[name][j]` is predictor `name`'s demos in candidate `j`,
    whose DSPy label is `seeds[j]` (-3 zero-shot, -2 labeled, -1 unshuffled bootstrap, 0.. shuffled)."""

    seeds: list[int] = field(default_factory=list)
    sets: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)


async def build_candidate(
    runner: ProgramRunner,
    examples: Sequence[Example],
    metric: Metric,
    candidate_seed: int,
    shuffle: Shuffler,
    *,
    labeled_only: bool,
    max_bootstrapped_demos: int,
    max_labeled_demos: int,
    max_rounds: int = 1,
    metric_threshold: float | None = None,
    teacher: ProgramRunner | None = None,
    teacher_compiled: bool = False,
    max_errors: int | None = 10,
    concurrency: int = 16,
    seed: int = 0,
) -> BuiltCandidate:
    """One candidate of either optimizer. `labeled_only`: whether `-2` is LabeledFewShot (else it
    is built as a shuffled candidate); `shuffle` is called for shuffled candidates only; `seed`
    seeds LabeledFewShot and BootstrapFewShot's raw-demo sampling (DSPy: always 0)."""
    candidate = clone_runner(runner)
    if candidate_seed == ZERO_SHOT:
        for _, predictor in named_predictors(candidate):
            predictor.demos = []
        return BuiltCandidate(candidate, None)
    if candidate_seed == LABELED_ONLY and labeled_only:
        await labeled_few_shot(candidate, examples, k=max_labeled_demos, seed=seed)
        return BuiltCandidate(candidate, None)
    order = list(range(len(examples)))
    quota = max_bootstrapped_demos if candidate_seed == UNSHUFFLED else shuffle(order)
    result = await bootstrap_few_shot(
        candidate,
        [examples[i] for i in order],
        metric,
        max_bootstrapped_demos=quota,
        max_labeled_demos=max_labeled_demos,
        max_rounds=max_rounds,
        metric_threshold=metric_threshold,
        teacher=teacher,
        teacher_compiled=teacher_compiled,
        max_errors=max_errors,
        concurrency=concurrency,
        seed=seed,
    )
    return BuiltCandidate(candidate, quota, [order[i] for i in result.bootstrapped])


async def create_demo_sets(
    runner: ProgramRunner,
    trainset: Sequence[Example],
    metric: Metric,
    rng: random.Random,
    *,
    num_sets: int,
    max_bootstrapped_demos: int,
    max_labeled_demos: int,
    max_rounds: int = 1,
    metric_threshold: float | None = None,
    max_errors: int | None = 10,
    teacher: ProgramRunner | None = None,
    teacher_compiled: bool = False,
    concurrency: int = 16,
) -> DemoSets:
    """`num_sets` candidates (labels -3 .. num_sets - 4), drawing from `rng` exactly as DSPy's
    `create_n_fewshot_demo_sets(..., rng=self.rng)` does; `runner` is left unchanged."""
    examples = list(trainset)

    def shuffle(order: list[int]) -> int:
        rng.shuffle(order)
        if max_bootstrapped_demos < MIN_NUM_SAMPLES:
            return 0  # DSPy's randint(1, 0) raises here, before drawing (see the module docstring)
        return rng.randint(MIN_NUM_SAMPLES, max_bootstrapped_demos)

    names = [name for name, _ in named_predictors(runner)]
    result = DemoSets(sets={name: [] for name in names})
    for candidate_seed in range(ZERO_SHOT, num_sets + ZERO_SHOT):
        with runner.telemetry.span(f"demo set {candidate_seed}", {"dspx.candidate.seed": candidate_seed}):
            built = await build_candidate(
                runner,
                examples,
                metric,
                candidate_seed,
                shuffle,
                labeled_only=max_labeled_demos > 0,
                max_bootstrapped_demos=max_bootstrapped_demos,
                max_labeled_demos=max_labeled_demos,
                max_rounds=max_rounds,
                metric_threshold=metric_threshold,
                teacher=teacher,
                teacher_compiled=teacher_compiled,
                max_errors=max_errors,
                concurrency=concurrency,
            )
        result.seeds.append(candidate_seed)
        for name, predictor in named_predictors(built.runner):
            result.sets[name].append(list(predictor.demos))
    return result
