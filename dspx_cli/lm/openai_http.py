"""What every OpenAI-compatible call shares, chat completions and embeddings alike: which server
a model string names (providers, api_base, the key), and how failures read.

Every failure becomes one `LMRequestError` line that says what to fix, with what the retry layer
needs to decide (status, retryable, Retry-After). The API key goes into the Authorization header
and nowhere else: messages are scrubbed of it, and no repr shows it.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson

from dspx_cli.errors import LMError
from dspx_cli.lm.base import Usage
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.providers import PROVIDERS, Provider, Wire, split_provider

__all__ = [
    "AZURE_API_VERSION",
    "CONNECT_TIMEOUT",
    "PROVIDERS",
    "TRANSPORT_ENV",
    "Endpoint",
    "ErrorMapper",
    "LMRequestError",
    "Provider",
    "new_client",
    "pool_limits",
    "resolve_endpoint",
    "split_provider",
]


# A server that does not accept a connection within this is down or unreachable, whatever the
# lm timeout allows for generating a reply.
CONNECT_TIMEOUT = 10.0

# Named in messages about keys: the convention program files use (`api_key: ${OPENAI_API_KEY}`).
_KEY_ENV_CONVENTION = "OPENAI_API_KEY"


class LMRequestError(LMError):
    """An LMError from one HTTP call, with what a retry layer needs to decide."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Endpoint:
    """Where a config's requests go and under which model name."""

    api_base: str
    model_name: str  # what is sent as "model": the user's name without the provider prefix
    api_key: str | None = field(default=None, repr=False)
    key_env: str | None = None  # the variable the key was read from, if it came from the environment
    wire: Wire = "openai"
    query: str = ""  # appended to every URL (Azure's "?api-version=...")
    key_hint: str = _KEY_ENV_CONVENTION  # the variable messages about a missing or rejected key name
    v1_hint: bool = True  # whether a 404 may mean api_base lacks its /v1

    @property
    def url(self) -> str:
        return f"{self.api_base}/chat/completions{self.query}"

    @property
    def embeddings_url(self) -> str:
        return f"{self.api_base}/embeddings{self.query}"

    def auth_headers(self) -> dict[str, str]:
        """The key's header: Azure's `api-key`, Anthropic's `x-api-key`, everyone else's bearer token."""
        if not self.api_key:
            return {}
        if self.wire == "azure":
            return {"api-key": self.api_key}
        if self.wire == "anthropic":
            return {"x-api-key": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}


# Azure OpenAI's api-version when neither the lm section nor $AZURE_API_VERSION gives one: the
# latest generally available (non-preview) version of the data-plane API.
AZURE_API_VERSION = "2024-10-21"
AZURE_API_VERSION_ENV = "AZURE_API_VERSION"


def resolve_endpoint(config: LMConfig, what: str = "model", section: str = "lm") -> Endpoint:
    """Where a config's requests go. `what` and `section` name it in messages: the retrieval
    embeddings resolve through here too ("embeddings model", "embeddings section")."""
    provider_name, model_name = split_provider(config.model)
    provider = PROVIDERS.get(provider_name) if provider_name else None
    api_base = config.api_base or (provider.api_base if provider else None)
    if not api_base:
        if provider is not None and provider.wire == "azure":
            raise LMError(
                f"{what} {config.model!r} needs api_base: the Azure OpenAI resource endpoint "
                f"(api_base: https://<resource>.openai.azure.com)"
            )
        raise LMError(
            f"{what} {config.model!r} names no OpenAI-compatible server: give api_base, "
            f"or use a provider prefix ({', '.join(p + '/' for p in PROVIDERS)})"
        )
    api_key, key_env = config.api_key, None
    if api_key is None and provider and provider.key_env:
        for name in (provider.key_env, *provider.also_key_env):
            api_key = os.environ.get(name) or None
            if api_key:
                key_env = name
                break
        # The hosted API always answers 401 without a key: say so before any call is made. Azure
        # has no default endpoint, so its api_base is always given and says nothing about the key.
        if api_key is None and (config.api_base is None or provider.wire == "azure"):
            raise LMError(
                f"{what} {config.model!r} needs an API key: export {provider.key_env}, "
                f"or set api_key in the {section} section (api_key: ${{{provider.key_env}}})"
            )
    api_base = api_base.rstrip("/")
    wire: Wire = provider.wire if provider else "openai"
    key_hint = provider.key_env if provider and provider.key_env else _KEY_ENV_CONVENTION
    v1_hint = provider is None or provider.api_base.endswith("/v1")
    query = ""
    if wire == "azure":
        version = config.api_version or os.environ.get(AZURE_API_VERSION_ENV) or AZURE_API_VERSION
        api_base = f"{api_base}/openai/deployments/{quote(model_name, safe='')}"
        query = f"?api-version={quote(version, safe='')}"
    return Endpoint(api_base, model_name, api_key, key_env, wire, query, key_hint, v1_hint)


