"""Run the dspx CLI as users do: a fresh process, reading stdout, stderr and the exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dspx(*args: str, input: str | None = None, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`env` adds variables; a DSPX_LM in the developer's shell never leaks into a test."""
    full_env = {k: v for k, v in os.environ.items() if k != "DSPX_LM"}
    full_env.update({"NO_COLOR": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "dspx_cli", *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=600,
    )
