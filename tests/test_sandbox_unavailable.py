"""What holds with or without Deno: a missing Deno is one line naming the extra to install, the
interpreter's command line grants nothing but reading Pyodide's files, and programs without code
never import the sandbox."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from dspx_cli.errors import EXIT_RUNTIME, SandboxUnavailableError
from dspx_cli.sandbox import Sandbox
from dspx_cli.sandbox.deno import PYODIDE_FILES, PYODIDE_VERSION, interpreter_command


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


def test_interpreter_command_grants_only_reading_pyodide_files(tmp_path: Path) -> None:
    folder = tmp_path / "npm" / "registry.npmjs.org" / "pyodide" / PYODIDE_VERSION
    command = interpreter_command("deno", folder, output_bytes=10, max_line=100)
    grants = [arg for arg in command if arg.startswith(("--allow", "-A"))]
    assert grants == ["--allow-read=" + ",".join(str(folder / name) for name in PYODIDE_FILES)]
    assert {"--cached-only", "--no-prompt", "--deny-import", "--no-config"} <= set(command)


def test_the_sandbox_is_not_imported_by_programs_without_code() -> None:
    code = "import sys, dspx_cli.program.context, dspx_cli.workflows; print('dspx_cli.sandbox' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
