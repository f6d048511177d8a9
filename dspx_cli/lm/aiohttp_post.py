"""Send an OpenAI-compatible POST on httpx-aiohttp's own aiohttp session, skipping httpx's
per-call work; `OpenAICompatLM` uses it for the common case and its httpx client for the rest.

It reaches into httpx-aiohttp's transport (`client`, `get_client`, `map_aiohttp_exceptions`),
which pyproject pins to a range tested here; `AiohttpPost.over` returns None when they are
missing, and every call then goes through httpx as before.
"""

from __future__ import annotations

from typing import Any

import httpx


class AiohttpPost:
    """`client.post(url, content=..., headers=headers)` through httpx-aiohttp's transport,
    with the work that is the same for every call done once.

    httpx's request building (URL parsing, header merging), cookie extraction and response
    streaming cost about twice the CPU of the aiohttp request under them. This sends the same
    headers, timeouts and body on the transport's own aiohttp session, maps aiohttp's errors with
    the transport's own mapping, and returns an `httpx.Response` read and decoded as the client
    would. Cookies keep httpx's behaviour: a reply that sets one is stored in the client's jar, and
    from then on `OpenAICompatLM` sends through the client, which adds them.
    """

    @classmethod
    def over(cls, client: httpx.AsyncClient, transport: Any, url: str, headers: dict[str, str]) -> AiohttpPost | None:
        """None when the installed httpx-aiohttp lacks what this reaches into; the client then
        sends every call itself (slower, same behaviour)."""
        try:
            from httpx_aiohttp.transport import map_aiohttp_exceptions  # noqa: F401
        except ImportError:
            return None
        if not (hasattr(transport, "client") and callable(getattr(transport, "get_client", None))):
            return None
        return cls(client, transport, url, headers)

    def __init__(self, client: httpx.AsyncClient, transport: Any, url: str, headers: dict[str, str]) -> None:
        import aiohttp
        from httpx_aiohttp.transport import map_aiohttp_exceptions
        from multidict import CIMultiDict

        self._client = client
        self._transport = transport
        self._map_errors = map_aiohttp_exceptions
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
        self._extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}

    def _session(self) -> Any:
        import aiohttp

        transport = self._transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()
        return transport.client

    async def post(self, content: bytes) -> httpx.Response | PlainReply:
        with self._map_errors():
            async with self._session().request(
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
