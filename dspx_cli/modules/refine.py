"""Refine: BestOfN that asks an LM for advice after each attempt below the threshold.

DSPy's semantics, prompts byte for byte: after an attempt that misses the threshold (and is not
the last), one call with DSPy's `OfferFeedback` signature shows the feedback LM the program's code,
its predictors, the attempt's inputs, trajectory and outputs, the reward function's code, the
threshold and the reward, and asks for `advice` per predictor name. The next attempts run with that
advice as a hint: every predictor call gets an extra input field `hint_` ("A hint to the module
from an earlier run") holding its predictor's advice, or "N/A". DSPy does that by wrapping the
adapter; dspx scopes the hints over the attempt (modules/trace.py) and Predict adds the field when
it formats its messages, so the rendered prompt is the same (demos, lacking the field, become
partial demos in both).

Differences from DSPy, on purpose:

- The feedback call is not recorded in the caller's trace (DSPy leaves it there by accident of
  scoping): it is not a step of the program, and bootstrapping should not see it.
- `program_code` defaults to the source of the wrapped module's class, as DSPy's does; a program
  file can pass its own text instead (`program_code=`), which tells the feedback LM more.
- Everything BestOfN documents (fresh failure count per call, no None result).
"""

from __future__ import annotations

import inspect
import textwrap
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import orjson

from dspx_cli.core import Field, Signature, annotation_name
from dspx_cli.lm.base import LM, Usage
from dspx_cli.modules import trace as tracing
from dspx_cli.modules.base import Module
from dspx_cli.modules.best_of_n import Attempt, BestOfN, RewardFn
from dspx_cli.modules.predict import Predict

__all__ = ["OFFER_FEEDBACK", "Refine", "describe_predictors", "mask_unserializable"]

# DSPy's OfferFeedback, word for word (the missing space in "kind ofscenario" included).
OFFER_FEEDBACK = Signature(
    inputs=(
        Field("program_code", str, "The code of the program that we are analyzing"),
        Field("modules_defn", str, "The definition of each module in the program, including its I/O"),
        Field("program_inputs", str, "The inputs to the program that we are analyzing"),
        Field("program_trajectory", str, "The trajectory of the program's execution, showing each module's I/O"),
        Field("program_outputs", str, "The outputs of the program that we are analyzing"),
        Field("reward_code", str, "The code of the reward function that we are analyzing"),
        Field("target_threshold", float, "The target threshold for the reward function"),
        Field("reward_value", float, "The reward value assigned to the program's outputs"),
        Field("module_names", list[str], "The names of the modules in the program, for which we seek advice"),
    ),
    outputs=(
        Field("discussion", str, "Discussing blame of where each module went wrong, if it did"),
        Field(
            "advice",
            dict[str, str],
            "For each module, describe very concretely, in this order: the specific scenarios in which it has made "
            "mistakes in the past and what each mistake was, followed by what it should do differently in that kind of"
            "scenario in the future. If the module is not to blame, write N/A.",
        ),
    ),
    instructions="""
    In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if
    any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if
    it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.
    The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you
    to avoid the same mistake on the same or similar inputs.
    """,
)

NO_ADVICE = "N/A"  # the hint of a predictor the advice does not name


class Refine(BestOfN):
    """`Refine(module, N, reward_fn, threshold, fail_count=None, *, lm=None, program_code=None, reward_code=None)`.

    `lm` answers the feedback calls; by default the LM of the wrapped module's first predictor
    (DSPy uses the module's LM). `reward_code` defaults to the reward function's source (its class's
    for callable objects), as in DSPy; either falls back to `repr` when Python has no source.
    """

    def __init__(
        self,
        module: Module,
        N: int,  # DSPy's name
        reward_fn: RewardFn,
        threshold: float | None,
        fail_count: int | None = None,
        *,
        lm: LM | None = None,
        program_code: str | None = None,
        reward_code: str | None = None,
    ) -> None:
        super().__init__(module, N, reward_fn, threshold, fail_count)
        self.lm = lm
        self.program_code = program_code if program_code is not None else _source(type(module))
        self.reward_code = reward_code if reward_code is not None else _reward_source(reward_fn)

    def _session(self) -> _Feedback:
        return _Feedback(self)

    def predictor_names(self) -> list[tuple[str, Predict]]:
        """The wrapped module's predictors as the feedback LM sees them: DSPy calls a bare Predict `self`."""
        return [(name or "self", predictor) for name, predictor in self.module.named_predictors()]

    def feedback_lm(self) -> LM:
        if self.lm is not None:
            return self.lm
        for _, predictor in self.module.named_predictors():
            if predictor.lm is not None:
                return predictor.lm
        raise RuntimeError("Refine has no LM for its feedback calls: give lm=, or an LM to the module's predictors")


