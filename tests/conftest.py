"""Shared fixtures. `lm_server` is a real OpenAI-compatible server on loopback (see lm_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lm_server import LMServer


@pytest.fixture
def lm_server() -> Iterator[LMServer]:
    with LMServer() as server:
        yield server
