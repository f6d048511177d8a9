"""Shared fixtures. `lm_server` is a real OpenAI-compatible server on loopback (see lm_server.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lm_server import LMServer


@pytest.fixture
def lm_server() -> Iterator[LMServer]:
    with LMServer() as server:
        yield server


# The code sandbox's Pyodide (fetched once from the npm registry, ~13 MB) stays where the machine
# keeps it, not in each test's empty cache: $DENO_DIR, else the dspx cache dir as it was at start.
SANDBOX_DENO_DIR = Path(
    os.environ.get("DENO_DIR")
    or Path(
        os.environ.get("DSPX_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dspx"
    )
    / "deno"
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every dspx process it starts) gets its own empty cache and history."""
    directory = tmp_path_factory.mktemp("dspx-cache")
    monkeypatch.setenv("DSPX_CACHE_DIR", str(directory))
    monkeypatch.setenv("DENO_DIR", str(SANDBOX_DENO_DIR))
    return directory
