"""The outermost LM wrapper: every call, cached or not, is counted and written to the history."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from dspx_cli.lm.base import LM, LMRequest, LMResponse
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.history import History
from dspx_cli.lm.usage import UsageMeter


class ObservedLM(LM):
    def __init__(self, inner: LM, config: LMConfig, meter: UsageMeter, history: History | None) -> None:
        self.inner = inner
        self.model = inner.model
        self.config = config
        self.meter = meter
        self.history = history
        self._settings = config.redacted()  # computed once: never holds the API key

    async def complete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        try:
            response = await self.inner.complete(request)
        except Exception as exc:
            self._log(request, None, time.perf_counter() - started, error=str(exc))
            raise
        self.meter.record(
            self.model,
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
            cached=response.cached,
            price_input=self.config.price_input,
            price_output=self.config.price_output,
        )
        self._log(request, response, time.perf_counter() - started)
        return response

    def _log(self, request: LMRequest, response: LMResponse | None, seconds: float, error: str | None = None) -> None:
        if self.history is None:
            return
        record = {
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "model": self.model,
            "lm": self._settings,
            "messages": request.messages,
            "params": {
                "temperature": request.temperature,
                "max_tokens": request.max_tokens,
                "n": request.n,
                "extra": request.extra,
                "rollout_id": request.rollout_id,
            },
            "latency_s": round(seconds, 6),
        }
        if response is not None:
            record["outputs"] = response.completions
            record["usage"] = {"prompt_tokens": response.usage.prompt_tokens,
                               "completion_tokens": response.usage.completion_tokens}
            record["cached"] = response.cached
        if error is not None:
            record["error"] = error
        self.history.append(record)

    async def aclose(self) -> None:
        await self.inner.aclose()
