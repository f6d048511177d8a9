"""The host side of the sandbox protocol against a hostile interpreter process.

The child here is a small Python script standing in for a compromised runner (the real runner
cannot be made to misbehave from sandboxed code: Python there has no handle on stdout). Whatever
it sends, the host returns an Execution, never raises or hangs, reads a bounded amount, and the
next execute starts a fresh process."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from typing import Any

import pytest

from dspx_cli.errors import SandboxUnavailableError
from dspx_cli.sandbox import Execution, SandboxLimits
from dspx_cli.sandbox.process import Interpreter

HOSTILE = r"""
import json, sys, time
mode = sys.argv[1]
out = sys.stdout
def send(text):
    out.write(text + "\n"); out.flush()
if mode == "no-ready":
    send("hello"); sys.exit(0)
send(json.dumps({"jsonrpc": "2.0", "method": "ready"}))
for line in sys.stdin:
    request = json.loads(line)
    rid = request.get("id")
    if mode == "garbage":
        send("{not json")
    elif mode == "not-object":
        send("[1, 2, 3]")
    elif mode == "wrong-id":
        send(json.dumps({"jsonrpc": "2.0", "id": 10**9, "result": {"output": "forged"}}))
    elif mode == "unknown-method":
        send(json.dumps({"jsonrpc": "2.0", "id": "x", "method": "delete_everything", "params": {}}))
    elif mode == "bad-result":
        send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": "just a string"}))
    elif mode == "odd-error":
        send(json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": "?", "message": 5, "data": [1]}}))
    elif mode == "huge-line":
        chunk = "x" * (1 << 20)
        for _ in range(64):  # 64 MB with no newline
            out.write(chunk)
        out.flush()
        time.sleep(30)
    elif mode == "huge-tool-args":
        send(json.dumps({"jsonrpc": "2.0", "id": "t1", "method": "tool_call",
                         "params": {"name": "echo", "kwargs": {"text": "y" * (8 << 20)}}}))
        time.sleep(30)
    elif mode == "unknown-tool":
        send(json.dumps({"jsonrpc": "2.0", "id": "t1", "method": "tool_call",
                         "params": {"name": "nope", "kwargs": {}}}))
        reply = json.loads(sys.stdin.readline())
        send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"output": reply, "stdout": ""}}))
    elif mode == "bad-tool-params":
        send(json.dumps({"jsonrpc": "2.0", "id": "t1", "method": "tool_call", "params": ["echo"]}))
        reply = json.loads(sys.stdin.readline())
        send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"output": reply, "stdout": ""}}))
    elif mode == "exit":
        sys.exit(7)
    elif mode == "silent":
        time.sleep(30)
"""


class Echo:
    name = "echo"
    args: dict[str, Any] = {"text": {"type": "string"}}  # noqa: RUF012 - the SandboxTool shape

    async def acall(self, **kwargs: Any) -> Any:
        return kwargs


def run(mode: str, limits: SandboxLimits | None = None) -> list[Execution]:
    """Two executes on a hostile child: the second runs on a restarted one."""
    interpreter = Interpreter([sys.executable, "-c", HOSTILE, mode], {}, limits or SandboxLimits(timeout=5))

    async def go() -> list[Execution]:
        try:
            results = []
            for _ in range(2):
                async with interpreter.lock:
                    results.append(await interpreter.execute("s", "1", {}, {"echo": Echo()}))
            return results
        finally:
            await interpreter.kill()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("garbage", "crash"),
        ("not-object", "crash"),
        ("wrong-id", "crash"),
        ("unknown-method", "crash"),
        ("bad-result", "crash"),
        ("exit", "crash"),
    ],
)
def test_misbehaving_process_is_killed_and_restarted(mode: str, kind: str) -> None:
    first, second = run(mode)
    assert first.error_kind == kind and first.error is not None and first.error.startswith("RuntimeError:")
    assert first.output is None  # a forged result is never taken
    assert second.error_kind == kind  # the same script again: a fresh process answered


def test_malformed_error_payload_is_an_execution_error() -> None:
    first, _ = run("odd-error")
    assert (first.error_kind, first.error) == ("execution", "Error: ")


def test_lines_past_the_cap_are_not_buffered() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limits = SandboxLimits(timeout=20, output_bytes=1000)  # lines are capped at ~1 MB
    for mode in ("huge-line", "huge-tool-args"):
        first, second = run(mode, limits)
        assert first.error_kind == "output" and second.error_kind == "output", mode
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 40


def test_unknown_tools_and_bad_tool_calls_get_error_replies() -> None:
    first, _ = run("unknown-tool")
    assert first.output["error"]["data"]["type"] == "NameError"
    assert first.output["id"] == "t1"
    bad, _ = run("bad-tool-params")
    assert bad.output["error"]["data"]["type"] == "NameError"


def test_a_silent_process_times_out() -> None:
    first, second = run("silent", SandboxLimits(timeout=0.5))
    assert first.error_kind == second.error_kind == "timeout"


def test_a_process_that_never_gets_ready_is_unavailable() -> None:
    with pytest.raises(SandboxUnavailableError, match="did not start"):
        run("no-ready")


def test_tool_results_that_are_not_json_go_back_as_text() -> None:
    class Odd(Echo):
        async def acall(self, **kwargs: Any) -> Any:
            return {1, 2}

    interpreter = Interpreter([sys.executable, "-c", HOSTILE, "unknown-tool"], {}, SandboxLimits(timeout=5))
    reply = asyncio.run(interpreter._call_tool({"id": "t", "params": {"name": "echo", "kwargs": {}}}, {"echo": Odd()}))
    assert reply == {"jsonrpc": "2.0", "id": "t", "result": "{1, 2}"}
    json.dumps(reply)
