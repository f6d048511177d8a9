"""COPRO: better instructions (and last-field prefixes) by proposing, scoring and proposing again.

DSPy: `dspy/teleprompt/copro_optimizer.py`, `COPRO.compile`. Matched step by step:

1. For each predictor, the prompt LM proposes `breadth - 1` instructions (`BasicGenerateInstruction`,
   at `init_temperature`); the predictor's own instruction and the prefix of its signature's last
   field are appended as one more candidate (copro_proposals.py sends the requests).
2. For `d` in `range(depth)`, for each predictor in DSPy's order: its candidates are scored on the
   whole trainset (the latest proposals; with several predictors every proposal so far, since the
   others have changed). A candidate sets the instruction and the last field's prefix (both
   stripped of `"` and white space) on a working copy of the program. Scores are DSPy's
   (`Evaluate`: a percentage rounded to two decimals) and are stored per `(instruction, prefix)`
   unless an equal or better score is stored already. The predictor is then set to its best
   stored candidate (the first of the highest) before the next predictor is scored.
3. Unless at the last depth, per predictor: the best `min(breadth, stored)` candidates, listed
   worst first as `Instruction #k`, `Prefix #k`, `Resulting Score #k`, go to
   `GenerateInstructionGivenAttempts` for `breadth` new proposals.
4. Every predictor's stored candidates are pooled and sorted by score (stable); the first one's
   program, the working copy as it was when that candidate was scored, is the result. DSPy's
   `_drop_duplicates` compares the last fields as pydantic objects, by identity, and every
   candidate was scored with a field object of its own, so it drops nothing; dspx keeps them all
   too, so the candidate list is DSPy's.

DSPy's `track_stats` statistics are kept as well (`results_best`, `results_latest`, `total_calls`),
including DSPy's habit of collecting `results_latest` over all predictors scored so far at a depth.

Departures: a proposal that does not parse is asked once more and then dropped with a warning
(DSPy dies; see copro_proposals.py); an evaluation with more than `max_errors` failed examples
stops the run with an error naming the candidate.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example, Signature
from dspx_cli.core.telemetry import AttributeValue
from dspx_cli.errors import DspxError, UsageError
from dspx_cli.evaluate.evaluator import evaluate
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.lm.base import LM
from dspx_cli.optimizers.copro_proposals import Proposal, Proposer
from dspx_cli.optimizers.labeled import clone_runner
from dspx_cli.optimizers.registry import CompileJob
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.runner import ProgramRunner

__all__ = ["Candidate", "CoproReport", "compile_copro", "copro", "with_candidate"]

# DSPy keeps statistics over the best ten candidates of a predictor.
_STATS_TOP = 10


@dataclass
class Candidate:
    """One scored (instruction, prefix) of one predictor: DSPy's `evaluated_candidates` entry."""

    predictor: str
    instruction: str
    prefix: str
    score: float  # DSPy's: a percentage rounded to two decimals
    mean: float  # dspx's: the metric's mean over the trainset, in [0, 1] for a [0, 1] metric
    depth: int
    program: dict[str, Signature]  # every predictor's signature when it was scored


@dataclass
class Stats:
    """DSPy's `results_best` / `results_latest` entry for one predictor."""

    depth: list[int] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    average: list[float] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def add(self, depth: int, scores: Sequence[float]) -> None:
        if not scores:  # every proposal of this depth was dropped: nothing to describe
            return
        self.depth.append(depth)
        self.max.append(max(scores))
        self.average.append(sum(scores) / len(scores))
        self.min.append(min(scores))
        self.std.append(statistics.pstdev(scores))

    def to_dict(self) -> dict[str, list[Any]]:
        return {"depth": self.depth, "max": self.max, "average": self.average, "min": self.min, "std": self.std}


@dataclass
class CoproReport:
    candidates: list[Candidate]  # every predictor's, pooled, best first (DSPy's `candidate_programs`)
    total_calls: int  # evaluations of the trainset
    results_best: dict[str, Stats]
    results_latest: dict[str, Stats]
    dropped: int  # proposals that did not parse twice
    kept_original: bool = False  # no candidate scored above the program as given, which stays

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


