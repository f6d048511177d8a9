"""Build a program's modules and run its steps; independent steps run concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dspx_cli.core import Prediction
from dspx_cli.core.media import is_image
from dspx_cli.core.telemetry import OFF
from dspx_cli.errors import UsageError
from dspx_cli.lm.base import Message, Usage
from dspx_cli.modules.base import Module
from dspx_cli.program.build import build_module
from dspx_cli.program.context import RunContext
from dspx_cli.program.foreach import map_items
from dspx_cli.program.media_inputs import ImageFile, MediaError, resolve_images
from dspx_cli.program.model import INPUT, ItemRef, Program, Ref, Step
from dspx_cli.program.spans import step_span, traced_run

if TYPE_CHECKING:
    from dspx_cli.modules.best_of_n import RewardFn


@dataclass
class RunResult:
    outputs: dict[str, Any]
    steps: dict[str, Prediction]
    usage: Usage = field(default_factory=Usage)


class ProgramRunner:
    """`context=None` builds the modules without LMs: enough to render prompts (`dspx inspect`).

    `rewards` holds the reward function of each best_of_n and refine module; the evaluate layer
    makes them from the modules' `reward:` metrics (see evaluate/rewards.py)."""

    def __init__(
        self, program: Program, context: RunContext | None, *, rewards: Mapping[str, RewardFn] | None = None
    ) -> None:
        self.program = program
        self.telemetry = context.telemetry if context is not None else OFF  # spans of runs and steps
        # A module that only runs inside a wrapper (best_of_n, refine) lives there, under the
        # wrapper's name, as in DSPy; one that is also a step of its own is a separate instance.
        stepped = {step.module for step in program.steps}
        wrapped = {d.wraps for d in program.modules.values() if d.wraps} - stepped
        self.modules: dict[str, Module] = {
            name: build_module(definition, program, context, rewards)
            for name, definition in program.modules.items()
            if name not in wrapped
        }
        self._has_images = any(is_image(f.annotation) for f in program.inputs.values())

    async def run(self, inputs: dict[str, Any]) -> RunResult:
        if self._has_images and any(isinstance(value, ImageFile) for value in inputs.values()):
            # A dataset row's image files are read now, as its example runs: in a thread, since
            # reading and encoding up to 20 MiB would stall every other example's LM calls.
            inputs = await asyncio.to_thread(read_images, inputs)
        if self.telemetry.enabled:  # the run's span, parent of its steps' (program/spans.py)
            return await traced_run(self, inputs, self._run)
        return await self._run(inputs)

    async def _run(self, inputs: dict[str, Any]) -> RunResult:
        predictions: dict[str, Prediction] = {}
        tasks: dict[str, asyncio.Task[Prediction]] = {}

        async def run_step(step: Step) -> Prediction:
            if tasks:  # a lone step has no task and depends on nothing but the inputs
                depends_on = step.depends_on
                if depends_on:
                    await asyncio.gather(*(tasks[source] for source in depends_on))
            if self.telemetry.enabled:
                with step_span(self.telemetry, self.program, step):
                    return await run_step_body(step)
            return await run_step_body(step)

        async def run_step_body(step: Step) -> Prediction:
            if step.when is not None and not self._condition(step, inputs, predictions):
                # Skipped: every output is null (validate made sure readers accept null).
                prediction = Prediction(dict.fromkeys(self.program.modules[step.module].output_names))
            else:
                values = {
                    name: self._resolve(value, inputs, predictions)
                    for name, value in step.bindings.items()
                    if not _omitted(value, inputs)
                }
                module = self.modules[step.module]
                if step.foreach is None:
                    prediction = await module.acall(**values)
                else:
                    items = self._resolve(step.foreach, inputs, predictions)
                    names = self.program.modules[step.module].output_names
                    prediction = await map_items(module, step, values, items, names)
            predictions[step.id] = prediction
            return prediction

        steps = self.program.steps
        if len(steps) == 1:
            # Nothing to run beside it: awaited here, the step saves a task group and a task per run
            # (~25 us of CPU each), and fails as below, with its own error and no chained context.
            try:
                await run_step(steps[0])
            except Exception as error:
                raise error from None
        else:
            try:
                async with asyncio.TaskGroup() as group:
                    for step in steps:  # run order: dependencies get their task first
                        tasks[step.id] = group.create_task(run_step(step))
            except BaseExceptionGroup as group_error:
                # The first step to fail cancels the others; report its error, not the group.
                raise _first_leaf(group_error) from None

        usage: Usage | None = None
        for prediction in predictions.values():
            step_usage = prediction.usage or Usage()
            usage = step_usage if usage is None else usage + step_usage
        outputs = {name: self._resolve(ref, inputs, predictions) for name, ref in self.program.outputs.items()}
        return RunResult(outputs=outputs, steps=predictions, usage=usage or Usage())

    def completions(self, result: RunResult) -> list[dict[str, Any]]:
        """The program's outputs once per sampled completion (a module with `n > 1`), first one
        first, as DSPy's `Prediction.completions`; empty when every step made one completion.

        Each output takes completion `i` of the step it comes from; an output whose step made fewer
        completions (or one, or a field outside them) keeps its single value in every entry."""
        sampled: dict[str, Any] = {}
        for ref in self.program.outputs.values():
            prediction = result.steps.get(ref.source)
            if prediction is not None and ref.source not in sampled and len(prediction.completions) > 1:
                sampled[ref.source] = prediction.completions
        if not sampled:
            return []
        rows = []
        for index in range(max(len(completions) for completions in sampled.values())):
            row = {}
            for name, ref in self.program.outputs.items():
                completions = sampled.get(ref.source)
                if completions is not None and ref.field in completions and index < len(completions):
                    row[name] = completions[ref.field][index]
                else:
                    row[name] = result.outputs[name]
            rows.append(row)
        return rows

    def preview(self, inputs: dict[str, Any]) -> list[tuple[Step, list[Message]]]:
        """The messages each step would send. Values that only an LM call could produce are shown
        as `{step.field}` placeholders."""
        previews = []
        for step in self.program.steps:
            values = {
                name: self._resolve(value, inputs, {}) if _known(value) else "{" + str(value)[1:] + "}"
                for name, value in step.bindings.items()
                if not _omitted(value, inputs)
            }
            # A retrieve step sends no messages: it searches.
            previews.append((step, self.modules[step.module].messages(values)))
        return previews

    def _condition(self, step: Step, inputs: dict[str, Any], predictions: dict[str, Prediction]) -> bool:
        value = bool(self._resolve(step.when, inputs, predictions))  # null (a skipped step) is false
        return not value if step.when_not else value

    @staticmethod
    def _resolve(value: Any, inputs: dict[str, Any], predictions: dict[str, Prediction]) -> Any:
        if not isinstance(value, Ref):
            return value
        if value.source == INPUT:
            return inputs.get(value.field)  # an omitted optional input, if it reaches an output
        return predictions[value.source][value.field]


def read_images(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs with image files read: one whose file went or changed since the dataset was
    checked is a one-line UsageError naming the row and file (it fails that example's run; in a
    demo or a training record, the command)."""
    try:
        return resolve_images(inputs)
    except MediaError as exc:
        raise UsageError(str(exc)) from None


def _omitted(value: Any, inputs: dict[str, Any]) -> bool:
    """An optional program input left out stays out of the step's call, as a keyword a DSPy module
    is not given: its prompt has no section for it (program/inputs.py)."""
    return isinstance(value, Ref) and value.source == INPUT and value.field not in inputs


def _known(value: Any) -> bool:
    return not isinstance(value, (Ref, ItemRef)) or (isinstance(value, Ref) and value.source == INPUT)


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
