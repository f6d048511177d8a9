"""What ProgramOfThought and CodeAct share: the code taken out of the LM's reply, and the output or
error text a sandboxed run of it feeds back to the LM, both by DSPy's rules.

The sandbox is reached through the small protocol below (the `dspx_cli.sandbox` layer implements
it), so building these modules for `dspx inspect` or `dspx validate` never imports the sandbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from dspx_cli.errors import DspxError

__all__ = [
    "CodeRunError",
    "CodeSandbox",
    "CodeSession",
    "parse_code",
    "require",
    "run_code",
]

_FENCED = re.compile(r"```python[ \n](.*?)[ \n]```?", re.DOTALL)
_ASSIGNED = re.compile(r"^(\w+)\s*=")


class CodeRunError(DspxError):
    """A code module gave up: every attempt's code failed (the evaluator counts the example as failed)."""


class _Execution(Protocol):
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> str | None: ...


class CodeSession(Protocol):
    async def execute(self, code: str, variables: Mapping[str, Any] | None = None) -> _Execution: ...


class CodeSandbox(Protocol):
    def session(self, tools: Mapping[str, Any] | None = None) -> AbstractAsyncContextManager[CodeSession]: ...


def parse_code(generated: Any) -> tuple[str, str | None]:
    """`(code, None)`, or `(text, error)` when the reply holds no usable code (DSPy's `_parse_code`).

    The reply is cut at a `---` line or two blank lines; the first ```python block is the code (the
    whole text if there is none). A last line `name = ...` gets `name` appended, so its value is the
    run's output.
    """
    text = (generated or "").split("---", 1)[0].split("\n\n\n", 1)[0]
    fenced = _FENCED.search(text)
    code = fenced.group(1) if fenced else text
    if not code:
        return text, "Error: Empty code after parsing."
    if "\n" not in code and code.count("=") > 1:
        return text, "Error: Code format is not correct."
    assigned = _ASSIGNED.match(code.split("\n")[-1].strip())
    if assigned:
        code += "\n" + assigned.group(1)
    return code, None


async def run_code(session: CodeSession, code: str) -> tuple[str | None, str | None]:
    """`(output, None)` or `(None, error)`: the output as JSON text, as DSPy's `_execute_code` gives it.

    After `SUBMIT(value)` the sandbox's output is DSPy's final output, `{"output": value}`;
    otherwise the last expression's value, or the printed text when there is none.
    """
    if not code:
        return None, "Error: Empty code before execution."
    execution = await session.execute(code)
    if execution.error is not None:
        return None, execution.error
    return json.dumps(execution.output), None


def require(sandbox: CodeSandbox | None) -> CodeSandbox:
    if sandbox is None:
        raise DspxError("this program was built without a run context; it cannot run code")
    return sandbox