def with_candidate(signature: Signature, instruction: str, prefix: str) -> Signature:
    """`signature` with these instructions and this prefix on its last field (DSPy's
    `with_instructions(...).with_updated_fields(last_key, prefix=...)`)."""
    last = list(signature.fields)[-1]
    return signature.with_instructions(instruction).with_updated_field(last, prefix=prefix)


async def copro(
    runner: ProgramRunner,
    trainset: Sequence[Example],
    metric: Metric,
    *,
    prompt_lm: LM,
    breadth: int = 10,
    depth: int = 3,
    init_temperature: float = 1.4,
    num_threads: int = 16,
    max_errors: int | None = 10,
    warn: Callable[[str], None] | None = None,
) -> CoproReport:
    """Set every predictor of `runner` to the instructions and last prefix of the best candidate."""
    if breadth <= 1:
        raise UsageError(f"copro: breadth must be greater than 1, got {breadth}")
    if depth < 1:
        raise UsageError(f"copro: depth must be at least 1, got {depth}")
    examples = list(trainset)
    if not examples:
        raise UsageError("copro needs a non-empty trainset to score candidates on")
    working = clone_runner(runner)
    predictors = dict(named_predictors(working))
    names = list(predictors)
    if not names:
        raise UsageError("copro: the program has no predictor (no module that calls an LM) to optimize")
    meter_hooks = predictors[names[0]]  # its callbacks count into the run's usage meter
    proposer = Proposer(
        prompt_lm,
        init_temperature,
        warn,
        on_fallback=meter_hooks.on_fallback,
        on_unusable_reply=meter_hooks.on_unusable_reply,
    )

    telemetry = runner.telemetry
    all_candidates: dict[str, list[Proposal]] = {}
    with telemetry.span("propose instructions", {"dspx.copro.breadth": breadth}):
        for name in names:
            signature = predictors[name].signature
            proposals = await proposer.initial(signature.instructions, breadth - 1, label=f"predictor {name!r}")
            last = list(signature.fields.values())[-1]
            all_candidates[name] = [*proposals, Proposal(signature.instructions, last.prefix)]
    latest = {name: list(proposals) for name, proposals in all_candidates.items()}

    evaluated: dict[str, dict[tuple[str, str], Candidate]] = {name: {} for name in names}
    results_best = {name: Stats() for name in names}
    results_latest = {name: Stats() for name in names}
    total_calls = 0
    original_score: float | None = None  # the program as given, scored first at depth 1

    async def score(label: str) -> tuple[float, float]:
        evaluation = await evaluate(working, examples, metric, concurrency=num_threads, max_errors=max_errors)
        if evaluation.aborted:
            raise DspxError(f"copro, {label}: {evaluation.aborted}")
        return evaluation.percent, evaluation.score

    last_depth = 0
    for d in range(depth):
        # A span per depth: its candidates' scorings, then the proposals the next depth scores.
        with telemetry.span(f"depth {d + 1}", {"dspx.copro.depth": d + 1}):
            last_depth = d
            latest_scores: list[float] = []  # DSPy collects these over the predictors of one depth
            for p_i, name in enumerate(names):
                pool = all_candidates[name] if len(names) > 1 else latest[name]
                for c_i, proposal in enumerate(pool):
                    instruction = proposal.instruction.strip('"').strip()
                    prefix = proposal.prefix.strip('"').strip()
                    predictors[name].signature = with_candidate(predictors[name].signature, instruction, prefix)
                    label = f"depth {d + 1}, predictor {p_i + 1} ({name}), candidate {c_i + 1} of {len(pool)}"
                    attributes: dict[str, AttributeValue] = {"dspx.predictor.name": name, "dspx.candidate.index": c_i}
                    with telemetry.span(f"candidate {c_i}", attributes) as span:
                        percent, mean = await score(label)
                        span.update({"dspx.score": mean, "dspx.score.percent": percent})
                    total_calls += 1
                    if d == 0 and p_i == 0 and c_i == len(pool) - 1:
                        original_score = percent  # the last of the first pool is the original, others unchanged
                    stored = evaluated[name].get((instruction, prefix))
                    if stored is None or stored.score < percent:
                        # Re-assigning an existing key keeps its place: ties among the best keep the first.
                        snapshot = {n: p.signature for n, p in predictors.items()}
                        evaluated[name][(instruction, prefix)] = Candidate(
                            name, instruction, prefix, percent, mean, d, snapshot
                        )
                    if len(pool) - breadth <= c_i:
                        latest_scores.append(percent)
                results_latest[name].add(d, latest_scores)
                if evaluated[name]:
                    best = max(evaluated[name].values(), key=lambda c: c.score)
                    predictors[name].signature = with_candidate(
                        predictors[name].signature, best.instruction, best.prefix
                    )

            if d == depth - 1:
                break
            fresh: dict[str, list[Proposal]] = {}
            with telemetry.span("propose instructions", {"dspx.copro.breadth": breadth}):
                for name in names:
                    ranked = sorted(evaluated[name].values(), key=lambda c: c.score, reverse=True)
                    results_best[name].add(d, [c.score for c in ranked][:_STATS_TOP])
                    fresh[name] = await proposer.given_attempts(
                        attempts(ranked[: min(len(ranked), breadth)]),
                        breadth,
                        label=f"predictor {name!r}, depth {d + 1}",
                    )
                    all_candidates[name].extend(fresh[name])
            latest = fresh

    pooled: list[Candidate] = []
    for name in names:
        pooled.extend(evaluated[name].values())
        ranked = sorted(evaluated[name].values(), key=lambda c: c.score, reverse=True)
        results_best[name].add(last_depth, [c.score for c in ranked][:_STATS_TOP])
    pooled.sort(key=lambda c: c.score, reverse=True)

    # Departure: DSPy takes the first of the best even when the program as given scored as well;
    # a proposal that is no better on the trainset never replaces what the user wrote.
    kept_original = original_score is not None and pooled[0].score <= original_score
    if not kept_original:
        chosen = pooled[0].program
        for name, predictor in named_predictors(runner):
            predictor.signature = chosen[name]
    return CoproReport(pooled, total_calls, results_best, results_latest, proposer.dropped, kept_original)


