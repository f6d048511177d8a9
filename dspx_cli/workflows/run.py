"""`run`: a program on one input, or on every row of a JSON lines stream."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dspx_cli.core.redact import redact
from dspx_cli.errors import DspxError, UsageError
from dspx_cli.program.context import RunContext
from dspx_cli.program.inputs import parse_cli_inputs
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.workflows.context import CacheOptions, build_runner
from dspx_cli.workflows.hooks import Hooks
from dspx_cli.workflows.records import jsonable, outputs_record

if TYPE_CHECKING:
    from collections.abc import Callable

    from dspx_cli.program.batch import RowResult
    from dspx_cli.program.runner import ProgramRunner, RunResult


class RowsFailedError(DspxError):
    """Some rows of a batch failed; every row still has its line in the output."""


@dataclass
class LoadedRun:
    """A program ready to run: loaded, its context built, its state applied, no LM called yet."""

    program: Program
    context: RunContext
    runner: ProgramRunner
    usage_file: Path | None = None


@dataclass(frozen=True)
class RunOutcome:
    result: RunResult
    completions: list[dict[str, Any]]
    seconds: float

    @property
    def outputs(self) -> dict[str, Any]:
        return self.result.outputs


@dataclass(frozen=True)
class BatchOutcome:
    rows: int
    failed: int
    seconds: float

    def check(self) -> None:
        if self.failed:
            raise RowsFailedError(f"{self.failed} of {self.rows} rows failed; their error records are in the output")


def load(
    path: Path,
    lm_override: str | None,
    *,
    cache: CacheOptions = CacheOptions(),
    state_file: Path | None = None,
    usage_file: Path | None = None,
    batch: bool = False,
    pairs: list[str] | None = None,
) -> LoadedRun:
    program = load_program(path, lm_override=lm_override)
    if batch and pairs:
        raise UsageError("give inputs either with -i or with --batch, not both")
    context = cache.context(program)
    # Building loads no model and calls no LM, so a state that does not fit fails before any cost.
    runner = build_runner(program, context, state_file)
    return LoadedRun(program, context, runner, usage_file)


def run_one(loaded: LoadedRun, pairs: list[str]) -> RunOutcome:
    """One input given as FIELD=VALUE pairs; the usage file is written even when the run fails."""
    inputs = parse_cli_inputs(loaded.program, pairs)
    started = time.perf_counter()
    try:
        result = asyncio.run(_run_once(loaded.runner, loaded.context, inputs))
    finally:
        elapsed = time.perf_counter() - started
        _write_usage(loaded)
    return RunOutcome(result, loaded.runner.completions(result), elapsed)


def run_rows(
    loaded: LoadedRun,
    source: IO[Any],
    on_row: Callable[[dict[str, Any]], None],
    *,
    concurrency: int | None = None,
    trace: bool = False,
    hooks: Hooks = Hooks(),
) -> BatchOutcome:
    """Every JSON line of `source`; `on_row` gets each row's record (outputs or error) in input order."""
    from dspx_cli.program.batch import default_concurrency, run_batch
    from dspx_cli.program.runner import RunResult

    runner, context = loaded.runner, loaded.context

    async def go() -> tuple[int, int]:
        try:
            with hooks.progress(context.meter, "run", unit="rows", scored=False) as progress:

                def emit(row: RowResult) -> None:
                    progress.update(None, row.error is not None)
                    record = row.record()
                    if row.error is None and row.steps is not None:
                        record = outputs_record(record, runner.completions(RunResult(record, row.steps)))
                    if trace and row.steps is not None:
                        record["trace"] = {step: dict(prediction.items()) for step, prediction in row.steps.items()}
                    on_row(jsonable(record))

                return await run_batch(
                    runner, source, emit, concurrency=concurrency or default_concurrency(runner.program)
                )
        finally:
            await context.aclose()

    started = time.perf_counter()
    try:
        rows, failed = asyncio.run(go())
    finally:
        _write_usage(loaded)
    return BatchOutcome(rows, failed, time.perf_counter() - started)


async def _run_once(runner: ProgramRunner, context: RunContext, inputs: dict[str, Any]) -> RunResult:
    try:
        return await runner.run(inputs)
    finally:
        await context.aclose()


def _write_usage(loaded: LoadedRun) -> None:
    # Even a failed run reports what it spent.
    if loaded.usage_file is not None:
        loaded.usage_file.write_text(json.dumps(redact(loaded.context.meter.to_dict()), indent=2) + "\n")
