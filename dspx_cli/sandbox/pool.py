"""The sandbox: a small pool of interpreter processes shared by sessions.

A session is one run's interpreter state (DSPy's PythonInterpreter lifetime): its own globals
dict, living in one process of the pool. Sessions are spread over the processes (fewest bound
sessions first, so processes start lazily, one per concurrent session up to pool_size) and take
turns on a process only while an execute runs, so `evaluate -j 16` waiting on its LM holds no
interpreter. Fresh globals per session rather than a fresh process: a new session with one
execute costs 1.3 ms (1.0 ms for an execute alone), a new process ~3.4 s of Pyodide loading
(benchmarks/sandbox.py).

What sessions on one process do share is the interpreter itself. The runner puts back builtins,
the standard streams and the recursion limit after every execute, and turns sys.exit() into an
error; a module attribute the code sets (math.pi = 3) stays for the other sessions there. They are
one program's runs; the boundary that matters, sandbox against host, is the process's.
"""

from __future__ import annotations

import asyncio
import itertools
import keyword
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from dspx_cli.errors import SandboxUnavailableError
from dspx_cli.sandbox.deno import default_deno_dir, deno_env, ensure_pyodide, find_deno, interpreter_command
from dspx_cli.sandbox.process import Interpreter, max_line
from dspx_cli.sandbox.types import Execution, SandboxLimits, SandboxTool

LOST_STATE = (
    " (the interpreter was restarted after a timeout, a limit or a crash, so the variables of this"
    " run's earlier code are gone: define them again)"
)


class SandboxSession:
    """One run's interpreter state; variables persist from one execute to the next."""

    def __init__(self, slot: Interpreter, name: str, tools: Mapping[str, SandboxTool], outputs: Sequence[str]) -> None:
        self._slot = slot
        self._name = name
        self._tools = dict(tools)
        self._outputs = list(outputs)
        self._generation = 0
        self._lost_state = False  # a restart took this session's variables; NameErrors say so

    async def execute(self, code: str, variables: Mapping[str, Any] | None = None) -> Execution:
        """Run code; its errors, timeouts and overruns come back in the Execution, never raised.

        Raises SandboxUnavailableError when Deno or Pyodide is missing or the process cannot start,
        and ValueError for a variable name that is not an identifier or a value not JSON-able.
        """
        values = {name: _jsonable(value) for name, value in (variables or {}).items()}
        for name in values:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"invalid variable name: {name!r}")
        slot = self._slot
        async with slot.lock:
            # A timeout, overrun or crash (this run's or another's on the same process) restarts
            # the process, and this session's variables go with it.
            if self._generation != 0 and (not slot.alive or slot.generation != self._generation):
                self._lost_state = True
            execution = await slot.execute(self._name, code, values, self._tools, self._outputs)
            self._generation = slot.generation
        if self._lost_state and execution.error is not None and execution.error.startswith("NameError"):
            # Without this the LM reads a NameError for a name it defined and cannot tell why.
            return replace(execution, error=execution.error + LOST_STATE)
        return execution

    async def _close(self) -> None:
        await self._slot.close_session(self._name, self._generation)


class Sandbox:
    def __init__(self, limits: SandboxLimits = SandboxLimits(), *, deno_dir: Path | None = None) -> None:
        if limits.pool_size < 1 or limits.timeout <= 0 or limits.memory_mb < 64 or limits.output_bytes < 1:
            raise ValueError(f"invalid sandbox limits: {limits}")
        self.limits = limits
        self.deno_dir = deno_dir or default_deno_dir()
        self._slots: list[Interpreter] = []
        self._setup = asyncio.Lock()
        self._names = itertools.count(1)
        self._closed = False

    async def _pool(self) -> list[Interpreter]:
        async with self._setup:
            if self._closed:
                raise SandboxUnavailableError("the code sandbox was closed (its run is over)")
            if not self._slots:
                deno = find_deno()
                pyodide = await ensure_pyodide(deno, self.deno_dir)
                limits = self.limits
                command = interpreter_command(
                    deno, pyodide, output_bytes=limits.output_bytes, max_line=max_line(limits)
                )
                env = deno_env(self.deno_dir)
                self._slots = [Interpreter(command, env, limits) for _ in range(limits.pool_size)]
            return self._slots

    def session(
        self, tools: Mapping[str, SandboxTool] | None = None, *, outputs: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[SandboxSession]:
        """One run's interpreter state. Its code can call each tool by name (on the host), and
        SUBMIT(...) ends it: with `outputs` (the signature's output fields) SUBMIT takes them by
        position or name, else one value (-> {"output": value}) or keyword arguments."""
        for name in [*(tools or {}), *outputs]:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"invalid tool or output name: {name!r}")
        return self._session(tools or {}, outputs)

    @asynccontextmanager
    async def _session(self, tools: Mapping[str, SandboxTool], outputs: Sequence[str]) -> AsyncIterator[SandboxSession]:
        slots = await self._pool()
        slot = min(slots, key=lambda s: s.sessions)
        slot.sessions += 1
        session = SandboxSession(slot, f"s{next(self._names)}", tools, outputs)
        try:
            yield session
        finally:
            slot.sessions -= 1
            await asyncio.shield(session._close())

    async def start(self) -> None:
        """Start every process of the pool now rather than at first use (benchmarks, warm-up)."""
        slots = await self._pool()

        async def warm(slot: Interpreter) -> None:
            async with slot.lock:
                if not slot.alive:
                    await slot.start()

        await asyncio.gather(*(warm(slot) for slot in slots))

    async def aclose(self) -> None:
        async with self._setup:
            self._closed = True
            slots, self._slots = self._slots, []
        await asyncio.gather(*(slot.close() for slot in slots))


def _jsonable(value: Any) -> Any:
    """A variable as JSON values, the way DSPy injects it: tuples and sets become lists, pydantic
    models their dump; anything else must already be JSON."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a variable cannot be {value} (not JSON)")
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _jsonable(dump(mode="json"))
    raise ValueError(f"a variable of type {type(value).__name__} cannot be sent to the sandbox (not JSON)")
