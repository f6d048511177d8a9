"""How many llama.cpp threads the local model should run: the cores nothing else is using now.

llama.cpp's worker threads busy-wait at every layer's barrier, so one worker that shares its core
with another process stalls all the others: on 2 shared cores a 300-token call that takes 0.3 s
alone took up to 60 s with 2 threads (10 s with 1). A fixed half of the cores avoids that but costs
~1.9x on an idle machine. So before each call the count is chosen from what the other processes
used since the previous choice, measured from the kernel's counters (Linux's /proc/stat, over the
cores this process may run on, minus this process's own CPU time). Elsewhere, or when the counters
cannot be read, it stays at half the cores.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

# Shorter windows say little (the kernel counts in 10 ms ticks): the previous choice stands.
MIN_WINDOW_SECONDS = 0.05
# A core counts as taken once others keep it this busy: a worker sharing a core with even a
# light load waits for it at every barrier, so the choice leans towards fewer threads.
TAKEN_FRACTION = 0.35
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal; not idle and iowait


def usable_cores() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return None


@dataclass(frozen=True)
class _Sample:
    wall: float
    busy: float  # CPU seconds spent busy on the usable cores, by anyone, since boot
    own: float  # CPU seconds this process has used


class CoreShare:
    """Chooses a thread count per call from the other processes' recent use of the usable cores."""

    def __init__(self, cores: set[int] | None = None, stat_path: str = "/proc/stat") -> None:
        self._cores = cores if cores is not None else usable_cores()
        self._count = len(self._cores) if self._cores else (os.cpu_count() or 1)
        self._stat_path = stat_path
        self._tick = _clock_tick()
        self._last = self._sample()
        self._choice = max(1, self._count // 2)

    @property
    def cores(self) -> int:
        return self._count

    def threads(self) -> int:
        """The thread count for the next call; call it right before generating."""
        now = self._sample()
        if now is None or self._last is None:
            return self._choice
        window = now.wall - self._last.wall
        if window < MIN_WINDOW_SECONDS:
            return self._choice
        others = max(0.0, (now.busy - self._last.busy) - (now.own - self._last.own)) / window
        self._last = now
        self._choice = free_cores(self._count, others)
        return self._choice

    def _sample(self) -> _Sample | None:
        if self._cores is None or self._tick is None:
            return None
        try:
            with open(self._stat_path, encoding="ascii") as stat:
                lines = stat.read().splitlines()
        except OSError:
            return None
        ticks = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit():
                continue
            if int(name[3:]) in self._cores:
                columns = rest.split()
                ticks += sum(int(columns[index]) for index in _BUSY_COLUMNS if index < len(columns))
        times = os.times()
        return _Sample(time.monotonic(), ticks / self._tick, times.user + times.system)


def free_cores(cores: int, others: float) -> int:
    """`cores` minus those the other processes kept busy (a fraction counts past TAKEN_FRACTION)."""
    taken = math.floor(others + (1 - TAKEN_FRACTION)) if others > 0 else 0
    return max(1, min(cores, cores - taken))


def _clock_tick() -> float | None:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return None
