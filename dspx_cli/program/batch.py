"""Batch runs: many inputs through one program, concurrently, results in input order.

Rows are read lazily (stdin may be a pipe), at most `concurrency` run at once, and each result is
emitted as soon as every row before it has been emitted, so output streams in input order and a
failed row becomes an error record in its place instead of a lost or reordered row.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from dspx_cli.errors import DspxError
from dspx_cli.program.inputs import check_inputs
from dspx_cli.program.runner import ProgramRunner


@dataclass
class RowResult:
    line: int  # 1-based line of the input file
    outputs: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    steps: dict[str, Any] | None = None  # each step's prediction, for `--trace`

    def record(self) -> dict[str, Any]:
        if self.error is None:
            return dict(self.outputs or {})
        return {"error": {"line": self.line, "type": self.error_type, "message": self.error}}


async def run_batch(
    runner: ProgramRunner,
    source: TextIO,
    emit: Callable[[RowResult], None],
    *,
    concurrency: int = 16,
) -> tuple[int, int]:
    """Returns (rows, failed rows)."""
    slots = asyncio.Semaphore(concurrency)
    pending: dict[int, RowResult] = {}
    next_to_emit = 0
    rows = failed = 0

    def flush() -> None:
        nonlocal next_to_emit
        while next_to_emit in pending:
            emit(pending.pop(next_to_emit))
            next_to_emit += 1

    async def one(index: int, line_number: int, text: str) -> None:
        nonlocal failed
        try:
            result = await _run_row(runner, line_number, text)
        finally:
            slots.release()
        if result.error is not None:
            failed += 1
        pending[index] = result
        flush()

    async with asyncio.TaskGroup() as group:
        index = line_number = 0
        while True:
            # A thread read keeps a slow pipe from stalling the rows already running.
            text = await asyncio.to_thread(source.readline)
            if not text:
                break
            line_number += 1
            if not text.strip():
                continue
            await slots.acquire()  # bounds memory too: a huge file is not read ahead of the work
            group.create_task(one(index, line_number, text))
            index += 1
        rows = index
    flush()
    return rows, failed


async def _run_row(runner: ProgramRunner, line_number: int, text: str) -> RowResult:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return RowResult(line_number, error=f"expected a JSON object: {exc.msg}", error_type="InputError")
    if not isinstance(record, dict):
        return RowResult(line_number, error="expected a JSON object", error_type="InputError")
    try:
        inputs = check_inputs(runner.program, record)
        result = await runner.run(inputs)
    except DspxError as exc:
        return RowResult(line_number, error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # an engine bug must still not lose the row
        return RowResult(line_number, error=f"internal error: {exc}", error_type=type(exc).__name__)
    return RowResult(line_number, outputs=result.outputs, steps=result.steps)
