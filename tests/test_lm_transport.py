"""Which transport a call goes through: httpx's own while calls come one at a time (no aiohttp
import, no certificates loaded for an http:// endpoint), aiohttp once calls overlap."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from dspx_cli.lm import LMConfig, LMRequest, create_lm
from dspx_cli.lm.openai_compat import OpenAICompatLM
from tests.lm_server import LMServer, Reply

HELLO = LMRequest(messages=({"role": "user", "content": "hello"},))


@pytest.fixture(autouse=True)
def _client_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSPX_HTTP_TRANSPORT", raising=False)


def make_lm(server: LMServer) -> OpenAICompatLM:
    lm = create_lm(LMConfig(model="openai/gpt-test", api_base=server.api_base))
    assert isinstance(lm, OpenAICompatLM)
    return lm


def test_calls_one_at_a_time_go_through_httpx(lm_server: LMServer) -> None:
    lm = make_lm(lm_server)
    seen = []

    async def three() -> None:
        try:
            for _ in range(3):
                seen.append(lm.transport_name)
                await lm.complete(HELLO)
        finally:
            await lm.aclose()

    asyncio.run(three())
    assert seen == ["httpx", "httpx", "httpx"]
    assert len(lm_server.requests) == 3


def test_overlapping_calls_move_to_aiohttp_and_all_finish(lm_server: LMServer) -> None:
    lm = make_lm(lm_server)
    lm_server.push(*[Reply(delay=0.2) for _ in range(4)])

    async def together() -> list[str]:
        try:
            replies = await asyncio.gather(*(lm.complete(HELLO) for _ in range(4)))
            return [reply.completions[0] for reply in replies] + [lm.transport_name]
        finally:
            await lm.aclose()

    before = lm.transport_name
    assert asyncio.run(together())[-1] == "aiohttp"
    assert before == "httpx"
    assert lm.transport_name == "httpx"  # aclose starts over
    assert len(lm_server.requests) == 4


def test_a_forced_transport_wins(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSPX_HTTP_TRANSPORT", "aiohttp")
    assert make_lm(lm_server).transport_name == "aiohttp"
    monkeypatch.setenv("DSPX_HTTP_TRANSPORT", "httpx")
    assert make_lm(lm_server).transport_name == "httpx"


def test_a_cookie_set_before_calls_overlap_is_sent_after(lm_server: LMServer) -> None:
    lm = make_lm(lm_server)
    lm_server.push(Reply(json={"choices": [{"message": {"content": "hi"}}]}, headers={"Set-Cookie": "route=b7"}))

    async def one_then_two() -> None:
        try:
            await lm.complete(HELLO)
            await asyncio.gather(lm.complete(HELLO), lm.complete(HELLO))
        finally:
            await lm.aclose()

    asyncio.run(one_then_two())
    assert [request.headers.get("cookie") for request in lm_server.requests] == [None, "route=b7", "route=b7"]


def test_an_http_endpoint_loads_no_certificates(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Any] = []
    for method in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
        original = getattr(ssl.SSLContext, method)

        def counted(self: ssl.SSLContext, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            loads.append(args)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(ssl.SSLContext, method, counted)
    lm = make_lm(lm_server)

    async def once() -> None:
        try:
            await lm.complete(HELLO)
        finally:
            await lm.aclose()

    asyncio.run(once())
    assert loads == []
    assert len(lm_server.requests) == 1


def test_one_call_imports_no_aiohttp(lm_server: LMServer) -> None:
    # A fresh interpreter: this one may have imported aiohttp for other tests.
    script = textwrap.dedent(f"""\
        import asyncio, sys
        from dspx_cli.lm import LMConfig, LMRequest, create_lm
        lm = create_lm(LMConfig(model="openai/gpt-test", api_base={lm_server.api_base!r}))
        async def once():
            try:
                return await lm.complete(LMRequest(messages=({{"role": "user", "content": "hi"}},)))
            finally:
                await lm.aclose()
        asyncio.run(once())
        print(sorted(name for name in ("aiohttp", "httpx_aiohttp") if name in sys.modules))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
