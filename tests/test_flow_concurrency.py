"""Independent steps of a flow overlap in time; dependent steps wait for what they read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.lm_server import LMServer

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.6


def reply(body: dict) -> str:
    system = body["messages"][0]["content"]
    if "[[ ## headline ## ]]" in system:
        return "[[ ## headline ## ]]\nSongs shine, story sags\n\n[[ ## completed ## ]]"
    if "[[ ## aspect ## ]]" in system:
        return "[[ ## aspect ## ]]\nmusic\n\n[[ ## completed ## ]]"
    return "[[ ## sentiment ## ]]\npositive\n\n[[ ## completed ## ]]"


def test_two_branches_overlap_then_join(lm_server: LMServer) -> None:
    lm_server.responder = reply
    lm_server.default_delay = LATENCY
    env = {**os.environ, "NO_COLOR": "1", "DSPX_LM": f"served@{lm_server.api_base}"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dspx_cli", "run", "programs/triage.yaml", "-i", "review=Nice songs, weak plot."],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sentiment: positive\naspect: music\nheadline: Songs shine, story sags\n"
    first, second, third = sorted(lm_server.requests, key=lambda r: r.at)
    assert "[[ ## headline ## ]]" in third.body["messages"][0]["content"]
    assert second.at - first.at < LATENCY / 2  # the branches were in flight together
    assert third.at - second.at >= LATENCY * 0.9  # the join waited for both answers
    assert lm_server.max_in_flight == 2
    assert time.monotonic() - started < 60
