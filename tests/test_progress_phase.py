"""A progress line's rate and estimate belong to its own phase, though the meter counts the whole run.

compile runs `dev before`, the optimizer and `dev after` on one meter: a later phase served from
the cache once printed the earlier phases' tokens over its own fraction of a second (millions of
tok/s)."""

from __future__ import annotations

from dspx_cli.cli.progress import Progress
from dspx_cli.lm.usage import UsageMeter


def test_a_later_phase_counts_only_its_own_tokens_and_calls() -> None:
    meter = UsageMeter()
    for _ in range(400):  # an earlier phase: 400 fresh calls of 50 tokens
        meter.record("m", 100, 50, cached=False)
    with Progress(meter, "dev after", total=4) as progress:
        for _ in range(2):  # this phase: two examples, each one cached call
            meter.record("m", 100, 50, cached=True)
            progress.update(1.0, False)
        progress.started -= 10.0  # as if ten seconds had passed in this phase
        line = progress.line()
    assert " 402 calls (2 cached) · 0.0 tok/s · 10 s elapsed, ~10 s left" in line, line


def test_fresh_tokens_of_the_phase_make_its_rate() -> None:
    meter = UsageMeter()
    meter.record("m", 100, 5000, cached=False)
    with Progress(meter, "evaluate", total=2) as progress:
        meter.record("m", 100, 40, cached=False)
        progress.update(0.0, False)
        progress.started -= 4.0
        line = progress.line()
    assert "· 10.0 tok/s ·" in line and "~4 s left" in line, line
