"""The outermost LM wrapper: every call, cached or not, is counted and written to the history."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dspx_cli.core.redact import redact
from dspx_cli.lm import call_log
from dspx_cli.lm.base import LM, LMRequest, LMResponse
from dspx_cli.lm.cache import request_key
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.history import History
from dspx_cli.lm.usage import UsageMeter

if TYPE_CHECKING:
    # Annotations only: a run without retrieval makes no embeddings call.
    from dspx_cli.lm.embeddings import EmbeddingsRequest, EmbeddingsResponse


class ObservedLM(LM):
    def __init__(self, inner: LM, config: LMConfig, meter: UsageMeter, history: History | None) -> None:
        self.inner = inner
        self.model = inner.model
        self.config = config
        self.meter = meter
        self.history = history
        self._settings = redact(config.redacted())  # computed once: never holds the API key

    async def complete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        try:
            response = await self.inner.complete(request)
        except Exception as exc:
            # Counted so that a run whose every call failed does not report "no LM calls".
            self.meter.record_failure(self.model)
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
        call_log.count_usage(response.usage)
        self._log(request, response, time.perf_counter() - started)
        return response

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        """An embeddings call, counted (its input tokens) and written to the history like a chat call."""
        started = time.perf_counter()
        try:
            response: EmbeddingsResponse = await self.inner.embed(request)  # type: ignore[attr-defined]
        except Exception as exc:
            self.meter.record_failure(self.model)
            self._log_embeddings(request, None, time.perf_counter() - started, error=str(exc))
            raise
        self.meter.record(
            self.model,
            response.usage.total_tokens,
            0,
            cached=False,
            price_input=self.config.price_input,
            price_output=self.config.price_output,
        )
        self._log_embeddings(request, response, time.perf_counter() - started)
        return response

    def _log_embeddings(
        self, request: EmbeddingsRequest, response: EmbeddingsResponse | None, seconds: float, error: str | None = None
    ) -> None:
        if self.history is None:
            return
        record: dict[str, object] = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "kind": "embeddings",
            "model": self.model,
            "lm": self._settings,
            "inputs": list(request.texts),
            "params": {"extra": request.extra},
            "latency_s": round(seconds, 6),
        }
        if response is not None:
            # The vectors themselves would make the history mostly numbers: their shape says enough.
            rows, dimensions = response.vectors.shape
            record["embeddings"] = {"count": int(rows), "dimensions": int(dimensions)}
            record["usage"] = {"prompt_tokens": response.usage.total_tokens, "completion_tokens": 0}
            record["cached"] = False
        if error is not None:
            record["error"] = error
        self.history.append(record)

    def _log(self, request: LMRequest, response: LMResponse | None, seconds: float, error: str | None = None) -> None:
        logged = call_log.active()  # an example of `dspx evaluate` keeps its calls (lm/call_log.py)
        if self.history is None and not logged:
            return
        record = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model": self.model,
            "lm": self._settings,
            "messages": request.messages,
            # The only part of a call's record that may hold a secret setting (an extra parameter).
            "params": redact(
                {
                    "temperature": request.temperature,
                    "max_tokens": request.max_tokens,
                    "n": request.n,
                    "extra": request.extra,
                    "rollout_id": request.rollout_id,
                }
            ),
            "latency_s": round(seconds, 6),
            # What `dspx cache rm` takes, so a bad answer found here can be evicted.
            "cache_key": request_key(self.model, request),
        }
        if response is not None:
            record["outputs"] = response.completions
            record["usage"] = {
                "prompt_tokens": response.usage.prompt_tokens,
                "completion_tokens": response.usage.completion_tokens,
            }
            record["cached"] = response.cached
        if error is not None:
            record["error"] = error
        if logged:
            call_log.log_call(record)
        if self.history is None:
            return
        # Settings and parameters are redacted above; messages and outputs are the user's data.
        # A write that fails is one warning, never the call's failure.
        self.history.append(record, redacted=True)

    async def aclose(self) -> None:
        await self.inner.aclose()
