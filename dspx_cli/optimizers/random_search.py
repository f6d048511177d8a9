"""BootstrapFewShotWithRandomSearch: several few-shot candidates, the best on the valset wins.

DSPy: `dspy/teleprompt/random_search.py`, `BootstrapFewShotWithRandomSearch.compile`. Matched:

- Candidates are built for `candidate_seed in range(-3, num_candidate_programs)`, so there are
  `num_candidate_programs + 3` of them, in that order:
  - `-3`: zero-shot, every predictor without demos (DSPy's `student.reset_copy()`).
  - `-2`: LabeledFewShot(k=max_labeled_demos) on the trainset as given.
  - `-1`: BootstrapFewShot on the trainset as given, `max_bootstrapped_demos` as configured.
  - `s >= 0`: the trainset shuffled with a fresh `random.Random(s)`, and the bootstrap quota drawn
    with *another* fresh `random.Random(s).randint(1, max_bootstrapped_demos)` (DSPy makes two
    RNGs with the same seed, so the draw does not continue the shuffle's stream); then
    BootstrapFewShot on the shuffled trainset with that quota. The teacher's labeled demos and the
    raw demos are therefore drawn from the shuffled order.
- Every candidate starts from the student as given (the caller's runner is only changed at the end).
- The valset is `valset or trainset` (an empty valset falls back too, as DSPy's `or` does).
- Each candidate is scored with `evaluate` over the valset; failures score 0 and count, and more
  than `max_errors` failed examples abort the search (DSPy's Evaluate raises).
- Selection: a candidate replaces the best only with a strictly greater score, so ties keep the
  earliest seed. Scores are compared as DSPy's Evaluate reports them, a percentage rounded to two
  decimals, so differences DSPy cannot see do not change the choice here either.
- `stop_at_score`: after a candidate scores `>= stop_at_score` no further candidate is built. dspx
  scores are in [0, 1], so the threshold is too (DSPy's is a percentage).

`seed` (DSPy has none; `seed=0` reproduces it) seeds the labeled and bootstrap samplers, which
DSPy always seeds with 0, and moves the shuffle seeds: candidate `s` shuffles with
`s + seed * 2**32`, so two seeds never share a shuffled candidate.

Candidates run one after another, as in DSPy (stop_at_score depends on the order); `num_threads`
is the concurrency inside each one's bootstrapping and evaluation. Bootstrapping concurrently
yields the demos a sequential run would (see bootstrap.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example
from dspx_cli.errors import DspxError, UsageError
from dspx_cli.evaluate.evaluator import dspy_percent, evaluate
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.evaluate.spans import evaluation_attributes
from dspx_cli.optimizers.demo_sets import MIN_NUM_SAMPLES, ZERO_SHOT, build_candidate
from dspx_cli.optimizers.registry import CompileJob
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.runner import ProgramRunner

__all__ = [
    "CandidateResult",
    "RandomSearchReport",
    "bootstrap_random_search",
    "compile_bootstrap_random_search",
    "shuffle_seed",
]

_SEED_STRIDE = 2**32


@dataclass
class CandidateResult:
    seed: int  # DSPy's candidate seed: -3 zero-shot, -2 labeled only, -1 unshuffled, >= 0 shuffled
    score: float  # mean metric over the valset, in [0, 1] for a [0, 1] metric
    max_bootstrapped_demos: int | None  # the bootstrap quota this candidate used (None: no bootstrap)
    bootstrapped: list[int] = field(default_factory=list)  # trainset indexes (original order) that became demos
    demos: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # predictor -> its demos
    errors: int = 0  # valset examples whose run failed


@dataclass
class RandomSearchReport:
    candidates: list[CandidateResult] = field(default_factory=list)  # in the order built (seed order)
    best_seed: int | None = None
    best_score: float | None = None
    stopped_early: bool = False  # stop_at_score was reached before the last seed

    def ranked(self) -> list[CandidateResult]:
        """Best first, ties in seed order: DSPy's `candidate_programs` order."""
        return sorted(self.candidates, key=lambda c: _comparable(c.score), reverse=True)


def shuffle_seed(seed: int, candidate_seed: int) -> int:
    """The `random.Random` seed that shuffles the trainset for candidate `candidate_seed >= 0`."""
    return candidate_seed + seed * _SEED_STRIDE


