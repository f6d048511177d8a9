"""OpenAI-compatible POSTs on an aiohttp session of the client's own, for calls many in flight:
httpx's pool rescans every connection per queued request (~30 ms of CPU per call at 64 in flight,
benchmarks/evaluate_throughput.py); aiohttp's connector does not. `OpenAICompatLM` uses it once
its calls overlap, and its httpx client for everything else.

aiohttp directly rather than the httpx-aiohttp transport: the fast path needs the session, the
request settings and the error mapping, which that package keeps private (dspx pinned it to a
tested range because of them); here they are a dozen lines of our own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict


class AiohttpPost:
    """`client.post(url, content=..., headers=headers)` on aiohttp, with the work that is the same
    for every call done once.

    httpx's request building (URL parsing, header merging), cookie extraction and response
    streaming cost about twice the CPU of the aiohttp request under them. This sends the headers
    and timeouts the client would, maps aiohttp's errors to the httpx errors the client would raise,
    and returns an `httpx.Response` read and decoded as the client would. Cookies keep httpx's
    behaviour: a reply that sets one is stored in the client's jar, and from then on
    `OpenAICompatLM` sends through the client, which adds them.
    """

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str], limits: httpx.Limits) -> None:
        self._client = client
        # What the client would build: its headers (user agent, auth, ...) and ours, Host included.
        template = client.build_request("POST", url, content=b"x", headers=headers)
        self._template = template
        self._url = str(template.url)
        self._headers = CIMultiDict(
            (key, value) for key, value in template.headers.multi_items() if key != "content-length"
        )
        timeout = template.extensions.get("timeout", {})
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=timeout.get("connect"), sock_read=timeout.get("read"), connect=timeout.get("pool")
        )
        self._limits = limits
        self._extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that runs the calls.
        if self._session is None:
            # https: the certificates httpx would trust (certifi); http: aiohttp's default, never used.
            tls: Any = httpx.create_ssl_context() if self._url.startswith("https://") else True
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                ssl=tls,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, content: bytes) -> httpx.Response | PlainReply:
        try:  # what httpx_errors() does, without a context manager object per call
            async with self._open().request(
                "POST",
                self._url,
                headers=self._headers,
                data=content,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._timeout,
            ) as response:
                body = await response.read()
                status, raw_headers, reason = response.status, response.raw_headers, response.reason
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc)(str(exc) or type(exc).__name__) from exc
        if status < 400 and not any(key.lower() in _HTTPX_ONLY for key, _ in raw_headers):
            # Nothing to decode and no cookie to keep: the body is the content, as httpx would read it.
            return PlainReply(status, body, lambda: self.response(status, raw_headers, body, reason))
        return self.response(status, raw_headers, body, reason)

    def response(self, status: int, raw_headers: Any, body: bytes, reason: str | None) -> httpx.Response:
        """The `httpx.Response` the client would return: read, decoded, its cookies stored."""
        extensions = self._extensions
        if reason:
            extensions = {**extensions, "reason_phrase": reason.encode()}
        reply = httpx.Response(
            status_code=status,
            headers=raw_headers,
            stream=httpx.ByteStream(body),
            request=self._template,
            extensions=extensions,
        )
        reply.read()  # decodes Content-Encoding (httpx.DecodingError if it cannot), as the client does
        if any(key.lower() == b"set-cookie" for key, _ in raw_headers):
            self._client.cookies.extract_cookies(reply)
        return reply


@contextmanager
def httpx_errors() -> Iterator[None]:
    """aiohttp's failures as the httpx errors httpx's own transport raises for the same event, so
    `ErrorMapper.transport` words them alike: refused, reset and stalled connections differ."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _httpx_error(exc)(str(exc) or type(exc).__name__) from exc


def _httpx_error(exc: BaseException) -> type[httpx.TransportError]:
    # Most specific first: ConnectionTimeoutError is a ServerTimeoutError, ClientConnectorError a ClientOSError.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, TimeoutError):  # ServerTimeoutError and SocketTimeoutError are ones too
        return httpx.ReadTimeout
    if isinstance(exc, (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)):
        return httpx.ProxyError
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
        return httpx.ReadError
    if isinstance(exc, aiohttp.ClientResponseError):  # a reply that is not HTTP
        return httpx.RemoteProtocolError
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol
    return httpx.TransportError


# Response headers that need httpx's own handling: decoding the body, keeping cookies.
_HTTPX_ONLY = frozenset((b"content-encoding", b"set-cookie"))


class PlainReply:
    """A successful reply with a plain body: what `_parse` reads of an `httpx.Response`, without
    building one; `text` (only wanted for an error message) builds it."""

    __slots__ = ("_full", "content", "status_code")

    def __init__(self, status_code: int, content: bytes, full: Any) -> None:
        self.status_code = status_code
        self.content = content
        self._full = full

    @property
    def text(self) -> str:
        return str(self._full().text)