class _Feedback:
    """One call's advice: asked for after a low-reward attempt, shown as hints in the next ones."""

    def __init__(self, refine: Refine) -> None:
        self.refine = refine
        # Resolved before the first attempt: a missing LM is a setup error, not a failed attempt.
        self.lm = refine.feedback_lm()
        self.advice: dict[str, str] | None = None
        # The hints of the attempt that ran last (None: it ran without), for its trajectory.
        self.hints: dict[Predict, str] | None = None

    def scope(self) -> AbstractContextManager[Any]:
        if not self.advice:  # DSPy: no advice yet (or an empty one) means no hint field at all
            self.hints = None
            return nullcontext()
        names = self.refine.predictor_names()
        # DSPy looks the advice up by the name of the predictor being called; one not named gets N/A.
        self.hints = {predictor: self.advice.get(name, NO_ADVICE) for name, predictor in names}
        return tracing.hint_scope(self.hints, default=NO_ADVICE)

    async def after(self, attempt: Attempt, inputs: dict[str, Any]) -> Usage:
        predictors = self.refine.predictor_names()
        names = {predictor: name for name, predictor in predictors}
        trajectory = [
            {
                "module_name": names[step.predictor],
                "inputs": self._shown_inputs(step.predictor, step.inputs),
                "outputs": dict(step.prediction),
            }
            for step in attempt.trace
            if step.predictor in names  # every dspx predictor is named; DSPy would fail the attempt here
        ]
        arguments = {
            "program_code": self.refine.program_code,
            "modules_defn": describe_predictors(predictors),
            "program_inputs": inputs,
            "program_trajectory": trajectory,
            "program_outputs": dict(attempt.prediction),
            "reward_code": self.refine.reward_code,
            "target_threshold": self.refine.threshold,
            "reward_value": attempt.reward,
            "module_names": [name for name, _ in predictors],
        }
        # DSPy's rendering: text as it is, anything else as 2-space-indented JSON (orjson's).
        shown = {name: value if isinstance(value, str) else _json(value) for name, value in arguments.items()}
        feedback = Predict(OFFER_FEEDBACK, self.lm)
        # Its own trace: the feedback call is not a step of the program (see the module docstring).
        # The caller's sampling override stays in force, as DSPy's global LM does in a bootstrap round.
        with tracing.trace_scope():
            prediction = await feedback.acall(**shown)
        self.advice = prediction.advice
        return prediction.usage if isinstance(prediction.usage, Usage) else Usage()

    def _shown_inputs(self, predictor: Predict, inputs: dict[str, Any]) -> dict[str, Any]:
        # DSPy's trace keeps the hint among a hinted call's inputs (its adapter adds it to the same dict).
        if self.hints is None:
            return inputs
        return {**inputs, tracing.HINT_FIELD: self.hints.get(predictor, NO_ADVICE)}


def describe_predictors(named: list[tuple[str, Predict]]) -> str:
    """DSPy's `inspect_modules`: each predictor's fields and instructions between 80-dash rules."""
    separator = "-" * 80
    indent = "\n" + "\t" * 2
    output = [separator]
    for name, predictor in named:
        signature = predictor.signature
        instructions = indent.join(["", *textwrap.dedent(signature.instructions).splitlines()])
        output.append(f"Module {name}")
        output.append("\n\tInput Fields:")
        output.append(indent.join(["", *_field_lines(signature.inputs).splitlines()]))
        output.append("\tOutput Fields:")
        output.append(indent.join(["", *_field_lines(signature.outputs).splitlines()]))
        output.append(f"\tOriginal Instructions: {instructions}")
        output.append(separator)
    return "\n".join(part.strip("\n") for part in output)


def _field_lines(fields: tuple[Field, ...]) -> str:
    # DSPy's get_field_description_string, the same lines the ChatAdapter's system message lists.
    lines = [f"{i}. `{f.name}` ({annotation_name(f.annotation)}): {f.desc}" for i, f in enumerate(fields, start=1)]
    return "\n".join(lines).strip()


def mask_unserializable(value: Any) -> Any:
    """DSPy's `recursive_mask`: what orjson cannot write becomes `<non-serializable: TypeName>`."""
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        pass
    if isinstance(value, dict):
        return {k: mask_unserializable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_unserializable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_unserializable(v) for v in value)
    return f"<non-serializable: {type(value).__name__}>"


def _json(value: Any) -> str:
    return orjson.dumps(mask_unserializable(value), option=orjson.OPT_INDENT_2).decode()


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


def _reward_source(reward_fn: Any) -> str:
    try:
        return inspect.getsource(reward_fn)
    except TypeError:  # a callable object: DSPy shows its class
        return _source(type(reward_fn))
    except OSError:
        return repr(reward_fn)
