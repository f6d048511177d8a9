"""ChainOfThought: Predict with a `reasoning` output placed before the signature's outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspx_cli.core import Prediction, Signature
from dspx_cli.lm.base import LM, Message
from dspx_cli.modules.copies import Composite
from dspx_cli.modules.predict import Predict


class ChainOfThought(Composite):
    parts = ("predict",)

    def __init__(self, signature: Signature, lm: LM | None = None, **predict_options: Any) -> None:
        # DSPy keeps the original instructions: they still name only the declared outputs.
        extended = signature.prepend_output("reasoning", str, "")
        self.predict = Predict(extended, lm, **predict_options)

    @property
    def signature(self) -> Signature:
        return self.predict.signature

    def named_predictors(self) -> list[tuple[str, Predict]]:
        # Same name DSPy gives the inner predictor, so saved states line up.
        return [("predict", self.predict)]

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        return self.predict.messages(inputs)

    async def acall(self, **inputs: Any) -> Prediction:
        return await self.predict.acall(**inputs)
