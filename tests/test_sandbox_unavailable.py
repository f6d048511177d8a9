"""Without Deno, using the sandbox is one line naming the extra to install (runs with or without Deno)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from dspx_cli.errors import EXIT_RUNTIME, SandboxUnavailableError
from dspx_cli.sandbox import Sandbox


def test_missing_deno_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setitem(sys.modules, "deno", None)  # the PyPI package absent: its import fails
    monkeypatch.setenv("PATH", "")  # and no deno on PATH

    async def go() -> None:
        async with Sandbox().session() as session:
            await session.execute("1")

    with pytest.raises(SandboxUnavailableError) as e:
        asyncio.run(go())
    assert str(e.value) == "the code sandbox needs Deno, which is not installed: pip install 'dspx_cli[sandbox]'"
    assert e.value.exit_code == EXIT_RUNTIME
