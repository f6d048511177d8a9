"""The local model's thread count follows the cores other processes leave free (lm/core_share.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dspx_cli.lm.core_share import MIN_WINDOW_SECONDS, CoreShare, free_cores

TICK = os.sysconf("SC_CLK_TCK")


def write_stat(path: Path, busy_ticks: dict[int, int]) -> None:
    # The kernel's layout: user nice system idle iowait irq softirq steal guest guest_nice.
    total = sum(busy_ticks.values())
    lines = [f"cpu  {total} 0 0 999999 0 0 0 0 0 0"]
    lines += [f"cpu{cpu} {ticks} 0 0 99999 5000 0 0 0 0 0" for cpu, ticks in busy_ticks.items()]
    path.write_text("\n".join([*lines, "intr 1 2 3", "ctxt 42"]) + "\n")


def after_a_window(share: CoreShare, path: Path, busy_ticks: dict[int, int]) -> int:
    time.sleep(MIN_WINDOW_SECONDS * 2)
    write_stat(path, busy_ticks)
    return share.threads()


def test_an_idle_machine_gets_every_core(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, {0: 1000, 1: 1000})
    share = CoreShare({0, 1}, str(stat))
    assert after_a_window(share, stat, {0: 1000, 1: 1000}) == 2


def test_a_core_another_process_keeps_busy_is_left_to_it(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, {0: 1000, 1: 1000})
    share = CoreShare({0, 1}, str(stat))
    # Far more busy ticks than the window holds: others had the cores throughout.
    assert after_a_window(share, stat, {0: 1000 + 100 * TICK, 1: 1000}) == 1
    assert after_a_window(share, stat, {0: 1000 + 200 * TICK, 1: 1000 + 100 * TICK}) == 1  # never zero
    assert after_a_window(share, stat, {0: 1000 + 200 * TICK, 1: 1000 + 100 * TICK}) == 2  # they stopped


def test_only_the_usable_cores_count(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, {0: 0, 1: 0, 2: 0})
    share = CoreShare({0, 1}, str(stat))
    assert after_a_window(share, stat, {0: 0, 1: 0, 2: 100 * TICK}) == 2  # cpu2 is not ours


def test_a_short_window_keeps_the_last_choice(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, {0: 0, 1: 0})
    share = CoreShare({0, 1}, str(stat))
    assert after_a_window(share, stat, {0: 100 * TICK, 1: 0}) == 1
    write_stat(stat, {0: 100 * TICK, 1: 0})
    assert share.threads() == 1  # no time has passed: nothing new to judge by


def test_unreadable_counters_mean_half_the_cores(tmp_path: Path) -> None:
    share = CoreShare({0, 1, 2, 3}, str(tmp_path / "missing"))
    assert after_a_window(share, tmp_path / "elsewhere", {0: 0}) == 2


def test_a_light_load_does_not_take_a_core_but_a_third_of_one_does() -> None:
    assert free_cores(2, 0.0) == 2
    assert free_cores(2, 0.2) == 2
    assert free_cores(2, 0.5) == 1
    assert free_cores(2, 1.0) == 1
    assert free_cores(4, 1.2) == 3
    assert free_cores(4, 2.8) == 1
    assert free_cores(1, 3.0) == 1
