"""The OpenAI-compatible client: chat completions and embeddings from OpenAI itself, vLLM, Ollama,
llama.cpp's server or anything else that speaks the API.

Endpoints, providers and error messages are in `openai_http.py`; which `response_format` a model
is sent, and the fallback for servers that refuse a schema, in `structured_outputs.py`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, LMRequest, LMResponse
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.openai_http import (
    PROVIDERS,
    TRANSPORT_ENV,
    Endpoint,
    ErrorMapper,
    LMRequestError,
    Provider,
    new_client,
    pool_limits,
    resolve_endpoint,
    shorten,
    split_provider,
    usage_of,
)
from dspx_cli.lm.structured_outputs import (
    JSON_OBJECT,
    Mode,
    SchemaRefusals,
    asks_for_schema,
    catalog_mode,
    may_refuse_schema,
    outgoing,
)

if TYPE_CHECKING:
    from dspx_cli.lm.aiohttp_post import AiohttpPost, PlainReply
    from dspx_cli.lm.embeddings import EmbeddingsRequest, EmbeddingsResponse

# Re-exported: callers name these as part of the client's interface.
__all__ = [
    "PROVIDERS",
    "Endpoint",
    "LMRequestError",
    "OpenAICompatLM",
    "Provider",
    "resolve_endpoint",
    "split_provider",
]

logger = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json"}


class OpenAICompatLM(LM):
    """One instance per endpoint and model; its httpx client pools connections across calls.

    Two ways to send (`DSPX_HTTP_TRANSPORT` forces one: `httpx` or `aiohttp`): while calls come one
    at a time (`dspx run` of one input), httpx's own transport, which costs no aiohttp import; from
    the first time two calls are in flight (evaluate, --batch, a flow's parallel steps), aiohttp
    (lm/aiohttp_post.py), whose pool keeps up at hundreds in flight (see docs/architecture.md).
    """

    def __init__(
        self, config: LMConfig, *, refusals: SchemaRefusals | None = None, what: str = "model", section: str = "lm"
    ) -> None:
        self.model = config.model
        self.config = config
        self.endpoint = resolve_endpoint(config, what, section)
        if self.endpoint.wire == "anthropic":
            # create_lm sends anthropic/ chat models to lm/anthropic.py; only an embeddings section
            # lands here, and Anthropic's API has no embeddings.
            raise LMError(
                f"{what} {config.model!r}: Anthropic's API offers no embeddings; use an OpenAI-compatible model"
            )
        self.errors = ErrorMapper(self.endpoint, config.timeout, section)
        self.refusals = refusals if refusals is not None else SchemaRefusals()
        self._client: httpx.AsyncClient | None = None
        self._fast: AiohttpPost | None = None
        self._pooled = False  # whether chat calls go through the aiohttp path (self._fast)
        self._in_flight = 0
        self._retired: list[httpx.AsyncClient] = []  # the one-at-a-time client, closed in aclose

    def __repr__(self) -> str:
        return f"OpenAICompatLM(model={self.model!r}, url={self.endpoint.url!r})"

    @cached_property
    def response_format_mode(self) -> Mode:
        """What this model is sent when the adapter asks for a response_format (structured_outputs.py).
        Worked out on first use: a run whose requests carry none never compiles the catalog's patterns."""
        return catalog_mode(split_provider(self.config.model)[0], self.endpoint.model_name)

    @property
    def transport_name(self) -> str:
        """Which transport the next call goes through: "httpx" or "aiohttp"."""
        return "aiohttp" if self._wants_pool() else "httpx"

    def _wants_pool(self) -> bool:
        forced = os.environ.get(TRANSPORT_ENV)
        if forced in ("httpx", "aiohttp"):
            return forced == "aiohttp"
        return self._pooled or self._in_flight > 1

    def _http(self) -> httpx.AsyncClient:
        # Created on first use so it belongs to the event loop that runs the calls.
        pooled = self._wants_pool()
        if self._client is not None and pooled and not self._pooled:
            # Calls began to overlap: later ones go through the aiohttp pool; the calls still in
            # flight on the first client finish there, and aclose closes it. Its cookies come along.
            self._retired.append(self._client)
            self._client = None
        if self._client is None:
            self._client = self._new_client(pooled)
        return self._client

    def _new_client(self, pooled: bool) -> httpx.AsyncClient:
        cookies = self._retired[-1].cookies if self._retired else None
        client = new_client(self.config, self.endpoint.url, self.endpoint.auth_headers(), cookies)
        self._pooled = pooled
        if pooled:
            from dspx_cli.lm.aiohttp_post import AiohttpPost  # ~130 ms of import: only when calls overlap

            self._fast = AiohttpPost(client, self.endpoint.url, _JSON_HEADERS, pool_limits(self.config))
        return client

    def body(self, request: LMRequest) -> dict[str, Any]:
        """The JSON sent: extra parameters first, so the named settings win over them."""
        body: dict[str, Any] = {**self.config.extra, **request.extra}
        body["model"] = self.endpoint.model_name
        body["messages"] = [dict(message) for message in request.messages]
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        max_tokens = request.max_tokens if request.max_tokens is not None else self.config.max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if request.n != 1:
            # DSPy leaves n out when it is 1, and some servers reject the parameter altogether.
            body["n"] = request.n
        if "response_format" in request.extra and "response_format" not in self.config.extra:
            # The adapter's format, which this model may not get (see structured_outputs.py); one
            # the program sets itself in the lm's extra is sent as written.
            sent = outgoing(body["response_format"], self.response_format_mode)
            if sent is None:
                del body["response_format"]
            else:
                body["response_format"] = sent
        if asks_for_schema(body) and self.refusals.refused(self.endpoint.url, self.endpoint.model_name):
            body["response_format"] = dict(JSON_OBJECT)
        return body

    async def complete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        body = self.body(request)
        reply = await self._send(body)
        if reply.status_code >= 400 and asks_for_schema(body) and may_refuse_schema(reply.status_code):
            # The server may be refusing the schema (llama-cpp-python answers 500): ask again at once
            # in JSON mode rather than spend the retries on a request that cannot succeed.
            assert isinstance(reply, httpx.Response)  # only successful replies come back plain
            refusal = self.errors.status(reply, self.endpoint.url)
            reply = await self._send({**body, "response_format": dict(JSON_OBJECT)})
            if reply.status_code < 400 and self.refusals.remember(self.endpoint.url, self.endpoint.model_name):
                logger.warning(
                    "%s refused response_format json_schema (%s); asking %s for json_object from now on",
                    self.endpoint.url,
                    refusal,
                    self.endpoint.model_name,
                )
        latency = time.perf_counter() - started
        if reply.status_code >= 400:
            assert isinstance(reply, httpx.Response)  # only successful replies come back plain
            raise self.errors.status(reply, self.endpoint.url)
        return self._parse(reply, latency)

    async def _send(self, body: dict[str, Any]) -> httpx.Response | PlainReply:
        url = self.endpoint.url
        self._in_flight += 1
        try:
            # orjson on both ends: the stdlib json is a visible share of each call at high concurrency.
            content = orjson.dumps(body)
            client = self._http()
            fast = self._fast
            if fast is not None and not client.cookies:
                return await fast.post(content)
            return await client.post(url, content=content, headers=_JSON_HEADERS)
        except httpx.HTTPError as raw:
            raise self.errors.transport(raw, url) from None
        finally:
            self._in_flight -= 1

    def _parse(self, reply: httpx.Response | PlainReply, latency: float) -> LMResponse:
        url = self.endpoint.url
        data = self.errors.json(reply, url, " (is api_base an OpenAI-compatible /v1 endpoint?)")
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise self.errors.error(f"{url} replied without choices: {shorten(json.dumps(data))}", retryable=True)
        try:
            ordered = choices if len(choices) == 1 else sorted(choices, key=lambda choice: choice.get("index", 0))
            completions = [choice["message"].get("content") or "" for choice in ordered]
            finish_reasons = [choice.get("finish_reason") for choice in ordered]
        except (AttributeError, KeyError, TypeError):
            # Like a body that is not JSON: a proxy or an overloaded server mangled it; the next one may be fine.
            raise self.errors.error(
                f"{url} replied with choices that have no message: {shorten(json.dumps(data))}", retryable=True
            ) from None
        return LMResponse(
            completions=completions,
            usage=usage_of(data.get("usage")),
            model=self.model,
            latency_s=latency,
            finish_reasons=finish_reasons,
        )

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        """One `/embeddings` call: a vector per text, through the same client and error mapping."""
        # Imported here: a chat-only run (most runs) never needs the embeddings types.
        from dspx_cli.lm.embeddings import EmbeddingsResponse, EmbeddingsShapeError, parse_vectors

        url = self.endpoint.embeddings_url
        body = {**self.config.extra, **request.extra, "model": self.endpoint.model_name, "input": list(request.texts)}
        started = time.perf_counter()
        try:
            reply = await self._http().post(url, content=orjson.dumps(body), headers=_JSON_HEADERS)
        except httpx.HTTPError as raw:
            raise self.errors.transport(raw, url) from None
        latency = time.perf_counter() - started
        if reply.status_code >= 400:
            raise self.errors.status(reply, url)
        data = self.errors.json(reply, url)
        try:
            vectors = parse_vectors(data, len(request.texts))
        except EmbeddingsShapeError as exc:
            raise self.errors.error(f"{url} {exc}") from None
        usage = usage_of(data.get("usage"))
        return EmbeddingsResponse(vectors, usage, self.model, latency)

    async def aclose(self) -> None:
        clients, self._retired = [*self._retired, self._client], []
        fast, self._fast = self._fast, None
        self._client = None
        self._pooled = False
        if fast is not None:
            await fast.aclose()
        for client in clients:
            if client is not None:
                await client.aclose()
