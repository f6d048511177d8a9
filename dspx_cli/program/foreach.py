"""A `foreach` step: one module call per item of a list, concurrently, outputs in item order.

The calls run together, at most MAX_ITEMS_AT_ONCE (64) items at a time; how many reach an LM at
once is up to the LM's own limits (`max_concurrency`, `rpm`, `tpm`: lm/limits.py), as for
independent steps. Errors follow DSPy's
`Parallel`: once `max_errors` items failed the step fails with the first item's error (the rest are
cancelled); fewer failed items leave null in their places. The default, 1, fails on any error,
as a plain step does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dspx_cli.core import Prediction
from dspx_cli.lm.base import Usage
from dspx_cli.modules.base import Module
from dspx_cli.program.model import ItemRef, Step

# Items in flight per foreach step: a list from a dataset row or an LM reply may be huge, and each
# item of a sync Python step holds a thread while it runs.
MAX_ITEMS_AT_ONCE = 64


class _TooManyErrors(Exception):
    def __init__(self, first: BaseException) -> None:
        self.first = first


async def map_items(module: Module, step: Step, values: dict[str, Any], items: Any, names: list[str]) -> Prediction:
    """`values` are the step's inputs with `ItemRef`s still in place: each call puts its item there.
    `names` are the module's outputs: each becomes a list, one entry per item."""
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"step {step.id!r}: foreach {step.foreach} is {type(items).__name__}, not a list")
    errors: list[BaseException] = []

    async def one(item: Any) -> Prediction | None:
        try:
            call = {name: _pick(step, item, value) for name, value in values.items()}
            return await module.acall(**call)
        except Exception as error:  # noqa: BLE001 - counted; the step fails at max_errors
            errors.append(error)
            if len(errors) >= step.max_errors:
                raise _TooManyErrors(errors[0]) from None
            return None

    results: list[Prediction | None] = [None] * len(items)
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, item in pending:  # shared: each item goes to the next free worker
            results[index] = await one(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(MAX_ITEMS_AT_ONCE, len(items))):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        failure = group_error.subgroup(_TooManyErrors)
        if failure is None:
            raise
        raise _first(failure).first from None

    prediction = Prediction({name: [None if r is None else r.get(name) for r in results] for name in names})
    usage = Usage()
    for result in results:
        if result is not None and result.usage is not None:
            usage = usage + result.usage
    prediction.usage = usage
    return prediction


def _pick(step: Step, item: Any, value: Any) -> Any:
    """The value of one input for one item: the item, a key of it, or the step's own value."""
    if not isinstance(value, ItemRef):
        return value
    if value.key is None:
        return item
    if not isinstance(item, dict) or value.key not in item:
        raise ValueError(f"step {step.id!r}: {value} - the item has no key {value.key!r}: {item!r}"[:300])
    return item[value.key]


def _first(group: BaseExceptionGroup) -> Any:
    leaf = group.exceptions[0]
    return _first(leaf) if isinstance(leaf, BaseExceptionGroup) else leaf
