"""The mapping forms of `metric:` (and a wrapper's `reward:`) as models: what keys each form takes.

`resolve_metric` (metrics.py) checks a spec by hand, to blame the exact key; these models state the
same keys once, so the LM judge's allowed keys and `dspx schema` (editors' completion) read them from
one place. Cheap to import: the program schema only, no module classes.
"""

# No `from __future__ import annotations`: the annotations are evaluated when the class is made.

from typing import Literal

from dspx_cli.core.spec_model import Field
from dspx_cli.program.schema import LMSpec, SignatureSpec
from dspx_cli.program.spec_base import Strict

__all__ = ["JUDGE_TYPES", "JudgeSpec", "PythonMetricSpec"]

# The judge's module type: its spellings, to the module it builds.
JUDGE_TYPES = {"predict": "predict", "chain_of_thought": "chain_of_thought", "cot": "chain_of_thought"}


class JudgeSpec(Strict):
    """An LM judge: a Predict (or ChainOfThought) whose output `score` (float) or `correct` (bool) is the score."""

    signature: str | SignatureSpec = Field(
        description="Inputs `gold_X` take the example's `X`, `predicted_X` the prediction's, other names the "
        "prediction's field if any, else the example's; a signature name of the program, the string form or a mapping"
    )
    instructions: str | None = Field(default=None, description="Replaces the signature's instructions.")
    lm: str | LMSpec | None = Field(default=None, description="The judge's LM; default: the program's `lm`.")
    type: Literal["predict", "chain_of_thought", "cot"] = Field(
        default="predict", description="The judge module: predict or chain_of_thought."
    )


class PythonMetricSpec(Strict):
    """A metric function in a Python file."""

    python: str = Field(
        description='"file.py:fn", relative to the program file: fn(example, prediction, trace=None) returns a '
        "bool or number; sync or async"
    )
