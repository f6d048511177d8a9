"""Shared fixtures. `lm_server` is a real OpenAI-compatible server on loopback (see lm_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lm_server import LMServer


@pytest.fixture
def lm_server() -> Iterator[LMServer]:
    with LMServer() as server:
        yield server


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every dspx process it starts) gets its own empty cache and history."""
    directory = tmp_path_factory.mktemp("dspx-cache")
    monkeypatch.setenv("DSPX_CACHE_DIR", str(directory))
    return directory
