"""One interpreter process: Deno running runner.js, driven over JSON-RPC lines.

The process is treated as hostile: every line it sends is bounded (the stream reader's limit),
parsed defensively, and anything unexpected (bad JSON, a wrong id, an unknown method, a line too
long) kills it and becomes an Execution error; the next execute starts a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dspx_cli.errors import SandboxUnavailableError
from dspx_cli.sandbox.types import ErrorKind, Execution, SandboxLimits, SandboxTool

START_TIMEOUT = 120.0  # loading Pyodide takes ~1-2 s; a busy CI machine may take much longer
_STDERR_KEPT = 2000
_MEMORY_POLL = 0.05  # seconds between RSS checks while code runs
# memory_mb is what the code may allocate; the process's own baseline comes on top. Measured on a
# fresh interpreter (Deno 2.9, Pyodide 0.29): ~150 MB resident, ~690 MB of data mappings (V8's
# heap reservations and Pyodide's initial wasm memory count there before they are touched).
_DATA_BASE_MB = 768
_RSS_BASE_MB = 256


_CRASH = "RuntimeError: the sandbox's interpreter process died; it was restarted, so its variables are gone"


class _Killed(Exception):
    def __init__(self, kind: ErrorKind, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error


def max_line(limits: SandboxLimits) -> int:
    """The longest line the runner may send: stdout (up to 4 bytes a character, JSON-escaped) and
    the result, with room for the envelope."""
    return max(8 * limits.output_bytes, 1 << 20) + (1 << 16)


def confined_command(command: list[str], memory_mb: int) -> list[str]:
    """The command line that starts `command` under the sandbox's rlimits, killed with dspx.

    Not preexec_fn, which runs Python in the forked copy of a threaded dspx: launch.py, a fresh
    Python, sets them on itself and execs the command (same process id), so they are in place
    before the interpreter runs any code.
    """
    if not sys.executable:
        raise SandboxUnavailableError("cannot start the code sandbox: no Python executable to launch it with")
    data = (memory_mb + _DATA_BASE_MB) * 1024 * 1024
    launcher = str(Path(__file__).with_name("launch.py"))
    return [sys.executable, "-I", "-S", launcher, str(os.getpid()), str(data), "--", *command]


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _error_text(kind: str, args: Any, message: str) -> str:
    # DSPy's wording: "Invalid Python syntax. message: ..." and "<Type>: <args list or message>".
    if kind == "SyntaxError":
        return f"Invalid Python syntax. message: {message}"
    shown = args if isinstance(args, list) and args else message
    return f"{kind}: {shown}"


class Interpreter:
    """A slot in the pool: at most one process at a time, started lazily, restarted after a kill."""

    def __init__(self, command: list[str], env: dict[str, str], limits: SandboxLimits) -> None:
        self.limits = limits
        self._command = command
        self._env = env
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr_tail = b""
        self.lock = asyncio.Lock()
        self.generation = 0  # bumped at each start: sessions see their state was lost
        self.sessions = 0  # sessions bound to this slot (the pool balances on it)
        self._next_id = 0
        self._closed = False

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The running process's id (tests read its /proc entry)."""
        return self._process.pid if self.alive and self._process is not None else None

    async def start(self) -> None:
        if self._closed:
            raise SandboxUnavailableError("the code sandbox was closed (its run is over)")
        try:
            self._process = await asyncio.create_subprocess_exec(
                *confined_command(self._command, self.limits.memory_mb),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                limit=max_line(self.limits) + (1 << 16),
                # Its own session: a signal to dspx's process group (Ctrl-C) does not reach it,
                # so dspx decides when it dies.
                start_new_session=True,
            )
        except OSError as e:
            # Only the launcher (this Python, launch.py) is started here; it reports Deno's own failure.
            raise SandboxUnavailableError(f"cannot start the code sandbox's launcher ({sys.executable}): {e}") from e
        self.generation += 1
        self._stderr_tail = b""
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._process))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await self._process.stdout.readline()  # type: ignore[union-attr]
            ready = json.loads(line) if line else None
        except (TimeoutError, ValueError):
            ready = None
        except BaseException:  # cancelled while Pyodide loads: no half-started process stays
            await asyncio.shield(self.kill())
            raise
        if not isinstance(ready, dict) or ready.get("method") != "ready":
            await self.kill()
            detail = self._stderr_tail.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise SandboxUnavailableError(f"the code sandbox did not start: {detail[0]}")

    async def _drain_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            self._stderr_tail = (self._stderr_tail + chunk)[-_STDERR_KEPT:]

    async def close(self) -> None:
        """Kill the process for good: a session still running code gets no new one."""
        self._closed = True
        await self.kill()

    async def kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(Exception):
                await self._stderr_task
            self._stderr_task = None

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        # ASCII escapes: a lone surrogate in the code or a variable still encodes.
        self._process.stdin.write(json.dumps(message).encode() + b"\n")
        await self._process.stdin.drain()

    async def close_session(self, session: str, generation: int) -> None:
        async with self.lock:
            if self.alive and generation == self.generation:
                with contextlib.suppress(OSError):
                    await self._send({"jsonrpc": "2.0", "method": "close_session", "params": {"session": session}})

    async def execute(
        self,
        session: str,
        code: str,
        variables: Mapping[str, Any],
        tools: Mapping[str, SandboxTool],
        outputs: Sequence[str] = (),
    ) -> Execution:
        """Run code in the session's namespace; the caller holds self.lock."""
        if not self.alive:
            await self.start()
        self._next_id += 1
        request_id = self._next_id
        params = {
            "session": session,
            "code": code,
            "variables": dict(variables),
            "tools": [{"name": name, "params": list(tool.args)} for name, tool in tools.items()],
            "outputs": list(outputs),
        }
        done = False
        try:
            await self._send({"jsonrpc": "2.0", "id": request_id, "method": "execute", "params": params})
            result = await self._exchange(request_id, tools)
            if result.error_kind == "memory":  # wasm memory never shrinks: only a new process frees it
                await self.kill()
            done = True
            return result
        except _Killed as k:
            await self.kill()
            done = True
            return Execution(output=None, final=False, error=k.error, error_kind=k.kind, stdout="")
        except (OSError, ConnectionError):
            await self.kill()
            done = True
            return self._crashed()
        finally:
            if not done:  # cancelled mid-execute: the interpreter's state is unknown
                await asyncio.shield(self.kill())

    def _crashed(self) -> Execution:
        return Execution(output=None, final=False, error=_CRASH, error_kind="crash", stdout="")

    async def _exchange(self, request_id: int, tools: Mapping[str, SandboxTool]) -> Execution:
        assert self._process is not None and self._process.stdout is not None
        limits = self.limits
        deadline = time.monotonic() + limits.timeout
        while True:
            line = await self._read_line(deadline)
            try:
                message = json.loads(line)
            except ValueError:
                raise _Killed("crash", "RuntimeError: the sandbox sent a malformed message and was restarted") from None
            if not isinstance(message, dict):
                raise _Killed("crash", "RuntimeError: the sandbox sent a malformed message and was restarted")
            if message.get("method") == "tool_call" and "id" in message:
                started = time.monotonic()
                reply = await self._call_tool(message, tools)
                deadline += time.monotonic() - started  # host tools' time is not the code's
                await self._send(reply)
                continue
            if message.get("id") != request_id:
                raise _Killed("crash", "RuntimeError: the sandbox answered out of turn and was restarted")
            return self._execution(message)

    async def _read_line(self, deadline: float) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        pid = self._process.pid
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Killed(
                    "timeout",
                    f"TimeoutError: the code ran longer than {_seconds(self.limits.timeout)} and was stopped; "
                    "the interpreter was restarted, so its variables are gone",
                )
            try:
                line = await asyncio.wait_for(stdout.readline(), timeout=min(remaining, _MEMORY_POLL * 4))
            except TimeoutError:
                if _rss_mb(pid) > self.limits.memory_mb + _RSS_BASE_MB:
                    raise _Killed("memory", self._memory_error()) from None
                continue
            except ValueError:  # a line past the reader's limit: the runner's own cap was bypassed
                raise _Killed(
                    "output",
                    f"OutputLimitError: the code's output exceeded {self.limits.output_bytes} bytes; "
                    "the interpreter was restarted",
                ) from None
            if not line:
                await self._wait_exit()
                if self._oom():
                    raise _Killed("memory", self._memory_error())
                raise _Killed("crash", _CRASH)
            return line

    async def _wait_exit(self) -> None:
        assert self._process is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), timeout=5)

    def _oom(self) -> bool:
        tail = self._stderr_tail.decode(errors="replace").lower()
        return "out of memory" in tail or "allocation failed" in tail or "oom" in tail

    def _memory_error(self) -> str:
        return (
            f"MemoryError: the code used more than {self.limits.memory_mb} MB and was stopped; "
            "the interpreter was restarted, so its variables are gone"
        )

    async def _call_tool(self, message: dict[str, Any], tools: Mapping[str, SandboxTool]) -> dict[str, Any]:
        reply_id = message["id"]
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        kwargs = params.get("kwargs") if isinstance(params, dict) else None
        tool = tools.get(name) if isinstance(name, str) else None
        if tool is None or not isinstance(kwargs, dict):
            return _tool_error(reply_id, "NameError", f"no tool named {name!r}")
        try:
            value = await tool.acall(**kwargs)
        except Exception as e:  # noqa: BLE001 - the sandbox code sees the tool's failure as an exception
            return _tool_error(reply_id, type(e).__name__, str(e))
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            value = str(value)
        return {"jsonrpc": "2.0", "id": reply_id, "result": value}

    def _execution(self, message: dict[str, Any]) -> Execution:
        result, error = message.get("result"), message.get("error")
        if isinstance(result, dict):
            stdout = _text(result.get("stdout"))
            if "final" in result:
                return Execution(output=result["final"], final=True, error=None, error_kind=None, stdout=stdout)
            return Execution(output=result.get("output"), final=False, error=None, error_kind=None, stdout=stdout)
        if isinstance(error, dict):
            raw = error.get("data")
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            kind = _text(data.get("type")) or "Error"
            stdout = _text(data.get("stdout"))
            if kind == "OutputLimitError":
                text = f"OutputLimitError: the code's output exceeded {self.limits.output_bytes} bytes and was stopped"
                return Execution(output=None, final=False, error=text, error_kind="output", stdout=stdout)
            if kind == "MemoryError":
                return Execution(
                    output=None, final=False, error=self._memory_error(), error_kind="memory", stdout=stdout
                )
            text = _error_text(kind, data.get("args"), _text(error.get("message")))
            error_kind: ErrorKind = "syntax" if kind == "SyntaxError" else "execution"
            return Execution(output=None, final=False, error=text, error_kind=error_kind, stdout=stdout)
        raise _Killed("crash", "RuntimeError: the sandbox sent a malformed message and was restarted")


def _tool_error(reply_id: Any, kind: str, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": reply_id, "error": {"code": -32000, "message": message, "data": {"type": kind}}}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _seconds(value: float) -> str:
    return f"{value:g} s" if math.isfinite(value) else "its limit"
