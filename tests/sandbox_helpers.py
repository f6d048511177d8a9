"""A real sandbox (Deno + Pyodide) for tests, on one event loop per module so Pyodide loads few times."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from dspx_cli.sandbox import Execution, Sandbox, SandboxLimits
from tests.conftest import SANDBOX_DENO_DIR

T = TypeVar("T")


def deno_installed() -> bool:
    try:
        from deno import find_deno_bin  # type: ignore[import-untyped,import-not-found,unused-ignore]

        find_deno_bin()
        return True
    except (ImportError, FileNotFoundError):
        return shutil.which("deno") is not None


needs_deno = pytest.mark.skipif(not deno_installed(), reason="Deno is not installed (pip install 'dspx_cli[sandbox]')")


@dataclass
class Box:
    """A sandbox and the loop it lives on: tests call box.run(coroutine)."""

    runner: asyncio.Runner
    sandbox: Sandbox

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.runner.run(coroutine)  # type: ignore[arg-type]

    def execute(self, code: str, variables: dict[str, Any] | None = None, tools: dict | None = None) -> Execution:
        async def go() -> Execution:
            async with self.sandbox.session(tools) as session:
                return await session.execute(code, variables)

        return self.run(go())


def open_box(limits: SandboxLimits) -> Iterator[Box]:
    runner = asyncio.Runner()
    sandbox = Sandbox(limits, deno_dir=SANDBOX_DENO_DIR)
    try:
        yield Box(runner, sandbox)
    finally:
        runner.run(sandbox.aclose())
        runner.close()
