"""Training records from a program: one chat record per predictor call, DSPy's BootstrapFinetune way.

Two sources of calls:

- **bootstrap** (DSPy's `bootstrap_trace_data` + `_prepare_finetune_data`): a teacher (the program
  itself, on another LM, or with a compiled state) runs every training example inside a trace; the
  runs the metric accepts (a truthy score; a run that fails scores 0) give one record per call in
  their trace, in trainset order and call order, then shuffled with `Random(0)` as DSPy does. A
  record is `adapter.format_finetune_data(signature, demos, inputs, outputs)` with the calling
  predictor's own signature, demos and adapter (the teacher's: DSPy trains on the prompts the
  teacher was given).
- **labeled** (plain supervised fine-tuning): where an example labels every output of a predictor,
  the example is the call: its inputs (through the step's `with:` bindings) and its labels. A label
  for a step's output is the example's value for the program output that names it
  (`output: {answer: $draft.answer}`), else the example's key of the field's own name (`reasoning`).
  The example itself is left out of the predictor's demos, as BootstrapFewShot leaves it out.
  Only steps whose module has one predictor are labeled.

`auto` picks labeled when every predictor is labeled by every training example, else bootstrap.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example, Prediction
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.modules import Predict
from dspx_cli.modules.trace import trace_scope
from dspx_cli.optimizers.labeled import example_demo
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.model import INPUT, ItemRef, Ref, Step
from dspx_cli.program.runner import ProgramRunner, read_images

__all__ = ["TraceReport", "bootstrap_records", "choose_trace_mode", "labeled_records", "training_record"]

Record = dict[str, list[dict[str, str]]]
_MISSING = object()


@dataclass
class TraceReport:
    """Where the records came from; `examples_used` counts the examples that gave at least one."""

    mode: str  # "labeled" or "bootstrap"
    reason: str  # why this mode (auto's choice, or "as asked")
    records: list[Record] = field(default_factory=list)
    examples: int = 0
    examples_used: int = 0
    failed_runs: int = 0  # bootstrap: runs that raised (an LM error, a reply that did not parse)
    first_error: str | None = None  # the first of those, in trainset order
    per_predictor: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "records": len(self.records),
            "examples": self.examples,
            "examples_used": self.examples_used,
            "failed_runs": self.failed_runs,
            "first_error": self.first_error,
            "per_predictor": self.per_predictor,
        }


def training_record(predictor: Predict, inputs: dict[str, Any], outputs: Any, demos: Sequence[Any]) -> Record:
    return predictor.adapter.format_finetune_data(predictor.signature, list(demos), inputs, outputs)


# ----- labeled ---------------------------------------------------------------------------------


def _labeled_call(
    runner: ProgramRunner, step: Step, example: Example
) -> tuple[str, Predict, dict[str, Any], dict[str, Any]] | None:
    """The call a step would make for `example` with every output labeled, or None."""
    predictors = runner.modules[step.module].named_predictors()
    if len(predictors) != 1:
        return None
    suffix, predictor = predictors[0]
    name = f"{step.module}.{suffix}" if suffix else step.module
    inputs: dict[str, Any] = {}
    for f in predictor.signature.inputs:
        value = _binding(runner, step, f.name, example)
        if value is _MISSING:
            if f.name in step.bindings and _optional_input(step.bindings[f.name], example):
                continue  # an optional program input the example leaves out: no section, as in a run
            return None
        inputs[f.name] = value
    outputs = {}
    for f in predictor.signature.outputs:
        value = _label(runner, step.id, f.name, example)
        if value is _MISSING:
            return None
        outputs[f.name] = value
    return name, predictor, inputs, outputs


def _binding(runner: ProgramRunner, step: Step, name: str, example: Example) -> Any:
    if name not in step.bindings:
        return _MISSING
    value = step.bindings[name]
    if isinstance(value, ItemRef):
        return _MISSING  # a mapped step's item: no one call to label from an example
    if not isinstance(value, Ref):
        return value
    if value.source == INPUT:
        return example.get(value.field, _MISSING)
    return _label(runner, value.source, value.field, example)


def _optional_input(value: Any, example: Example) -> bool:
    return isinstance(value, Ref) and value.source == INPUT and value.field not in example


def _label(runner: ProgramRunner, step_id: str, field_name: str, example: Example) -> Any:
    labels = example.labels()
    for output, ref in runner.program.outputs.items():
        if ref == Ref(step_id, field_name) and output in labels:
            return labels[output]
    return labels.get(field_name, _MISSING)


def labeled_coverage(runner: ProgramRunner, trainset: Sequence[Example]) -> dict[str, int]:
    """Per step that calls an LM: how many examples label every output of its one predictor (a
    step without a predictor, such as `retrieve`, trains nothing and is left out)."""
    return {
        step.id: sum(_labeled_call(runner, step, example) is not None for example in trainset)
        for step in runner.program.steps
        if runner.modules[step.module].named_predictors()
    }


def labeled_records(runner: ProgramRunner, trainset: Sequence[Example], reason: str) -> TraceReport:
    report = TraceReport("labeled", reason, examples=len(trainset))
    for example in trainset:
        used = False
        for step in runner.program.steps:
            call = _labeled_call(runner, step, example)
            if call is None:
                continue
            name, predictor, inputs, outputs = call
            inputs = read_images(inputs)  # a training record holds the image, as a run's does
            left_out = example_demo(example)
            demos = [demo for demo in predictor.demos if demo != left_out]
            report.records.append(training_record(predictor, inputs, outputs, demos))
            report.per_predictor[name] = report.per_predictor.get(name, 0) + 1
            used = True
        report.examples_used += used
    random.Random(0).shuffle(report.records)
    return report


def choose_trace_mode(mode: str, runner: ProgramRunner, trainset: Sequence[Example]) -> tuple[str, str]:
    """(`labeled` or `bootstrap`, why). `auto` takes labeled only when it covers everything."""
    if mode != "auto":
        return mode, f"--traces {mode}"
    coverage = labeled_coverage(runner, trainset)
    unlabeled = [step for step, count in coverage.items() if count < len(trainset)]
    if not unlabeled:
        return "labeled", "every training example labels every output of every step"
    missing = ", ".join(f"{step} ({len(trainset) - coverage[step]} of {len(trainset)} unlabeled)" for step in unlabeled)
    return "bootstrap", f"the examples do not label every output of {missing}"


# ----- bootstrap -------------------------------------------------------------------------------


async def bootstrap_records(
    teacher: ProgramRunner,
    trainset: Sequence[Example],
    metric: Metric | None,
    *,
    concurrency: int,
    reason: str,
    on_result: Callable[[float | None, bool], None] | None = None,
) -> TraceReport:
    """Run the teacher on every example (`concurrency` at once); keep the traces the metric accepts
    (every run that did not fail, without a metric, as DSPy does)."""
    report = TraceReport("bootstrap", reason, examples=len(trainset))
    names = {id(predictor): name for name, predictor in named_predictors(teacher)}
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(example: Example) -> tuple[float, list[Any], str | None]:
        async with gate:
            try:
                with trace_scope() as trace:
                    result = await teacher.run(dict(example.inputs().items()))
                score = 1.0 if metric is None else await metric(example, Prediction(**result.outputs), list(trace))
            except Exception as exc:  # noqa: BLE001 - a failed run scores 0 and gives no records, as in DSPy's Evaluate
                if on_result is not None:
                    on_result(0.0, True)
                return 0.0, [], str(exc) or type(exc).__name__
        if on_result is not None:
            on_result(float(score), False)
        return float(score), list(trace), None

    results = await asyncio.gather(*(one(example) for example in trainset))
    order = _call_order(teacher)
    for score, trace, error in results:
        if error is not None:
            report.failed_runs += 1
            report.first_error = report.first_error or error
        if not score:
            continue
        report.examples_used += 1
        # Steps that do not depend on each other finish in any order; put them in run order (a
        # stable sort keeps the calls of one predictor in the order they were made).
        for step in sorted(trace, key=lambda step: order.get(id(step.predictor), len(order))):
            predictor = step.predictor
            report.records.append(training_record(predictor, step.inputs, step.prediction, predictor.demos))
            name = names.get(id(predictor), "?")
            report.per_predictor[name] = report.per_predictor.get(name, 0) + 1
    random.Random(0).shuffle(report.records)
    return report


def _call_order(runner: ProgramRunner) -> dict[int, int]:
    """Each predictor's place in run order: the steps in the order they start, their predictors in turn."""
    order: dict[int, int] = {}
    for step in runner.program.steps:
        for _, predictor in runner.modules[step.module].named_predictors():
            order.setdefault(id(predictor), len(order))
    return order
