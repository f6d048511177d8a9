"""What tests of the code modules need from the real sandbox: a skip when Deno is missing, one
Deno cache (Pyodide is fetched from npm once, not once per test's empty dspx cache), and a
sandbox opened and closed around a test's event loop."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest


def _deno_installed() -> bool:
    try:
        from deno import find_deno_bin  # type: ignore[import-not-found,unused-ignore]

        return Path(str(find_deno_bin())).is_file()
    except (ImportError, FileNotFoundError):
        return shutil.which("deno") is not None


needs_deno = pytest.mark.skipif(not _deno_installed(), reason="the sandbox needs Deno (pip install deno)")

# The conftest gives every test an empty dspx cache, whose deno/ folder would fetch Pyodide anew.
SHARED_DENO_DIR = Path(os.environ.get("DENO_DIR") or Path.home() / ".cache" / "dspx-tests" / "deno")


@pytest.fixture
def shared_deno(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points DENO_DIR (read by the sandbox, in this process and in dspx processes) at the shared cache."""
    monkeypatch.setenv("DENO_DIR", str(SHARED_DENO_DIR))
    return SHARED_DENO_DIR


@asynccontextmanager
async def open_sandbox(**limits: Any) -> AsyncIterator[Any]:
    """A one-process sandbox on the shared Deno cache, closed at the end of the block."""
    from dspx_cli.sandbox import Sandbox, SandboxLimits

    sandbox = Sandbox(SandboxLimits(**{"pool_size": 1, **limits}), deno_dir=SHARED_DENO_DIR)
    try:
        yield sandbox
    finally:
        await sandbox.aclose()