class _Reply(Protocol):
    """What `ErrorMapper.json` reads of a reply: an `httpx.Response` or aiohttp_post's PlainReply."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...


class ErrorMapper:
    """Turns what went wrong with one HTTP call into one `LMRequestError` line that says what to
    fix, for chat completions and embeddings alike. The API key never reaches a message."""

    def __init__(self, endpoint: Endpoint, timeout: float, section: str = "lm") -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.section = section  # the program-file section whose settings a message points to

    def transport(self, exc: httpx.HTTPError, url: str) -> LMRequestError:
        if isinstance(exc, httpx.TimeoutException):
            connecting = isinstance(exc, httpx.ConnectTimeout)
            seconds = CONNECT_TIMEOUT if connecting and self.timeout > CONNECT_TIMEOUT else self.timeout
            stage = "connecting to" if connecting else "waiting for"
            return self.error(
                f"timed out after {seconds:g}s {stage} {url}: the server is slow or stalled "
                f"(raise the {self.section} timeout if it is just slow)",
                retryable=True,
            )
        if isinstance(exc, httpx.ConnectError):
            return self.error(
                f"cannot connect to {self.endpoint.api_base}: is the server running? ({one_line(str(exc))})",
                retryable=True,
            )
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.NetworkError)):
            # NetworkError covers resets (ReadError), failed sends (WriteError) and CloseError.
            return self.error(
                f"the connection to {url} closed before a reply ({one_line(str(exc)) or type(exc).__name__})",
                retryable=True,
            )
        if isinstance(exc, httpx.DecodingError):
            # A body whose Content-Encoding does not decode is a damaged reply, like one that is not JSON.
            return self.error(
                f"{url} replied with a body that cannot be decoded ({one_line(str(exc))})", retryable=True
            )
        return self.error(f"request to {url} failed: {type(exc).__name__}: {one_line(str(exc))}")

    def status(self, reply: httpx.Response, url: str) -> LMRequestError:
        status = reply.status_code
        server = server_message(reply)
        said = f": {server}" if server else ""
        if status in (401, 403):
            return self.error(f"HTTP {status} from {url}: {self._key_advice()}{said}", status=status)
        if status == 404:
            v1 = not self.endpoint.v1_hint or self.endpoint.api_base.endswith("/v1")
            hint = "" if v1 else "; OpenAI-compatible api_base usually ends in /v1"
            if url == self.endpoint.embeddings_url:
                hint += " (does the server offer /embeddings?)"
            return self.error(
                f"HTTP 404 from {url}: the model {self.endpoint.model_name!r} or the api_base is wrong{hint}{said}",
                status=status,
            )
        if status == 429:
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
            wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
            return self.error(
                f"HTTP 429 rate limited by {url}{wait}{said}", status=status, retryable=True, retry_after=retry_after
            )
        if status >= 500:
            return self.error(
                f"HTTP {status} server error from {url}{said}",
                status=status,
                retryable=True,
                retry_after=parse_retry_after(reply.headers.get("retry-after")),
            )
        # 400 and the rest of 4xx: the server's own words say what was wrong with the request.
        return self.error(
            f"HTTP {status} from {url} (model {self.endpoint.model_name!r}){said or ': the request was rejected'}",
            status=status,
            # 408 (the server timed out reading us) and 409 (a conflict, e.g. a concurrent update) are
            # transient; every other 4xx will fail the same way again.
            retryable=status in (408, 409),
            retry_after=parse_retry_after(reply.headers.get("retry-after")) if status in (408, 409) else None,
        )

    def json(self, reply: _Reply, url: str, hint: str = "") -> Any:
        """The reply's body, parsed; a body that is not JSON (a proxy's page, a mangled reply) is a
        retryable LMRequestError, with `hint` (e.g. " (is api_base ...?)") after the quoted body."""
        try:
            return orjson.loads(reply.content)
        except ValueError:
            raise self.error(
                f"{url} replied HTTP {reply.status_code} with a body that is not JSON: {snippet(reply.text)}{hint}",
                retryable=True,
            ) from None

    def _key_advice(self) -> str:
        env = self.endpoint.key_hint
        if self.endpoint.api_key is None:
            return (
                f"no API key was sent; set api_key in the {self.section} section (api_key: ${{{env}}}) and export {env}"
            )
        source = f"from {self.endpoint.key_env} " if self.endpoint.key_env else ""
        return f"the API key {source}was rejected or lacks access; check api_key (e.g. api_key: ${{{env}}})"

    def error(self, message: str, **details: Any) -> LMRequestError:
        # The last line of defence: whatever a server echoed back, the key never reaches a message.
        key = self.endpoint.api_key
        if key:
            message = message.replace(key, "***")
        return LMRequestError(message, **details)


def server_message(reply: httpx.Response) -> str:
    """The error text of the usual shapes: {"error": {"message"}}, {"error": "..."}, {"detail"}, {"message"}."""
    try:
        data = reply.json()
    except ValueError:
        return one_line(reply.text)[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return one_line(str(error["message"]))[:500]
        for value in (error, data.get("detail"), data.get("message")):
            if isinstance(value, str) and value:
                return one_line(value)[:500]
            if value:
                return one_line(json.dumps(value))[:500]
    return one_line(reply.text)[:300]


def usage_of(usage: Any, prompt: tuple[str, ...] = ("prompt_tokens",), completion: str = "completion_tokens") -> Usage:
    """Token counts under these keys (prompt ones summed); a server that reports none (or nonsense)
    counts as zero rather than failing the reply."""
    if not isinstance(usage, dict):
        return Usage()

    def count(name: str) -> int:
        try:
            return max(0, int(usage.get(name) or 0))
        except (TypeError, ValueError):
            return 0

    return Usage(sum(count(name) for name in prompt), count(completion))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" and "nan" parse as floats but are no instruction anyone can follow.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def one_line(text: str) -> str:
    return " ".join(text.split())


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def snippet(text: str) -> str:
    """A raw body, quoted as JSON so that it stays on one line."""
    return json.dumps(shorten(text), ensure_ascii=False)


# Forces one transport for every call ("httpx" or "aiohttp"); unset, the client picks (openai_compat.py).
TRANSPORT_ENV = "DSPX_HTTP_TRANSPORT"


# Connections per client when the lm section sets no max_concurrency.
_DEFAULT_POOL = 1024


def pool_limits(config: LMConfig) -> httpx.Limits:
    """The pool must not be the limit on concurrency: evaluate runs up to -j calls at once, and
    max_concurrency (when set) already bounds requests in flight."""
    pool = config.max_concurrency or _DEFAULT_POOL
    return httpx.Limits(max_connections=pool, max_keepalive_connections=pool)


def new_client(
    config: LMConfig, url: str, headers: Mapping[str, str], cookies: httpx.Cookies | None = None
) -> httpx.AsyncClient:
    """An httpx client for one endpoint: the lm timeout (connecting within `CONNECT_TIMEOUT`),
    `pool_limits`, and `httpx_transport` for `url`."""
    timeout = httpx.Timeout(config.timeout, connect=min(config.timeout, CONNECT_TIMEOUT))
    limits = pool_limits(config)
    return httpx.AsyncClient(
        headers=dict(headers), timeout=timeout, limits=limits, transport=httpx_transport(url, limits), cookies=cookies
    )


def httpx_transport(url: str, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's own transport. For an http:// endpoint, a TLS context that loads no certificates:
    loading the CA bundle costs ~30 ms and the client never speaks TLS to that host (redirects are
    not followed). It still verifies, and trusts nobody, so a TLS connection it is somehow asked
    for fails rather than going unchecked."""
    if url.startswith("http://"):
        import ssl

        return httpx.AsyncHTTPTransport(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)
