"""Batch runs: many inputs through one program, concurrently, results in input order.

Rows are read lazily (stdin may be a pipe), at most `concurrency` run at once, and each result is
emitted as soon as every row before it has been emitted, so output streams in input order and a
failed row becomes an error record in its place instead of a lost or reordered row.

Input is read as bytes and decoded line by line, so a line that is not UTF-8, not JSON, nested too
deeply or too long spoils only itself. A closed output (`| head`) stops the batch: the
BrokenPipeError reaches the caller, which ends quietly.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from dspx_cli.core.collector import fewer_collections
from dspx_cli.core.jsonl import BadLine, parse_object
from dspx_cli.errors import DspxError
from dspx_cli.lm.registry import EMBEDDED_NAMES, LOCAL_PREFIX
from dspx_cli.program.inputs import check_inputs
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner

# A row is one JSON object of inputs; a longer line is refused rather than held in memory.
MAX_LINE_BYTES = 32 * 1024 * 1024
# Rows in flight when no -j is given: a local model computes one call at a time (a second one in
# flight keeps it busy between calls), a remote endpoint serves many at once.
LOCAL_CONCURRENCY = 2
REMOTE_CONCURRENCY = 16


def default_concurrency(program: Program) -> int:
    """Examples or rows in flight for `program` when the command line does not say."""
    lms = [definition.lm for definition in program.modules.values() if definition.retriever is None]
    return LOCAL_CONCURRENCY if any(_is_local(lm.model, lm.api_base) for lm in lms) else REMOTE_CONCURRENCY


def _is_local(model: str, api_base: str | None) -> bool:
    # The forms lm/registry.py runs in this process (embedded, local/..., a file or folder path).
    model = model.strip()
    if model in EMBEDDED_NAMES or model.startswith(LOCAL_PREFIX) or model.endswith(".gguf"):
        return True
    return api_base is None and model.startswith((".", "/", "~"))


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
    source: IO[Any],
    emit: Callable[[RowResult], None],
    *,
    concurrency: int = 16,
) -> tuple[int, int]:
    """Returns (rows, failed rows). `source` may be text or binary; text files are read through
    their byte buffer when they have one."""
    slots = asyncio.Semaphore(concurrency)
    pending: dict[int, RowResult] = {}
    next_to_emit = 0
    rows = failed = 0

    def flush() -> None:
        nonlocal next_to_emit
        while next_to_emit in pending:
            _emit(emit, pending.pop(next_to_emit))
            next_to_emit += 1

    async def one(index: int, line_number: int, line: bytes | str) -> None:
        nonlocal failed
        try:
            result = await _run_row(runner, line_number, line)
        finally:
            slots.release()
        if result.error is not None:
            failed += 1
        pending[index] = result
        flush()

    reader = _LineReader(getattr(source, "buffer", source), asyncio.get_running_loop())
    try:
        with fewer_collections():
            async with asyncio.TaskGroup() as group:
                index = line_number = 0
                while True:
                    line = await reader.readline()
                    if line is None:
                        break
                    line_number += 1
                    if not line.strip():
                        continue
                    await slots.acquire()  # bounds memory too: a huge file is not read ahead of the work
                    group.create_task(one(index, line_number, line))
                    index += 1
                rows = index
    except BaseExceptionGroup as failure:
        # Rows never raise (their failures are records), so this is the output failing: report
        # that error itself (BrokenPipeError for `| head`), not a group around it.
        raise _first_leaf(failure) from None
    finally:
        reader.close()
    flush()
    return rows, failed


def _emit(emit: Callable[[RowResult], None], row: RowResult) -> None:
    try:
        emit(row)
    except OSError:
        raise  # the output itself failed (closed pipe, full disk): nothing more can be written
    except Exception as exc:  # noqa: BLE001 - an output that cannot be written as JSON still gets its line
        message = f"internal error: cannot write the result: {exc}"
        emit(RowResult(row.line, error=message, error_type=type(exc).__name__))


async def _run_row(runner: ProgramRunner, line_number: int, line: bytes | str) -> RowResult:
    if isinstance(line, _TooLong):
        return RowResult(line_number, error=f"line longer than {MAX_LINE_BYTES // 2**20} MiB", error_type="InputError")
    try:
        record = parse_object(line, first=line_number == 1)
    except BadLine as bad:
        return RowResult(line_number, error=bad.problem, error_type="InputError")
    try:
        inputs = check_inputs(runner.program, record)
        result = await runner.run(inputs)
    except DspxError as exc:
        return RowResult(line_number, error=str(exc), error_type=type(exc).__name__)
    except RecursionError:
        return RowResult(line_number, error="an input is nested too deeply", error_type="InputError")
    except Exception as exc:  # noqa: BLE001 - an engine bug must still not lose the row
        return RowResult(line_number, error=f"internal error: {exc}", error_type=type(exc).__name__)
    return RowResult(line_number, outputs=result.outputs, steps=result.steps)


class _TooLong(bytes):
    """A line past MAX_LINE_BYTES: its start only (the rest was read and dropped)."""


class _LineReader:
    """Reads lines on a daemon thread of its own, one per request, so a slow pipe never stalls the
    rows already running, and an interrupted run exits without waiting for a read that may never
    return (asyncio's default executor is joined at exit; this thread is not)."""

    def __init__(self, source: IO[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop
        self._requests: queue.SimpleQueue[asyncio.Future[Any] | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="dspx-input", daemon=True).start()

    async def readline(self) -> bytes | str | None:
        """The next line, or None at the end of the input."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._requests.put(future)
        line = await future
        return line or None

    def close(self) -> None:
        self._requests.put(None)

    def _serve(self) -> None:
        while (future := self._requests.get()) is not None:
            try:
                outcome: tuple[bool, Any] = (True, self._read())
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting task, which raises it
                outcome = (False, exc)
            try:
                self._loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:  # the loop has closed: nobody waits for this line any more
                return

    def _read(self) -> bytes | str:
        line = self._source.readline(MAX_LINE_BYTES + 1)
        if len(line) <= MAX_LINE_BYTES or line[-1:] in (b"\n", "\n"):
            return line
        while (rest := self._source.readline(1 << 20)) and rest[-1:] not in (b"\n", "\n"):
            pass  # drop the rest of the line without holding it
        start = line[:64] if isinstance(line, bytes) else line[:64].encode()
        return _TooLong(start)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled while the thread read
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
