"""A real, scriptable OpenAI-compatible server on loopback, for testing LM clients without mocks.

    with LMServer() as server:                      # or the `lm_server` pytest fixture
        server.api_base                             # "http://127.0.0.1:<port>/v1"
        server.responder = lambda body: "positive"  # default reply: text (or a list, one per n)
        server.push(Reply(status=429, json=error_body("slow down"), headers={"Retry-After": "2"}))
        server.push(Reply.stall(5.0))               # the next request waits 5 s before its reply
        server.push(Reply.reset())                  # ... or its connection is reset (RST)
        server.push(Reply.close())                  # ... or closed (FIN) without a reply
        server.push(Reply(body=b"<html>oops"))      # ... or gets a body that is not JSON
        ...run the client...
        server.requests[-1].body["messages"]        # every request is recorded

Queued replies are used first, one per request, in order; then the `rule`, if set, may script
the reply; otherwise the `responder` answers with a normal completion.

For concurrent clients, whose arrival order is not fixed, a rule scripts faults per logical call:

        def rule(request: RecordedRequest, attempt: int) -> Reply | None:
            # the call whose last message is "q7" fails twice with a 503, then succeeds
            asked = request.body["messages"][-1]["content"]
            return Reply(status=503) if asked == "q7" and attempt < 2 else None

        server.rule = rule

`attempt` counts the earlier requests with an identical body (0 for the first), so a rule is a
deterministic function of what was asked and how often, whatever order requests arrive in.

`delay` (per reply, or `default_delay` for all) simulates latency; `max_in_flight` tells how many
requests were ever served at once; each recorded request has the time (`at`) it arrived.

`POST /v1/embeddings` answers in OpenAI's shape, one vector per input from the `embedder`
(default `bag_of_words`: a deterministic hashed word count, so texts that share words are
similar). Embeddings requests are recorded, queued and scripted by rules like the others.

        server.embedder = lambda text: [1.0, 0.0] if "cat" in text else [0.0, 1.0]

`POST .../v1/messages` answers in Anthropic's Messages shape (one text block from the responder,
`stop_reason` from `server.stop_reason`, usage as input_tokens/output_tokens); `server.root` is
the api_base an Anthropic client is given. A query string (Azure's ?api-version=) is recorded in
the path and ignored for routing.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

Responder = Callable[[dict[str, Any]], "str | list[str]"]
Embedder = Callable[[str], list[float]]
# (request, attempt) -> the reply to give, or None for a normal completion; see the module docstring.
Rule = Callable[["RecordedRequest", int], "Reply | None"]


def error_body(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    """An error body in OpenAI's shape."""
    return {"error": {"message": message, "type": type_, "code": None}}


def echo(body: dict[str, Any]) -> str:
    """The default responder: repeats the last message, so tests can see what was sent."""
    return f"echo: {body['messages'][-1]['content']}"


EMBEDDING_SIZE = 64


def bag_of_words(text: str) -> list[float]:
    """The default embedder: each lower-cased word adds 1 to a slot chosen by its CRC32."""
    vector = [0.0] * EMBEDDING_SIZE
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word.encode()) % EMBEDDING_SIZE] += 1.0
    return vector


@dataclass
class Reply:
    """One scripted reply. `json` or raw `body`; neither means a completion from the responder."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before replying (longer than the client timeout = a stall)
    action: Literal["reply", "reset", "close"] = "reply"

    @classmethod
    def stall(cls, seconds: float) -> Reply:
        return cls(delay=seconds)

    @classmethod
    def reset(cls) -> Reply:
        return cls(action="reset")

    @classmethod
    def close(cls) -> Reply:
        return cls(action="close")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON, or None when it was not JSON
    raw: bytes
    client_port: int  # the same port on two requests means the client reused its connection
    at: float = field(default_factory=time.monotonic)  # when the request was read, to measure gaps and pacing


class LMServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.responder: Responder = echo
        self.embedder: Embedder = bag_of_words
        self.default_delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self.rule: Rule | None = None
        self.stop_reason = "end_turn"  # of Anthropic-format replies
        self._attempts: Counter[bytes] = Counter()
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, 0), _handler_class(self), bind_and_activate=False)
        # socketserver's default backlog of 5 drops connections when hundreds arrive at once; the
        # client then sees delays and timeouts the test never asked for.
        self._httpd.request_queue_size = 1024
        try:
            self._httpd.server_bind()
            self._httpd.server_activate()
        except BaseException:
            self._httpd.server_close()
            raise
        self._httpd.daemon_threads = True
        # Dropped connections make the handler's final flush fail; that is the point, not news.
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        # A short poll interval makes stop() (and so each test's teardown) take milliseconds, not 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="lm-server", daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        """The server without /v1: an Anthropic api_base (the client appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers so they end with the server
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- used by the handler threads --------------------------------------------------------

    def _take(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if self._queue:
                return self._queue.popleft()
            if self.rule is not None:
                key = _canonical(request)
                attempt = self._attempts[key]
                self._attempts[key] += 1
                scripted = self.rule(request, attempt)
                if scripted is not None:
                    return scripted
            return Reply(delay=self.default_delay)

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _completion(self, body: Any) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        texts = self.responder(body)
        texts = [texts] * n if isinstance(texts, str) else list(texts)
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                for i, text in enumerate(texts)
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": sum(len(text.split()) for text in texts),
                "total_tokens": prompt_words + sum(len(text.split()) for text in texts),
            },
        }

    def _anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = self.responder(body)
        text = texts if isinstance(texts, str) else next(iter(texts))
        prompt_words = len(str(body.get("system", "")).split()) + sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages", [])
        )
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_words, "output_tokens": len(text.split())},
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        tokens = sum(len(str(text).split()) for text in texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": self.embedder(str(text))}
                for i, text in enumerate(texts)
            ],
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _canonical(request: RecordedRequest) -> bytes:
    """Identical requests get the same key whatever order the client wrote the JSON keys in."""
    if request.body is None:
        return request.raw
    return json.dumps(request.body, sort_keys=True).encode()


def _handler_class(server: LMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool connections
        # Headers and body go out in two writes; with Nagle on, the body of every reply on a reused
        # connection waits for the client's delayed ACK (~40 ms), which turns a batch into minutes.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            recorded = RecordedRequest(
                "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw, self.client_address[1]
            )
            reply = server._take(recorded)
            try:
                self._answer(reply, body)
            finally:
                server._done()

        def _answer(self, reply: Reply, body: Any) -> None:
            if reply.delay and server._stopping.wait(reply.delay):
                self._drop(reset=False)
                return
            if reply.action != "reply":
                self._drop(reset=reply.action == "reset")
                return
            if reply.body is not None:
                payload = reply.body
            elif reply.json is not None:
                payload = json.dumps(reply.json).encode()
            elif isinstance(body, dict) and self._route() == "embeddings":
                payload = json.dumps(server._embeddings(body)).encode()
            elif isinstance(body, dict) and self._route() == "messages":
                payload = json.dumps(server._anthropic(body)).encode()
            elif isinstance(body, dict):
                payload = json.dumps(server._completion(body)).encode()
            else:
                payload = json.dumps(error_body("the request body is not JSON")).encode()
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (its timeout); nothing left to tell it

        def _route(self) -> str:
            return self.path.partition("?")[0].rstrip("/").rpartition("/")[2]

        def _drop(self, *, reset: bool) -> None:
            if reset:  # linger 0 makes close() send RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
