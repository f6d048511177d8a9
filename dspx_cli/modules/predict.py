"""Predict: one signature, its demos, one LM call, parsed outputs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Self

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core import Prediction, Signature
from dspx_cli.errors import AdapterParseError
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Message, Usage
from dspx_cli.lm.call_log import calling
from dspx_cli.modules import trace as tracing


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
        on_fallback: Callable[[], None] | None = None,
        on_unusable_reply: Callable[[bool], None] | None = None,
    ) -> None:
        self.signature = signature
        self.lm = lm
        self.demos: list[dict[str, Any]] = list(demos or [])
        self.adapter = adapter or ChatAdapter()
        self.n = n
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra = dict(extra or {})
        self.on_fallback = on_fallback
        self.on_unusable_reply = on_unusable_reply  # called with `cached` for each reply that did not parse

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return [("", self)]

    def copy(self) -> Self:
        clone = copy.copy(self)
        clone.demos = list(self.demos)
        clone.extra = dict(self.extra)
        return clone

    def messages(self, inputs: Mapping[str, Any], adapter: ChatAdapter | None = None) -> list[Message]:
        signature, inputs = self._with_hint(inputs)
        demos: list[Mapping[str, Any]] = list(self.demos)
        return (adapter or self.adapter).format(signature, demos, dict(inputs))

    def _with_hint(self, inputs: Mapping[str, Any]) -> tuple[Signature, Mapping[str, Any]]:
        """Inside a Refine attempt (modules/trace.py), the signature sent gets DSPy's `hint_` input.

        Only the prompt changes: demos, which lack the field, become partial demos exactly as in
        DSPy, while parsing, the trace and the caller's inputs keep the predictor's own signature.
        """
        hint = tracing.current_hint(self)
        if hint is None:
            return self.signature, inputs
        signature = self.signature
        if tracing.HINT_FIELD not in signature.input_fields:
            signature = signature.append_input(tracing.HINT_FIELD, str, tracing.HINT_DESC)
        return signature, {**inputs, tracing.HINT_FIELD: hint}

    def request(self, inputs: Mapping[str, Any], adapter: ChatAdapter | None = None) -> LMRequest:
        adapter = adapter or self.adapter
        extra = dict(self.extra)
        if isinstance(adapter, JSONAdapter) and "response_format" not in extra:
            extra["response_format"] = adapter.response_format(self.signature)
        # An optimizer may resample a whole run (bootstrap rounds); see modules/trace.py.
        override = tracing.current_override()
        temperature = self.temperature
        if override is not None and override.temperature is not None:
            temperature = override.temperature
        return LMRequest(
            messages=tuple(self.messages(inputs, adapter)),
            temperature=temperature,
            max_tokens=self.max_tokens,
            n=self.n,
            extra=extra,
            rollout_id=override.rollout_id if override is not None else None,
        )

    async def acall(self, **inputs: Any) -> Prediction:
        if self.lm is None:
            raise RuntimeError("Predict has no LM; the program builder assigns one")
        prediction, error, usage = await self._call(self.adapter, inputs)
        if prediction is None and not isinstance(self.adapter, JSONAdapter):
            # DSPy's rule: a chat reply that does not parse gets one more call in JSON mode. A reply
            # that parsed is never asked again.
            if self.on_fallback is not None:
                self.on_fallback()
            prediction, error, retry_usage = await self._call(JSONAdapter(), inputs)
            usage = usage + retry_usage
        if prediction is None:
            assert error is not None
            raise error
        prediction.usage = usage
        tracing.record(self, inputs, prediction)
        return prediction

    async def _call(
        self, adapter: ChatAdapter, inputs: dict[str, Any]
    ) -> tuple[Prediction | None, AdapterParseError | None, Usage]:
        """One LM call, parsed. A reply that does not fit is returned as an error, with its usage.

        Such a reply is also dropped from the cache: replayed, it would fail the same way forever.
        """
        request, response = await self._complete(adapter, inputs)
        if not response.completions:
            if self.on_unusable_reply is not None:
                self.on_unusable_reply(response.cached)
            return None, AdapterParseError("the LM returned no completion", lm_response=""), response.usage
        parsed: list[Mapping[str, Any]] = []
        first_error: AdapterParseError | None = None
        for completion in response.completions:
            try:
                parsed.append(adapter.parse(self.signature, completion))
            except AdapterParseError as exc:
                first_error = first_error or exc
        # With n > 1 a sampled completion may be malformed; keep the good ones, fail only if none is.
        if not parsed:
            if self.on_unusable_reply is not None:
                self.on_unusable_reply(response.cached)
            self.lm.forget(request)  # type: ignore[union-attr]  # _complete checked it
            return None, first_error, response.usage
        return Prediction.from_completions(parsed), None, response.usage

    async def _complete(self, adapter: ChatAdapter, inputs: dict[str, Any]) -> tuple[LMRequest, LMResponse]:
        assert self.lm is not None
        # A server that refuses json_schema gets json_object from the HTTP backend itself
        # (lm/structured_outputs.py), below the retries: nothing to fall back on here.
        request = self.request(inputs, adapter)
        with calling(self):  # names the call in an evaluate run folder's calls.jsonl (lm/call_log.py)
            return request, await self.lm.complete(request)
