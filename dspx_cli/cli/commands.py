"""`run`, `inspect` and `validate`, given parsed arguments: call the workflow, render its result."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dspx_cli.cli import render
from dspx_cli.errors import UsageError
from dspx_cli.workflows.context import CacheOptions

if TYPE_CHECKING:
    from dspx_cli.workflows.run import LoadedRun

__all__ = ["CacheOptions", "inspect", "run", "validate"]


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
    from dspx_cli.workflows import run as workflow

    loaded = workflow.load(
        path,
        lm_override,
        cache=cache,
        state_file=state_file,
        usage_file=usage_file,
        batch=input_file is not None,
        pairs=pairs,
    )
    gc.enable()  # start-up is over (the entry point may have paused the collector, cli/app.py)
    if input_file is not None:
        run_file(loaded, input_file, concurrency, trace=trace)
        return
    outcome = workflow.run_one(loaded, pairs)
    if trace:
        sys.stderr.write(render.trace_text(loaded.program, outcome.result.steps))
    if as_json:
        record = render.outputs_record(outcome.outputs, outcome.completions)
        sys.stdout.write(json.dumps(render.jsonable(record), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render.outputs_text(outcome.outputs, outcome.completions))
    render.usage_line(loaded.context.meter, outcome.seconds)


def run_file(loaded: LoadedRun, input_file: str, concurrency: int | None, *, trace: bool = False) -> None:
    from dspx_cli.cli.progress import Progress
    from dspx_cli.workflows import run as workflow
    from dspx_cli.workflows.hooks import Hooks

    if input_file == "-":
        source = sys.stdin
    else:
        try:
            source = open(input_file, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"--batch {input_file}: {exc.strerror}") from None

    def write(record: dict) -> None:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()  # a consumer downstream of a pipe sees each row as it is ready

    try:
        outcome = workflow.run_rows(
            loaded, source, write, concurrency=concurrency, trace=trace, hooks=Hooks(progress=Progress)
        )
    finally:
        if source is not sys.stdin:
            source.close()
    render.usage_line(loaded.context.meter, outcome.seconds)
    outcome.check()


def inspect(
    path: Path, pairs: list[str], lm_override: str | None, as_json: bool, state_file: Path | None = None
) -> None:
    from dspx_cli.workflows.validate import preview

    program, previews = preview(path, pairs, lm_override, state_file)
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
    from dspx_cli.workflows.validate import validate_program

    program = validate_program(path)
    if mermaid:
        sys.stdout.write(render.graph_mermaid(program))
        return
    sys.stdout.write(render.program_summary(program))
    if graph:
        sys.stdout.write(render.graph_text(program))
