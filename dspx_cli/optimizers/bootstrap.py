"""BootstrapFewShot: demos from the traces of training runs the metric accepts.

DSPy: `dspy/teleprompt/bootstrap.py`, `BootstrapFewShot`. Matched step by step:

- Teacher (`_prepare_student_and_teacher`): a copy of the student, or the given teacher; unless the
  teacher is marked compiled, LabeledFewShot(k=max_labeled_demos) replaces its demos when
  max_labeled_demos > 0. The caller's runners are never changed except the student at the end.
- One example (`_bootstrap_one_example`): the teacher runs the example's inputs with that example
  left out of its demos, inside a fresh trace. Round 0 uses the program's settings; round r > 0
  uses temperature 1.0 and rollout id r (a new cache key, so a cached failure is not replayed).
  Success: `metric >= metric_threshold` when the threshold is truthy, else the metric's truth
  (so a threshold of 0 means "truthy", as in DSPy). An exception counts as a failed round; the
  `max_errors`-th one is re-raised.
- Each successful run's trace gives every predictor that ran a demo `{augmented: True, **inputs,
  **outputs}`. A predictor called more than once in one run keeps one of them: the last, or one of
  the others, 50/50, with an RNG seeded from the demos (DSPy hashes them too).
- Order (`_bootstrap`): examples in trainset order, up to max_rounds rounds each, until
  max_bootstrapped_demos examples succeeded.
- Student (`_train`): per predictor in program order, its first max_bootstrapped_demos augmented
  demos, then raw examples: the examples that were not bootstrapped (those never tried included),
  shuffled with Random(seed), and sampled down with one Random(seed) shared by the predictors in
  turn, each drawing from the whole pool (DSPy 3.4.1; before it, each predictor drew from the
  previous one's sample). DSPy seeds with 0 always. tests/fixtures/bootstrap holds DSPy's choices.

Concurrency. A sequential run stops at the example that completes the quota, so what it tries
depends on the results before. Here up to `concurrency` examples run at once, started in trainset
order, but results are *consumed* in trainset order, each exactly as the sequential loop would
(same round count, same error count, same stop test). Once the quota is met, examples still running
are cancelled and finished ones past the cut-off are discarded. Each example's runs depend only on
the example and the teacher (every run gets its own copy of the teacher's predictors, so leaving an
example out of the demos never races), hence, given the same LM replies (a cache, or temperature 0
on a deterministic model), the demos equal those of `concurrency=1`, which is the sequential loop. The price: up to `concurrency - 1` examples past the cut-off may be run for
nothing (their calls are cached and metered).

One deliberate difference: trace steps of one predictor are put in a canonical order before the
50/50 choice, because steps of a flow that do not depend on each other finish in any order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example, Prediction
from dspx_cli.errors import UsageError
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.modules.trace import TraceStep, sampling_override, trace_scope
from dspx_cli.optimizers.labeled import clone_runner, example_demo, labeled_few_shot
from dspx_cli.optimizers.registry import CompileJob
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.runner import ProgramRunner

__all__ = ["BootstrapReport", "bootstrap_few_shot"]

# DSPy's bootstrap rounds after the first sample at this temperature.
RESAMPLE_TEMPERATURE = 1.0


@dataclass
class BootstrapReport:
    """What bootstrapping did, counted as the sequential run counts it."""

    bootstrapped: list[int] = field(default_factory=list)  # trainset indexes whose traces became demos
    examples_tried: int = 0  # examples up to and including the one that met the quota
    attempts: int = 0  # rounds run over those examples
    errors: list[tuple[int, int, str]] = field(default_factory=list)  # (example index, round, message)
    demos: dict[str, tuple[int, int]] = field(default_factory=dict)  # predictor -> (augmented, raw)


@dataclass
class _Round:
    success: bool
    demos: dict[str, list[dict[str, Any]]]  # predictor name -> its demos from this run (empty unless success)
    error: BaseException | None = None


async def bootstrap_few_shot(
    runner: ProgramRunner,
    trainset: Sequence[Example],
    metric: Metric,
    *,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 16,
    max_rounds: int = 1,
    metric_threshold: float | None = None,
    teacher: ProgramRunner | None = None,
    teacher_compiled: bool = False,
    max_errors: int | None = 10,
    concurrency: int = 16,
    seed: int = 0,
) -> BootstrapReport:
    """Set the demos of every predictor of `runner` (the student), in place.

    `teacher` may use another LM or carry a loaded state; pass `teacher_compiled=True` to use its
    demos as they are (DSPy's `_compiled` teacher). `max_errors=None` never stops on errors (DSPy's
    default is `settings.max_errors`, 10).
    """
    examples = list(trainset)
    student_predictors = named_predictors(runner)
    # Always a copy: the caller's teacher keeps its demos, and the student's change only at the end.
    source = clone_runner(teacher if teacher is not None else runner)
    if teacher is None:
        teacher_compiled = False  # DSPy: the student must be uncompiled, so its copy is too
    else:
        _check_same_structure(student_predictors, named_predictors(source))
    if max_labeled_demos and not teacher_compiled:
        await labeled_few_shot(source, examples, k=max_labeled_demos, seed=seed)

    report = BootstrapReport()
    traces: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in student_predictors}

    telemetry = runner.telemetry

    async def run_example(index: int) -> list[_Round]:
        rounds: list[_Round] = []
        for round_index in range(max_rounds):
            outcome = await _run_round(source, examples[index], round_index, metric, metric_threshold)
            rounds.append(outcome)
            if outcome.success:
                break
        return rounds

    async def traced_example(index: int) -> list[_Round]:
        # Its rounds' teacher runs are children of this span (a trace shows which example they tried).
        with telemetry.span(f"bootstrap example {index}", {"dspx.example.index": index}) as span:
            rounds = await run_example(index)
            span.update(
                {"dspx.bootstrap.rounds": len(rounds), "dspx.bootstrap.success": any(r.success for r in rounds)}
            )
            return rounds

    # The phase's span, parent of its examples' (and so of every teacher run's).
    with telemetry.span("bootstrap", {"dspx.bootstrap.max_demos": max_bootstrapped_demos}) as phase:
        pending: dict[int, asyncio.Task[list[_Round]]] = {}
        launched = 0
        window = max(1, concurrency)
        try:
            for index in range(len(examples)):
                if len(report.bootstrapped) >= max_bootstrapped_demos:
                    break
                # Keep `window` examples in flight, always the next ones in trainset order.
                while launched < len(examples) and launched - index < window:
                    pending[launched] = asyncio.create_task(
                        (traced_example if telemetry.enabled else run_example)(launched)
                    )
                    launched += 1
                rounds = await pending.pop(index)
                report.examples_tried += 1
                for round_index, outcome in enumerate(rounds):
                    report.attempts += 1
                    if outcome.error is not None:
                        report.errors.append((index, round_index, _describe(outcome.error)))
                        if max_errors is not None and len(report.errors) >= max_errors:
                            raise outcome.error
                    if outcome.success:
                        report.bootstrapped.append(index)
                        for name, demos in outcome.demos.items():
                            traces[name].extend(demos)
        finally:
            for task in pending.values():
                task.cancel()
            await asyncio.gather(*pending.values(), return_exceptions=True)

        chosen = set(report.bootstrapped)
        raw_pool = [example for index, example in enumerate(examples) if index not in chosen]
        random.Random(seed).shuffle(raw_pool)
        rng = random.Random(seed)
        for name, predictor in student_predictors:
            augmented = traces[name][:max_bootstrapped_demos]
            size = max(0, min(max_labeled_demos - len(augmented), len(raw_pool)))
            # Every predictor draws from the whole pool; only the RNG carries over (DSPy 3.4.1).
            raw = rng.sample(raw_pool, size)
            predictor.demos = augmented + [example_demo(example) for example in raw]
            report.demos[name] = (len(augmented), len(raw))
        phase.update(
            {
                "dspx.bootstrap.examples_tried": report.examples_tried,
                "dspx.bootstrap.attempts": report.attempts,
                "dspx.bootstrap.traces_kept": len(report.bootstrapped),
                "dspx.bootstrap.errors": len(report.errors),
            }
        )
    return report


async def _run_round(
    teacher: ProgramRunner,
    example: Example,
    round_index: int,
    metric: Metric,
    metric_threshold: float | None,
) -> _Round:
    """One run of the teacher on one example; never raises (errors are data for the caller)."""
    # A private copy per run: concurrent examples each leave out a different demo.
    own = clone_runner(teacher)
    named = named_predictors(own)
    names = {id(predictor): name for name, predictor in named}
    try:
        # Reads the example's image files (off the loop, as a run does): may fail like its run.
        left_out = await asyncio.to_thread(example_demo, example)
        for _, predictor in named:
            predictor.demos = [demo for demo in predictor.demos if demo != left_out]
        with trace_scope() as trace:
            if round_index == 0:
                result = await own.run(dict(example.inputs().items()))
            else:
                with sampling_override(temperature=RESAMPLE_TEMPERATURE, rollout_id=round_index):
                    result = await own.run(dict(example.inputs().items()))
        score = await metric(example, Prediction(**result.outputs), list(trace))
        success = bool(score >= metric_threshold) if metric_threshold else bool(score)
    except Exception as exc:  # noqa: BLE001 - a failed call or a metric bug fails this round, as in DSPy
        return _Round(False, {}, exc)
    return _Round(success, _trace_demos(trace, names) if success else {})


def _trace_demos(trace: list[TraceStep], names: dict[int, str]) -> dict[str, list[dict[str, Any]]]:
    by_predictor: dict[str, list[dict[str, Any]]] = {}
    for step in trace:
        name = names.get(id(step.predictor))
        if name is None:  # not one of this run's predictors; DSPy skips these too
            continue
        demo = {"augmented": True, **step.inputs, **dict(step.prediction.items())}
        by_predictor.setdefault(name, []).append(demo)
    for name, demos in by_predictor.items():
        if len(demos) > 1:
            demos.sort(key=_canonical)
            rng = random.Random(_digest(demos))
            by_predictor[name] = [rng.choice(demos[:-1]) if rng.random() < 0.5 else demos[-1]]
    return by_predictor


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _digest(demos: list[dict[str, Any]]) -> int:
    return int.from_bytes(hashlib.sha256(_canonical(demos).encode()).digest()[:8], "big")


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _check_same_structure(student: list[tuple[str, Any]], teacher: list[tuple[str, Any]]) -> None:
    """DSPy asserts the same predictor names and signatures; demos are matched by name."""
    shape = [(name, str(predictor.signature)) for name, predictor in student]
    other = [(name, str(predictor.signature)) for name, predictor in teacher]
    if shape != other:
        raise UsageError(f"the teacher's predictors {other} differ from the student's {shape}")


async def compile_bootstrap_few_shot(
    runner: ProgramRunner, settings: dict[str, Any], job: CompileJob
) -> dict[str, Any]:
    """The registry's entry point (optimizers/registry.py); `settings` without `teacher` (see `job`)."""
    report = await bootstrap_few_shot(
        runner,
        job.trainset,
        job.metric,
        concurrency=job.concurrency,
        teacher=job.teacher,
        teacher_compiled=job.teacher_compiled,
        **settings,
    )
    return {
        "bootstrapped_examples": report.bootstrapped,
        "examples_tried": report.examples_tried,
        "errors": len(report.errors),
    }
