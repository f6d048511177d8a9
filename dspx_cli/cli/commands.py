"""What each command does, given parsed arguments. Rendering only; the engine does the work."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspx_cli.cli import render
from dspx_cli.core.redact import redact
from dspx_cli.errors import DspxError, UsageError
from dspx_cli.lm.cache import CacheMode
from dspx_cli.program.context import RunContext
from dspx_cli.program.inputs import parse_cli_inputs
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program

if TYPE_CHECKING:
    # Imported where used: they pull in every module type, which `dspx validate` does not need.
    from dspx_cli.program.batch import RowResult
    from dspx_cli.program.runner import ProgramRunner, RunResult


def build_runner(program: Program, context: RunContext | None, state_file: Path | None) -> ProgramRunner:
    """The program's modules, with a compiled state (demos, instructions) applied when given."""
    from dspx_cli.evaluate.rewards import build_rewards
    from dspx_cli.program.runner import ProgramRunner

    runner = ProgramRunner(program, context, rewards=build_rewards(program, context))
    if state_file is not None:
        from dspx_cli.optimizers.state import load_state, read_state_file

        load_state(runner, read_state_file(state_file), source=str(state_file))
    return runner


class RowsFailedError(DspxError):
    """Some rows of a batch failed; every row still has its line in the output."""


@dataclass(frozen=True)
class CacheOptions:
    directory: Path | None = None
    no_cache: bool = False
    cache_only: bool = False
    refresh: bool = False

    def context(self, program: Program) -> RunContext:
        chosen = [name for name, on in (("--no-cache", self.no_cache), ("--cache-only", self.cache_only),
                                         ("--refresh", self.refresh)) if on]
        if len(chosen) > 1:
            raise UsageError(f"{' and '.join(chosen)} contradict each other; pick one")
        mode = (
            CacheMode.OFF if self.no_cache else CacheMode.ONLY if self.cache_only
            else CacheMode.REFRESH if self.refresh else CacheMode.ON
        )
        return RunContext(base_dir=program.base_dir, cache_dir=self.directory, cache_mode=mode)


