"""The training progress display off a terminal: a line for the first step, then at most one per
interval, and always the last, with the trainer's rate and time left."""

from __future__ import annotations

import io
import sys

import pytest

from dspx_cli.cli.train_progress import TrainingProgress


def test_plain_lines_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setenv("DSPX_PROGRESS_INTERVAL", "3600")
    with TrainingProgress("train") as progress:
        for step in range(11, 21):  # resumed at step 10 of 20
            progress.step(step, 20, 2.0 - step / 20, tokens_per_second=812.4, eta_seconds=(20 - step) * 30.0)
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("train: step 11/20 · loss 1.4500 · 812 tok/s · ")
    assert lines[0].endswith("s elapsed, ~4 min left")
    assert lines[1].startswith("train: step 20/20 · loss 1.0000 · ")
    assert "tok/s" in lines[1] and "left" not in lines[1]
    assert "\x1b" not in stderr.getvalue()
