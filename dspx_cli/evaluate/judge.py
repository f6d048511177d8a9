"""The LM-judge metric: a Predict (or ChainOfThought) whose outputs are the score.

    metric:
      judge:
        signature: "question, answer, gold_answer -> correct: bool"
        instructions: Is the answer correct, given the gold answer?   # optional
        lm: openai/gpt-4o-mini      # optional: a model string or an lm: mapping; default: the program's LM
        type: predict               # optional: predict or chain_of_thought

How the judge's inputs are filled, by name:
- `gold_<field>`: the example's field (the label), e.g. `gold_answer`;
- `predicted_<field>`: the prediction's field, e.g. `predicted_answer`;
- any other name: the prediction's field if it has one, else the example's (so `question` is the
  example's input and `answer` the program's answer).

The score is the output `score` (a number; an undeclared type is read as float) or, without one,
`correct` (a bool; an undeclared type is read as bool): true is 1.0, false 0.0.

The signature may also name a signature of the program (`signature: grade`) or be a mapping with
inputs/outputs, as under `signatures:`. An explicit judge `lm` is kept as written, so scores stay
comparable when `--lm` swaps the program's model; the default follows the program's LM, `--lm`
included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dspx_cli.core import Example, Prediction, Signature
from dspx_cli.core.spec_model import SpecValidationError
from dspx_cli.errors import DspxError, SignatureError
from dspx_cli.evaluate.metric_base import MetricError, as_score
from dspx_cli.evaluate.metric_specs import JUDGE_TYPES, JudgeSpec
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.registry import model_problem

# The loader's own spec-to-config mapping, so LM settings added to the schema later carry over.
from dspx_cli.program.diagnostics import unknown_name_hint
from dspx_cli.program.loader import lm_config
from dspx_cli.program.model import Program
from dspx_cli.program.schema import LMSpec

if TYPE_CHECKING:
    from dspx_cli.modules import Module
    from dspx_cli.program.context import RunContext

__all__ = ["Judge", "build_judge", "program_lm_config"]

_KEYS = tuple(JudgeSpec.model_fields)
_TYPES = JUDGE_TYPES
_GOLD, _PREDICTED = "gold_", "predicted_"

ErrorAt = Callable[..., DspxError]  # (message, *key path under the metric) -> the error to raise


class Judge:
    name = "judge"

    def __init__(self, module: Module, signature: Signature, output: str) -> None:
        self.module = module
        self.signature = signature
        self.output = output

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        if _module_lm(self.module) is None:
            raise MetricError("the LM judge has no LM: resolve the metric with a run context to score with it")
        values = {name: _value(name, example, prediction) for name in self.signature.input_fields}
        verdict = await self.module.acall(**values)
        return as_score(verdict[self.output], "judge")


def build_judge(raw: Any, program: Program, context: RunContext | None, error: ErrorAt) -> Judge:
    from dspx_cli.modules import MODULE_CLASSES

    if not isinstance(raw, Mapping):
        raise error("judge: expected a mapping with signature (and optionally lm, instructions, type)", "judge")
    for key in raw:
        if key not in _KEYS:
            raise error(f"unknown key {key!r} in the judge{unknown_name_hint(str(key), list(_KEYS))}", "judge", key)
    if "signature" not in raw:
        raise error(
            'the judge needs a signature, e.g. signature: "question, answer, gold_answer -> correct: bool"', "judge"
        )
    signature = _signature(raw["signature"], program, error)
    if raw.get("instructions") is not None:
        if not isinstance(raw["instructions"], str):
            raise error("instructions: expected text", "judge", "instructions")
        signature = signature.with_instructions(raw["instructions"])
    signature, output = _score_output(signature, error)
    kind = _TYPES.get(str(raw.get("type", "predict")).replace("-", "_").lower())
    if kind is None:
        raise error(f"type: expected predict or chain_of_thought, got {raw['type']!r}", "judge", "type")
    config = _judge_lm(raw.get("lm"), program, error)

    lm = context.lm(config) if context is not None else None
    module = MODULE_CLASSES[kind](
        signature,
        lm,
        n=1,  # one verdict per example, whatever the LM's default n
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        extra=config.extra,
        on_fallback=context.meter.record_fallback if context is not None else None,
        on_unusable_reply=context.meter.record_unusable_reply if context is not None else None,
    )
    return Judge(module, signature, output)


def program_lm_config(program: Program) -> LMConfig:
    """The program-level LM as the loader built it (with `--lm` applied): the LM of a module that
    does not name its own. When every module names its own, the `lm:` section itself (or the default)."""
    for name, module in program.spec.modules.items():
        if module.lm is None:
            return program.modules[name].lm
    return lm_config(program.spec.lm, None)


def _judge_lm(raw: Any, program: Program, error: ErrorAt) -> LMConfig:
    if raw is None:
        return program_lm_config(program)
    try:
        spec = LMSpec.model_validate({"model": raw} if isinstance(raw, str) else raw)
    except SpecValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise error(
            f"judge.lm{'.' + where if where else ''}: {first['msg']}", "judge", "lm", *first["loc"][:1]
        ) from None
    config = lm_config(spec, None)
    problem = model_problem(config, program.base_dir)
    if problem is not None:
        raise error(f"judge.lm: {problem}", "judge", "lm")
    return config


def _signature(raw: Any, program: Program, error: ErrorAt) -> Signature:
    if isinstance(raw, str) and "->" not in raw:
        if raw in program.signatures:
            return program.signatures[raw]
        known = ", ".join(program.signatures) or "none"
        raise error(
            f'signature: {raw!r} is neither "inputs -> outputs" nor a signature of the program ({known})',
            "judge",
            "signature",
        )
    try:
        return Signature.from_spec(raw)
    except SignatureError as exc:
        raise error(f"signature: {exc}", "judge", "signature") from None


def _score_output(signature: Signature, error: ErrorAt) -> tuple[Signature, str]:
    outputs = signature.output_fields
    for name, default in (("score", float), ("correct", bool)):
        if name in outputs:
            if outputs[name].annotation is str:  # "-> score" without a type: ask the LM for a number
                signature = signature.with_updated_field(name, annotation=default)
            return signature, name
    raise error(
        f"the judge's signature needs an output `score: float` or `correct: bool`; it has {', '.join(outputs)}",
        "judge",
        "signature",
    )


def _value(name: str, example: Example, prediction: Prediction) -> Any:
    if name.startswith(_GOLD) and name[len(_GOLD) :] in example:
        return example[name[len(_GOLD) :]]
    if name.startswith(_PREDICTED) and name[len(_PREDICTED) :] in prediction:
        return prediction[name[len(_PREDICTED) :]]
    for record in (prediction, example):
        if name in record:
            return record[name]
    raise MetricError(
        f"judge input {name!r} is not a field of the prediction ({', '.join(prediction.keys()) or 'none'}) "
        f"or the example ({', '.join(example.keys()) or 'none'}); prefix gold_ or predicted_ to pick a side"
    )


def _module_lm(module: Module) -> Any:
    return module.named_predictors()[0][1].lm  # a judge is a Predict or ChainOfThought: one predictor
