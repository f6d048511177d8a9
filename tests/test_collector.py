"""The evaluate and batch loops collect garbage in larger batches, and leave the collector as they found it."""

from __future__ import annotations

import gc

from dspx_cli.core.collector import YOUNG_THRESHOLD, fewer_collections


def test_the_loop_raises_the_young_threshold_and_freezes_what_was_alive() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_nested_loops_restore_only_when_the_outermost_ends() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        with fewer_collections():
            pass
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)  # the outer loop still runs
    assert gc.get_threshold() == before


def test_a_failing_loop_still_restores_the_collector() -> None:
    before = gc.get_threshold()
    try:
        with fewer_collections():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_inside_the_loop_are_still_collected() -> None:
    class Node:
        pass

    with fewer_collections():
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        del node
        assert gc.collect() > 0
