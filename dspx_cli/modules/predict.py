"""Predict: one signature, its demos, one LM call, parsed outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspx_cli.adapters import ChatAdapter
from dspx_cli.core import Prediction, Signature
from dspx_cli.errors import AdapterParseError
from dspx_cli.lm.base import LM, LMRequest, Message


class Predict:
    """Holds everything an optimizer may change (signature instructions, field descriptions, demos).

    Sampling settings arrive already merged (the program's LM defaults overridden by the module's),
    so a Predict never reads global configuration.
    """

    def __init__(
        self,
        signature: Signature,
        lm: LM | None = None,
        *,
        demos: list[dict[str, Any]] | None = None,
        adapter: ChatAdapter | None = None,
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.signature = signature
        self.lm = lm
        self.demos: list[dict[str, Any]] = list(demos or [])
        self.adapter = adapter or ChatAdapter()
        self.n = n
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra = dict(extra or {})

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return [("", self)]

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        return self.adapter.format(self.signature, self.demos, dict(inputs))

    def request(self, inputs: Mapping[str, Any]) -> LMRequest:
        return LMRequest(
            messages=tuple(self.messages(inputs)),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            n=self.n,
            extra=dict(self.extra),
        )

    async def acall(self, **inputs: Any) -> Prediction:
        if self.lm is None:
            raise RuntimeError("Predict has no LM; the program builder assigns one")
        response = await self.lm.complete(self.request(inputs))
        parsed: list[dict[str, Any]] = []
        first_error: AdapterParseError | None = None
        for completion in response.completions:
            try:
                parsed.append(self.adapter.parse(self.signature, completion))
            except AdapterParseError as exc:
                first_error = first_error or exc
        # With n > 1 a sampled completion may be malformed; keep the good ones, fail only if none is.
        if not parsed:
            assert first_error is not None
            raise first_error
        prediction = Prediction.from_completions(parsed)
        prediction.usage = response.usage
        return prediction