async def bootstrap_random_search(
    runner: ProgramRunner,
    trainset: Sequence[Example],
    metric: Metric,
    *,
    valset: Sequence[Example] | None = None,
    num_candidate_programs: int = 16,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 16,
    max_rounds: int = 1,
    metric_threshold: float | None = None,
    num_threads: int = 16,
    seed: int = 0,
    stop_at_score: float | None = None,
    max_errors: int | None = 10,
    teacher: ProgramRunner | None = None,
    teacher_compiled: bool = False,
) -> RandomSearchReport:
    """Set the demos of every predictor of `runner` to those of the best candidate, in place."""
    if seed < 0:
        # random.Random(n) seeds with abs(n): negative seeds would alias positive ones.
        raise UsageError(f"seed must be >= 0, got {seed}")
    if num_candidate_programs > 0 and max_bootstrapped_demos < MIN_NUM_SAMPLES:
        # DSPy fails at the first shuffled seed (randint(1, 0)); say why before any LM call.
        raise UsageError(
            f"max_bootstrapped_demos must be >= {MIN_NUM_SAMPLES} when num_candidate_programs > 0 "
            f"(shuffled candidates draw their quota from {MIN_NUM_SAMPLES}..max_bootstrapped_demos)"
        )
    examples = list(trainset)
    scoring = list(valset) if valset else examples
    if not scoring:
        raise UsageError("random search needs a non-empty valset or trainset to score candidates on")

    report = RandomSearchReport()
    best_demos: dict[str, list[dict[str, Any]]] | None = None
    best_key: float | None = None

    for candidate_seed in range(ZERO_SHOT, num_candidate_programs):

        def shuffle(order: list[int], candidate_seed: int = candidate_seed) -> int:
            random.Random(shuffle_seed(seed, candidate_seed)).shuffle(order)
            # A second fresh RNG, not the shuffle's: DSPy draws the size from Random(seed) anew.
            return random.Random(shuffle_seed(seed, candidate_seed)).randint(MIN_NUM_SAMPLES, max_bootstrapped_demos)

        # A span per candidate: its bootstrap and its scoring on the valset are children.
        with runner.telemetry.span(f"candidate {candidate_seed}", {"dspx.candidate.seed": candidate_seed}) as span:
            built = await build_candidate(
                runner,
                examples,
                metric,
                candidate_seed,
                shuffle,
                labeled_only=True,  # DSPy's random search builds -2 with LabeledFewShot whatever k is
                max_bootstrapped_demos=max_bootstrapped_demos,
                max_labeled_demos=max_labeled_demos,
                max_rounds=max_rounds,
                metric_threshold=metric_threshold,
                teacher=teacher,
                teacher_compiled=teacher_compiled,
                max_errors=max_errors,
                concurrency=num_threads,
                seed=seed,
            )
            candidate, quota, bootstrapped = built.runner, built.max_bootstrapped_demos, built.bootstrapped

            evaluation = await evaluate(candidate, scoring, metric, concurrency=num_threads, max_errors=max_errors)
            if evaluation.aborted:
                raise DspxError(f"random search, candidate seed {candidate_seed}: {evaluation.aborted}")
            score = evaluation.score
            named = named_predictors(candidate)
            report.candidates.append(
                CandidateResult(
                    seed=candidate_seed,
                    score=score,
                    max_bootstrapped_demos=quota,
                    bootstrapped=bootstrapped,
                    demos={name: list(predictor.demos) for name, predictor in named},
                    errors=evaluation.errors,
                )
            )
            key = _comparable(score)
            if best_key is None or key > best_key:  # strict: ties keep the earlier seed, as in DSPy
                best_key = key
                best_demos = report.candidates[-1].demos
                report.best_seed, report.best_score = candidate_seed, score
            span.update(
                {
                    **evaluation_attributes(evaluation),
                    "dspx.candidate.max_bootstrapped_demos": quota,
                    "dspx.candidate.new_best": report.best_seed == candidate_seed,
                }
            )
            if stop_at_score is not None and score >= stop_at_score:
                report.stopped_early = candidate_seed < num_candidate_programs - 1
                break

    if best_demos is not None:
        for name, predictor in named_predictors(runner):
            predictor.demos = list(best_demos[name])
    return report


def _comparable(score: float) -> float:
    """The score as DSPy's Evaluate returns it (a percentage, two decimals), for comparisons."""
    return dspy_percent(score, 1)


async def compile_bootstrap_random_search(
    runner: ProgramRunner, settings: dict[str, Any], job: CompileJob
) -> dict[str, Any]:
    """The registry's entry point (optimizers/registry.py); `settings` without `teacher` (see `job`)."""
    settings = dict(settings)
    num_threads = settings.pop("num_threads", None) or job.concurrency
    search = await bootstrap_random_search(
        runner,
        job.trainset,
        job.metric,
        valset=job.valset,
        num_threads=num_threads,
        teacher=job.teacher,
        teacher_compiled=job.teacher_compiled,
        **settings,
    )
    candidates = [
        {"seed": c.seed, "score": c.score, "demos": {name: len(demos) for name, demos in c.demos.items()}}
        for c in search.candidates
    ]
    return {"candidates": candidates, "best_seed": search.best_seed, "best_score": search.best_score}
