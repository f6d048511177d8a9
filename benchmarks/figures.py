"""One way for every benchmark to print a figure beside its target, its same-run baseline and a verdict.

A verdict is "met" only for a positive figure at or under its target: a zero or negative figure
means the benchmark measured nothing (cache hits, a subtraction across different transports), so
it says INVALID rather than pass.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None  # at most this; None: shown for context only
    baseline: str = ""  # what the same run measured to compare against

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value <= 0:
            return "INVALID (not positive)"
        return "met" if self.value <= self.target else "MISSED"

    def line(self, width: int = 44) -> str:
        target = f"<= {self.target:g} {self.unit}" if self.target is not None else ""
        return f"{self.name:{width}} {self.value:9.3f} {self.unit:3} {target:>13}  {self.verdict:8} {self.baseline}"


def print_table(figures: Sequence[Figure], width: int = 44) -> None:
    print(f"{'figure':{width}} {'value':>13} {'target':>13}  {'verdict':8} same-run baseline")
    for figure in figures:
        print(figure.line(width))


def spread(times: Sequence[float]) -> str:
    """Median, min and max of repeated timings: how noisy the run was."""
    return f"median {statistics.median(times):.2f} s, min {min(times):.2f}, max {max(times):.2f}, n={len(times)}"
