"""The benchmarks' shared verdict: a figure that measured nothing never passes."""

from __future__ import annotations

from benchmarks.figures import Figure


def test_a_positive_figure_at_or_under_its_target_is_met() -> None:
    assert Figure("overhead", 0.25, "ms", 0.25).verdict == "met"
    assert Figure("overhead", 0.26, "ms", 0.25).verdict == "MISSED"


def test_a_zero_or_negative_figure_is_invalid_not_met() -> None:
    # What cache hits (0.00 s) and a subtraction across transports (-0.819 ms) used to print as "met".
    assert Figure("through dspx", 0.0, "s", 1.10).verdict == "INVALID (not positive)"
    assert Figure("overhead", -0.819, "ms", 0.25).verdict == "INVALID (not positive)"
    assert "met" not in Figure("overhead", -0.819, "ms", 0.25).line()


def test_a_figure_without_target_has_no_verdict() -> None:
    assert Figure("context", 1.0, "s").verdict == ""