def attempts(best_first: Sequence[Candidate]) -> list[str]:
    """DSPy's `attempted_instructions`: the candidates worst first, three lines each, numbered from 1."""
    lines: list[str] = []
    for k, candidate in enumerate(reversed(best_first), start=1):
        lines.append(f"Instruction #{k}: {candidate.instruction}")
        lines.append(f"Prefix #{k}: {candidate.prefix}")
        lines.append(f"Resulting Score #{k}: {candidate.score}")
    return lines


async def compile_copro(runner: ProgramRunner, settings: dict[str, Any], job: CompileJob) -> dict[str, Any]:
    """The registry's entry point (optimizers/registry.py): COPRO under the job's prompt LM."""
    settings = dict(settings)
    num_threads = settings.pop("num_threads", None) or job.concurrency
    prompt_lm = job.prompt_lm
    if prompt_lm is None:  # DSPy's default: the task LM (the first predictor's)
        task_lm = next((p.lm for _, p in named_predictors(runner) if p.lm is not None), None)
        if task_lm is None:
            raise UsageError("copro: the program has no LM to propose instructions with; set prompt_lm")
        prompt_lm = task_lm
    report = await copro(
        runner,
        job.trainset,
        job.metric,
        prompt_lm=prompt_lm,
        num_threads=num_threads,
        warn=job.notice,
        **settings,
    )
    return report_dict(report)


def report_dict(report: CoproReport) -> dict[str, Any]:
    """What compile's summary and the state's metadata record."""

    def entry(candidate: Candidate) -> dict[str, Any]:
        return {
            "predictor": candidate.predictor,
            "instruction": candidate.instruction,
            "prefix": candidate.prefix,
            "depth": candidate.depth,
            "score": candidate.mean,
            "score_percent": candidate.score,
        }

    return {
        "best": entry(report.best),
        "kept_original": report.kept_original,
        "candidates": [entry(c) for c in report.candidates],
        "total_calls": report.total_calls,
        "dropped_proposals": report.dropped,
        "results_best": {name: stats.to_dict() for name, stats in report.results_best.items()},
        "results_latest": {name: stats.to_dict() for name, stats in report.results_latest.items()},
    }