def run(
    path: Path,
    pairs: list[str],
    lm_override: str | None,
    as_json: bool,
    *,
    cache: CacheOptions = CacheOptions(),
    usage_file: Path | None = None,
    input_file: str | None = None,
    concurrency: int | None = None,
    state_file: Path | None = None,
    trace: bool = False,
) -> None:
    program = load_program(path, lm_override=lm_override)
    if input_file is not None and pairs:
        raise UsageError("give inputs either with -i or with --batch, not both")
    context = cache.context(program)
    # Building loads no model and calls no LM, so a state that does not fit fails before any cost.
    runner = build_runner(program, context, state_file)
    if input_file is not None:
        run_file(runner, input_file, context, concurrency, usage_file, trace=trace)
        return
    inputs = parse_cli_inputs(program, pairs)
    started = time.perf_counter()
    try:
        result = asyncio.run(_run_once(runner, context, inputs))
    finally:
        # Even a failed run reports what it spent.
        elapsed = time.perf_counter() - started
        if usage_file is not None:
            usage_file.write_text(json.dumps(redact(context.meter.to_dict()), indent=2) + "\n")
    if trace:
        sys.stderr.write(render.trace_text(program, result.steps))
    completions = runner.completions(result)
    if as_json:
        record = render.outputs_record(result.outputs, completions)
        sys.stdout.write(json.dumps(render.jsonable(record), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render.outputs_text(result.outputs, completions))
    render.usage_line(context.meter, elapsed)


def run_file(
    runner: ProgramRunner,
    input_file: str,
    context: RunContext,
    concurrency: int | None,
    usage_file: Path | None,
    *,
    trace: bool = False,
) -> None:
    if input_file == "-":
        source = sys.stdin
    else:
        try:
            source = open(input_file, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"--batch {input_file}: {exc.strerror}") from None

    from dspx_cli.program.runner import RunResult

    from dspx_cli.cli.progress import Progress
    from dspx_cli.program.batch import default_concurrency, run_batch

    progress = Progress(context.meter, "run", unit="rows", scored=False)

    def emit(row: RowResult) -> None:
        progress.update(None, row.error is not None)
        record = row.record()
        if row.error is None and row.steps is not None:
            record = render.outputs_record(record, runner.completions(RunResult(record, row.steps)))
        if trace and row.steps is not None:
            record["trace"] = {step: dict(prediction.items()) for step, prediction in row.steps.items()}
        sys.stdout.write(json.dumps(render.jsonable(record), ensure_ascii=False) + "\n")
        sys.stdout.flush()  # a consumer downstream of a pipe sees each row as it is ready

    async def go() -> tuple[int, int]:
        try:
            with progress:
                return await run_batch(runner, source, emit, concurrency=concurrency or default_concurrency(runner.program))
        finally:
            await context.aclose()

    started = time.perf_counter()
    try:
        rows, failed = asyncio.run(go())
    finally:
        if source is not sys.stdin:
            source.close()
        if usage_file is not None:
            usage_file.write_text(json.dumps(redact(context.meter.to_dict()), indent=2) + "\n")
    render.usage_line(context.meter, time.perf_counter() - started)
    if failed:
        raise RowsFailedError(f"{failed} of {rows} rows failed; their error records are in the output")


async def _run_once(runner: ProgramRunner, context: RunContext, inputs: dict[str, Any]) -> RunResult:
    try:
        return await runner.run(inputs)
    finally:
        await context.aclose()


def inspect(
    path: Path, pairs: list[str], lm_override: str | None, as_json: bool, state_file: Path | None = None
) -> None:
    program = load_program(path, lm_override=lm_override)
    inputs = parse_cli_inputs(program, pairs)
    previews = build_runner(program, None, state_file).preview(inputs)
    if as_json:
        payload = [
            {"step": step.id, "module": step.module, "lm": program.modules[step.module].lm.model, "messages": messages}
            for step, messages in previews
        ]
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    for step, messages in previews:
        sys.stdout.write(render.messages_text(step, program.modules[step.module], messages))


def validate(path: Path, *, graph: bool = False, mermaid: bool = False) -> None:
    """Everything a later command would reject, without running the program's code or any LM:
    Python tools, metrics and rewards are parsed, not imported; data files are read."""
    program = load_program(path, run_code=False)
    if program.spec.data is not None:
        from dspx_cli.evaluate.datasets import configured_splits, load_examples

        for split in configured_splits(program):
            load_examples(program, split)
    if program.spec.metric is not None:
        from dspx_cli.evaluate.metrics import resolve_metric

        resolve_metric(program, None, run_code=False)
    from dspx_cli.evaluate.rewards import build_rewards

    build_rewards(program, None, run_code=False)  # each best_of_n/refine reward, checked where it is written
    if program.spec.optimizer is not None:
        from dspx_cli.optimizers.compile import choose_optimizer

        check_teacher(program, choose_optimizer(program, None, ()).teacher)
    if mermaid:
        sys.stdout.write(render.graph_mermaid(program))
        return
    sys.stdout.write(render.program_summary(program))
    if graph:
        sys.stdout.write(render.graph_text(program))


def check_teacher(program: Program, teacher: Any, flag: str | None = None) -> None:
    """A teacher model no backend takes fails before compiling, where the file (or `flag`,
    --teacher-lm) names it."""
    from dspx_cli.errors import ProgramError
    from dspx_cli.lm.registry import model_problem

    if teacher is None or teacher.lm is None:
        return
    problem = model_problem(teacher.lm, program.base_dir)
    if problem is not None and flag:
        raise UsageError(f"--teacher-lm {flag}: {problem}")
    if problem is not None:
        raise ProgramError(f"teacher: {problem}", program.positions.locate(("optimizer", "teacher", "lm")))
