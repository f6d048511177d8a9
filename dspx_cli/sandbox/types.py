"""What the sandbox takes and gives back: its limits, the result of one execute, the tool shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

ErrorKind = Literal["syntax", "execution", "timeout", "memory", "output", "crash"]


@dataclass(frozen=True)
class SandboxLimits:
    timeout: float = 30.0  # seconds per execute, not counting time spent in host tools
    memory_mb: int = 1024  # per interpreter process (Pyodide's heap and Deno's own)
    output_bytes: int = 1_000_000  # stdout kept per execute; printing more stops the code
    pool_size: int = 4  # interpreter processes per Sandbox; sessions share them


@dataclass(frozen=True)
class Execution:
    output: Any  # SUBMIT's value when final; else the last expression's value, or stdout when None
    final: bool  # the code called SUBMIT(...)
    error: str | None  # the text DSPy feeds the LM; None on success
    error_kind: ErrorKind | None
    stdout: str  # captured print output (capped)


class SandboxTool(Protocol):
    """A host function sandbox code may call by name (dspx_cli.modules.tool.Tool fits)."""

    name: str
    args: dict[str, Any]  # JSON schema of each parameter, by name, in call order

    async def acall(self, **kwargs: Any) -> Any: ...
