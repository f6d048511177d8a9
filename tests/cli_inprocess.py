"""Run the dspx CLI inside the test process: same arguments, stdout, stderr and exit code as
`tests/cli_process.py`, without starting an interpreter per call.

What a process would keep to itself is set up and put back around each call: the environment
(DSPX_LM removed, NO_COLOR set, `env` added), the working directory, the standard streams, the
`dspx_cli` logger (the CLI points it at its stderr) and the user modules a metric or tool file
imported (each test's files are its own). Use cli_process.dspx where the process itself is under
test: exit paths (os._exit, SIGPIPE), signals, real pipes, imports at startup, memory bounds.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_USER_MODULES = ("dspx_user", "dspx_metric", "dspx_tool")


class _Stream(io.TextIOWrapper):
    """A text stream over bytes, like a pipe's: never a terminal, has a `buffer`, no file number."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="strict", write_through=True)

    def text(self) -> str:
        self.flush()
        raw = self.buffer.getvalue().decode("utf-8", errors="replace")  # type: ignore[attr-defined]
        return raw.replace("\r\n", "\n").replace("\r", "\n")  # what subprocess's text mode does


def dspx(*args: str, input: str | None = None, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`env` adds variables; a DSPX_LM in the developer's shell never leaks into a test."""
    from dspx_cli.cli.app import app

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    engine = logging.getLogger("dspx_cli")
    saved_logger = engine.handlers[:], engine.level, engine.propagate
    saved_modules = set(sys.modules)
    stdin, stdout, stderr = _Stream((input or "").encode("utf-8")), _Stream(), _Stream()
    os.environ.pop("DSPX_LM", None)
    os.environ.update({"NO_COLOR": "1", **env})
    os.chdir(cwd or ROOT)
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        try:
            app(args=list(args), prog_name="dspx")
            code: int = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                stderr.write(f"{exit_.code}\n")
                code = 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        engine.handlers[:], engine.level, engine.propagate = saved_logger[0], saved_logger[1], saved_logger[2]
        for name in set(sys.modules) - saved_modules:
            if name.startswith(_USER_MODULES):
                del sys.modules[name]
    return subprocess.CompletedProcess(["dspx", *args], code, stdout.text(), stderr.text())
