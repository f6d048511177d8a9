"""One span per LM call, named and described by OpenTelemetry's GenAI semantic conventions.

`TracedLM` sits outside the whole stack (`ObservedLM` and the cache included: see
program/context.py), so a cache hit is a span too, marked `dspx.cache.hit`. Its attributes:

    span name "chat {model}" (embeddings: "embeddings {model}"), kind CLIENT
    gen_ai.operation.name      chat | embeddings
    gen_ai.provider.name       openai, anthropic, azure.ai.openai, gcp.gemini, ... (the model prefix);
    gen_ai.system              the same value, for backends that read the older attribute
    gen_ai.request.model       the model without its provider prefix; gen_ai.response.model likewise
    gen_ai.request.temperature / max_tokens / choice.count (n > 1) / seed / top_p, when set
    gen_ai.usage.input_tokens / output_tokens, gen_ai.response.finish_reasons
    server.address / server.port   the endpoint's host (never its path, query or credentials)
    dspx.cache.hit             served from dspx's response cache (no tokens were paid for)
    error.type                 on a failed call (and the span's status is ERROR)

The API key, headers and endpoint query never reach a span: the request holds no secret
(lm/base.py) and the endpoint is reduced to its host. Prompts and completions are added only when
the user opted in (`Telemetry.capture_content`), as `gen_ai.input.messages` and
`gen_ai.output.messages` (JSON, the conventions' parts layout); an inline image is left out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dspx_cli.core.telemetry import AttributeValue, Telemetry
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Message
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.providers import PROVIDERS, split_provider

if TYPE_CHECKING:
    from dspx_cli.lm.embeddings import EmbeddingsRequest, EmbeddingsResponse

# The conventions' well-known provider names, where dspx's model prefix spells them differently.
_PROVIDER_NAMES = {"azure": "azure.ai.openai", "gemini": "gcp.gemini", "mistral": "mistral_ai"}


class TracedLM(LM):
    def __init__(self, inner: LM, config: LMConfig, telemetry: Telemetry) -> None:
        self.inner = inner
        self.model = inner.model
        self.config = config  # as ObservedLM's: mipro_v2's proposer reads the prompt LM's defaults from it
        self.telemetry = telemetry
        provider, name = _provider_and_model(config)
        self._name = name
        # Computed once per LM: the same for every call.
        self._static: dict[str, AttributeValue] = {
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": name,
            **_server(config, provider),
        }

    async def complete(self, request: LMRequest) -> LMResponse:
        attributes: dict[str, AttributeValue] = {"gen_ai.operation.name": "chat", **self._static}
        attributes.update(_request_attributes(request))
        if self.telemetry.capture_content:
            attributes["gen_ai.input.messages"] = _input_messages(request.messages)
        with self.telemetry.span(f"chat {self._name}", attributes, client=True) as span:
            response = await self.inner.complete(request)
            span.update(
                {
                    "gen_ai.response.model": split_provider(response.model)[1],
                    "gen_ai.usage.input_tokens": response.usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": response.usage.completion_tokens,
                    "gen_ai.response.finish_reasons": [reason or "" for reason in response.finish_reasons] or None,
                    "dspx.cache.hit": response.cached,
                }
            )
            if self.telemetry.capture_content:
                span.set("gen_ai.output.messages", _output_messages(response))
            return response

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        attributes: dict[str, AttributeValue] = {"gen_ai.operation.name": "embeddings", **self._static}
        with self.telemetry.span(f"embeddings {self._name}", attributes, client=True) as span:
            response: EmbeddingsResponse = await self.inner.embed(request)  # type: ignore[attr-defined]
            span.set("gen_ai.usage.input_tokens", response.usage.total_tokens)
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _provider_and_model(config: LMConfig) -> tuple[str, str]:
    prefix, name = split_provider(config.model)
    if prefix is not None:
        return _PROVIDER_NAMES.get(prefix, prefix), name
    # No hosted prefix: a model this process runs (local/..., a GGUF file) or a server at api_base.
    return ("openai" if config.api_base else "dspx.local"), config.model


def _server(config: LMConfig, provider: str) -> dict[str, AttributeValue]:
    prefix = split_provider(config.model)[0]
    base = config.api_base or (PROVIDERS[prefix].api_base if prefix is not None else "")
    try:
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
    except ValueError:
        return {}
    if not host:
        return {}
    server: dict[str, AttributeValue] = {"server.address": host}
    if port is not None:
        server["server.port"] = port
    return server


def _request_attributes(request: LMRequest) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    if request.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if request.n != 1:
        attributes["gen_ai.request.choice.count"] = request.n
    for key, name in (("top_p", "gen_ai.request.top_p"), ("seed", "gen_ai.request.seed")):
        value = request.extra.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return attributes


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            # An inline image (data: URL) would be megabytes of base64 in every span.
            parts.append({"type": "uri", "modality": "image", "uri": "data:..." if url.startswith("data:") else url})
    return parts


def _input_messages(messages: tuple[Message, ...]) -> str:
    return json.dumps(
        [{"role": m.get("role", "user"), "parts": _parts(m.get("content"))} for m in messages], ensure_ascii=False
    )


def _output_messages(response: LMResponse) -> str:
    reasons = response.finish_reasons
    return json.dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                "finish_reason": (reasons[i] if i < len(reasons) else None) or "stop",
            }
            for i, text in enumerate(response.completions)
        ],
        ensure_ascii=False,
    )
