"""The CLI's trial table (cli/trial_table.py): plain lines off a terminal, a live rich table on one."""

from __future__ import annotations

import re
import sys

import pytest

from dspx_cli.cli.trial_table import TrialTable, trial_line
from dspx_cli.lm.usage import UsageMeter

BASELINE = {
    "number": 0,
    "kind": "baseline",
    "added": True,
    "params": {"route.predict": {"instruction": 0, "demos": 0}, "prioritize": {"instruction": 0, "demos": 0}},
    "score": 71.43,
    "best_score": 71.43,
    "trial": 0,
    "of": 7,
}
MINIBATCH = {
    "number": 1,
    "kind": "minibatch",
    "added": False,
    "minibatch": [3, 1, 4, 0, 5, 9],
    "params": {"route.predict": {"instruction": 3, "demos": 3}, "prioritize": {"instruction": 0, "demos": 0}},
    "score": 66.67,
    "best_score": 71.43,
    "trial": 1,
    "of": 7,
}
FULL = {**MINIBATCH, "number": 4, "kind": "full", "added": True, "score": 100.0, "best_score": 100.0, "trial": 3}
ZERO_SHOT = {**MINIBATCH, "kind": "full", "params": {"route": {"instruction": 2, "demos": None}}, "minibatch": None}


def test_plain_lines_name_the_trial_the_choices_and_the_scores() -> None:
    assert trial_line(BASELINE) == ("trial base #0 · route.predict: i0 d0, prioritize: i0 d0 · full 71.43 · best 71.43")
    assert trial_line(MINIBATCH) == (
        "trial 1/7 #1 · route.predict: i3 d3, prioritize: i0 d0 · minibatch of 6 66.67 · best 71.43"
    )
    assert trial_line(FULL).startswith("trial full #4 · ") and trial_line(FULL).endswith("full 100.00 · best 100.00")
    assert trial_line(ZERO_SHOT) == "trial 1/7 #1 · route: i2 · full 66.67 · best 71.43"


def test_off_a_terminal_each_trial_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    table = TrialTable(terminal=False)
    with table.phase(UsageMeter(), "compile (mipro_v2)"):
        for record in (BASELINE, MINIBATCH, FULL):
            table(record)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial ")]
    assert lines == [trial_line(r) for r in (BASELINE, MINIBATCH, FULL)]


def render_on_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    table = TrialTable(terminal=True)
    with table.phase(UsageMeter(), "compile (mipro_v2)"):
        for record in (BASELINE, MINIBATCH, FULL):
            table(record)
        sys.stderr.write("warning: a notice while the table is up\n")
    return capsys.readouterr().err


def test_on_a_terminal_one_live_display_holds_the_figures_and_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    err = render_on_terminal(monkeypatch, capsys)
    assert "compile (mipro_v2): 0 calls" in err
    rows = [line for line in err.splitlines() if re.search(r"│\s+(base|1/7|full)\s+│", line)]
    assert len(rows) == 3
    assert re.search(r"1/7\s+│\s+1\s+│\s+i3 d3\s+│\s+i0 d0\s+│\s+minibatch of 6\s+│\s+66\.67\s+│\s+71\.43", err)
    # A notice written meanwhile is printed whole, above the table (not cut through by it).
    assert "warning: a notice while the table is up\n" in err


def test_no_color_keeps_colour_codes_out(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    colours = re.compile(r"\x1b\[(?:3|4|9|10)\d(?:;\d+)*m")  # foreground/background colour SGR codes
    plain = render_on_terminal(monkeypatch, capsys, FORCE_COLOR="1", NO_COLOR="1", TERM="xterm-256color")
    assert "\x1b[" in plain  # still a terminal display (bold, cursor moves) ...
    assert not colours.search(plain)  # ... without colour
