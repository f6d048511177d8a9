"""Per-example call logs: the LM calls one example's run made, kept apart from its neighbours'.

`dspx evaluate` keeps, for each example, the exact messages sent and the raw reply of every LM call
it made (RUN_DIR/calls.jsonl, workflows/run_folder.py). Many examples run at once over the same
LMs, so the calls are collected in a context variable, as modules/trace.py collects traces: asyncio
gives each task a copy of the context it was created in, so an example's task and the step tasks
its flow starts append to that example's list and to no other.

    with call_log() as calls:
        await runner.run(inputs)
    for call in calls: call.record["messages"], call.caller

The records are the history's (lm/observed.py builds one per call; its settings already redacted).
`caller` is the object that made the call (a `Predict`, set by `calling`), for the run folder to name.

`counting_usage` keeps, the same way, the tokens of every chat call made inside it: what an example
that failed spent, since a module that raises hands back no prediction (and so no usage) to add up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from dspx_cli.lm.base import Usage

__all__ = ["LoggedCall", "UsageCount", "active", "call_log", "calling", "count_usage", "counting_usage", "log_call"]


class LoggedCall(NamedTuple):
    caller: object | None  # what `calling` named around the call, if anything
    record: dict[str, Any]


_LOG: ContextVar[list[LoggedCall] | None] = ContextVar("dspx_call_log", default=None)
_CALLER: ContextVar[object | None] = ContextVar("dspx_caller", default=None)


class UsageCount:
    """The tokens of the chat calls made inside `counting_usage`, cached ones included (as a
    prediction's usage counts them)."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = Usage()


_COUNT: ContextVar[UsageCount | None] = ContextVar("dspx_usage_count", default=None)


@contextmanager
def call_log() -> Iterator[list[LoggedCall]]:
    """Collect the LM calls made inside the block (and in tasks it starts) into a new list."""
    calls: list[LoggedCall] = []
    token = _LOG.set(calls)
    try:
        yield calls
    finally:
        _LOG.reset(token)


@contextmanager
def calling(caller: object) -> Iterator[None]:
    """Calls made inside the block are logged as `caller`'s."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


def active() -> bool:
    """Whether a call made now would be logged: the LM stack builds no record for nobody."""
    return _LOG.get() is not None


def log_call(record: dict[str, Any]) -> None:
    calls = _LOG.get()
    if calls is not None:
        calls.append(LoggedCall(_CALLER.get(), record))


@contextmanager
def counting_usage(count: UsageCount) -> Iterator[UsageCount]:
    """Add the usage of every chat call made inside the block (and in tasks it starts) to `count`."""
    token = _COUNT.set(count)
    try:
        yield count
    finally:
        _COUNT.reset(token)


def count_usage(usage: Usage) -> None:
    count = _COUNT.get()
    if count is not None:
        count.usage = count.usage + usage
