"""The `python` tool: an agent writes Python, the sandbox runs it, and what it printed comes back.

    tools:
      python: {type: sandbox, timeout: 10}     # a tool named `python` needs no type

The code runs in the isolated interpreter of dspx_cli/sandbox (Pyodide in Deno: no files, no
network, no environment, no processes), never on the host. Each agent run (one `ReAct.acall`) has
a session of its own, opened at the tool's first call and closed when the run ends, so variables
defined in one step are there in the next step of the same run, and never in another run, even
one running concurrently with it.

A failing piece of code is not a tool failure: the error text (and whatever was printed before it)
is the observation, so the agent can read it and write a fix, as DSPy's RLM shows its REPL errors.
DSPy 3.4.1 ships no such tool; the name and description are written in the style of its tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from dspx_cli.modules.tool import Tool

if TYPE_CHECKING:
    from dspx_cli.sandbox import Execution, Sandbox, SandboxSession

__all__ = ["DESCRIPTION", "SandboxPythonTool", "observation"]

# One line: ReAct's prompt shows a description raw, line breaks turned into two spaces.
DESCRIPTION = (
    "Run Python code in a sandboxed interpreter and return what it prints, or the error it raises. "
    "Variables, functions and imports persist from one call to the next within this task. The standard "
    "library is available; files, network and subprocesses are not. Use print() to see values."
)
NO_OUTPUT = "(no output; print() what you want to see)"


class SandboxPythonTool(Tool):
    """The sandbox tool, as the LM sees it: `python(code: str)`.

    `open_sandbox` gives the run context's sandbox; it is called at a run's first call, so building
    the tool (for `dspx inspect`, or an agent that never writes code) starts no interpreter.
    None builds a tool that can be described but not run.
    """

    def __init__(
        self,
        open_sandbox: Callable[[], Sandbox] | None,
        *,
        name: str = "python",
        desc: str | None = None,
    ) -> None:
        super().__init__(_outside_a_run, name=name, desc=desc or DESCRIPTION)
        self._open_sandbox = open_sandbox

    @asynccontextmanager
    async def per_run(self) -> AsyncIterator[Tool]:
        run = _Run(self._open_sandbox)
        try:
            yield Tool(run.execute, name=self.name, desc=self.desc, args=self.args, arg_types=self.arg_types)
        finally:
            await run.close()


async def _outside_a_run(code: str) -> str:
    # The signature is the tool's schema ({"code": {"type": "string"}}); calls go to a run's copy.
    raise RuntimeError("the python tool runs code only inside an agent's run")


class _Run:
    """One run's session, opened at its first call."""

    def __init__(self, open_sandbox: Callable[[], Sandbox] | None) -> None:
        self._open_sandbox = open_sandbox
        self._stack = AsyncExitStack()
        self._session: SandboxSession | None = None

    async def execute(self, code: str) -> str:
        session = self._session
        if session is None:
            if self._open_sandbox is None:
                raise RuntimeError("this program was built without a run context; it cannot run code")
            session = self._session = await self._stack.enter_async_context(self._open_sandbox().session())
        return observation(await session.execute(code))

    async def close(self) -> None:
        await self._stack.aclose()


def observation(result: Execution) -> str:
    """What the agent reads: the printed text, then the code's value or its error."""
    parts = [result.stdout.rstrip("\n")] if result.stdout.strip() else []
    if result.error is not None:
        parts.append(result.error.rstrip("\n"))
    elif result.output is not None and not _printed(result.output, result.stdout):
        parts.append(_shown(result.output))
    return "\n".join(parts) if parts else NO_OUTPUT


def _printed(output: Any, stdout: str) -> bool:
    # The value a sandbox reports may be the printed text itself.
    return isinstance(output, str) and output.strip() == stdout.strip()


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)
