"""Anthropic's native Messages API (`anthropic/<model>`), over httpx.

The same place in the LM stack as the OpenAI-compatible client (retries, limits, cache, usage and
history wrap it alike), and the same error mapping (`ErrorMapper`: one line per failure, 429 and
5xx retryable with Retry-After, Anthropic's 529 "overloaded" among the 5xx). What differs is the
wire format:

- the system message(s) go in a top-level `system` string, the rest stay in `messages`;
- `max_tokens` is required: `DEFAULT_MAX_TOKENS` when neither the program nor the call sets one;
- `stop` becomes `stop_sequences`; Anthropic has no `n`, so n completions are n requests;
- no `response_format`: the JSONAdapter's is dropped and the reply is JSON by the prompt alone;
- the key goes in `x-api-key`, with `anthropic-version` naming the API revision.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import orjson

from dspx_cli.lm.base import LM, LMRequest, LMResponse, Usage
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.openai_http import ErrorMapper, new_client, resolve_endpoint, shorten, usage_of
from dspx_cli.lm.structured_outputs import SchemaRefusals

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicLM", "messages_url"]

ANTHROPIC_VERSION = "2023-06-01"
# The Messages API refuses a request without max_tokens. litellm (under DSPy 3.4.1) sends the
# model's largest output from its catalog (up to 128000); dspx has no catalog, and a non-streaming
# request that large is refused by the API as possibly too long, so it sends litellm's older fixed
# default instead. A program that needs longer replies sets max_tokens in its lm section.
DEFAULT_MAX_TOKENS = 4096

# Anthropic's stop reasons, in the finish_reason words the rest of dspx (and OpenAI) use.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def messages_url(api_base: str) -> str:
    """`{base}/v1/messages`, whether api_base is the host, ends in /v1, or is the full URL already."""
    base = api_base.rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return f"{base}/messages"
    return f"{base}/v1/messages"


class AnthropicLM(LM):
    """One instance per endpoint and model; its httpx client pools connections across calls."""

    def __init__(self, config: LMConfig, *, refusals: SchemaRefusals | None = None) -> None:
        del refusals  # no response_format is ever sent, so nothing can be refused
        self.model = config.model
        self.config = config
        self.endpoint = resolve_endpoint(config)
        self.url = messages_url(self.endpoint.api_base)
        self.errors = ErrorMapper(self.endpoint, config.timeout)
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"AnthropicLM(model={self.model!r}, url={self.url!r})"

    def _http(self) -> httpx.AsyncClient:
        # Created on first use so it belongs to the event loop that runs the calls.
        if self._client is None:
            headers = {
                **self.endpoint.auth_headers(),
                "anthropic-version": ANTHROPIC_VERSION,
                "Content-Type": "application/json",
            }
            self._client = new_client(self.config, self.url, headers)
        return self._client

    def body(self, request: LMRequest) -> dict[str, Any]:
        """The JSON sent for one completion: extra parameters first, so the named settings win."""
        extra = {**self.config.extra, **request.extra}
        if "response_format" in request.extra and "response_format" not in self.config.extra:
            # The adapter's JSON mode: Anthropic has no such parameter, the prompt asks for JSON.
            del extra["response_format"]
        extra.pop("n", None)
        stop = extra.pop("stop", None)
        body: dict[str, Any] = extra
        body["model"] = self.endpoint.model_name
        system = [str(m.get("content", "")) for m in request.messages if m.get("role") == "system"]
        if system:
            body["system"] = "\n\n".join(system)
        body["messages"] = [
            {"role": m.get("role", "user"), "content": m.get("content", "")}
            for m in request.messages
            if m.get("role") != "system"
        ]
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        max_tokens = request.max_tokens if request.max_tokens is not None else self.config.max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        body["max_tokens"] = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
        if stop:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        return body

    async def complete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        body = self.body(request)
        n = max(1, request.n)
        # No `n` in the Messages API: n completions are n requests, sent together.
        replies = await asyncio.gather(*(self._one(body) for _ in range(n)))
        usage = Usage()
        for _, _, counted in replies:
            usage = usage + counted
        return LMResponse(
            completions=[text for text, _, _ in replies],
            usage=usage,
            model=self.model,
            latency_s=time.perf_counter() - started,
            finish_reasons=[reason for _, reason, _ in replies],
        )

    async def _one(self, body: dict[str, Any]) -> tuple[str, str | None, Usage]:
        try:
            reply = await self._http().post(self.url, content=orjson.dumps(body))
        except httpx.HTTPError as raw:
            raise self.errors.transport(raw, self.url) from None
        if reply.status_code >= 400:
            raise self.errors.status(reply, self.url)
        data = self.errors.json(reply, self.url, " (is api_base Anthropic's API, e.g. https://api.anthropic.com?)")
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, list):
            raise self.errors.error(f"{self.url} replied without content: {shorten(json.dumps(data))}", retryable=True)
        text = "".join(
            str(block.get("text", "")) for block in content if isinstance(block, dict) and block.get("type") == "text"
        )
        stop_reason = data.get("stop_reason")
        reason = _FINISH.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None
        return text, reason, _usage(data.get("usage"))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


# input_tokens plus the prompt-cache writes and reads, all billed as input.
_PROMPT_TOKENS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _usage(usage: Any) -> Usage:
    return usage_of(usage, prompt=_PROMPT_TOKENS, completion="output_tokens")
