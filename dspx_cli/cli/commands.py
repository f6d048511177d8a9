"""What each command does, given parsed arguments. Rendering only; the engine does the work."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from dspx_cli.cli import render
from dspx_cli.program.context import RunContext
from dspx_cli.program.inputs import parse_cli_inputs
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner, RunResult


def run(path: Path, pairs: list[str], lm_override: str | None, as_json: bool) -> None:
    program = load_program(path, lm_override=lm_override)
    inputs = parse_cli_inputs(program, pairs)
    started = time.perf_counter()
    result = asyncio.run(_run_once(program, inputs))
    elapsed = time.perf_counter() - started
    if as_json:
        sys.stdout.write(json.dumps(render.jsonable(result.outputs), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render.fields_text(result.outputs))
    render.usage_line(program, result, elapsed)


async def _run_once(program: Any, inputs: dict[str, Any]) -> RunResult:
    context = RunContext(base_dir=program.base_dir)
    try:
        return await ProgramRunner(program, context).run(inputs)
    finally:
        await context.aclose()


def inspect(path: Path, pairs: list[str], lm_override: str | None, as_json: bool) -> None:
    program = load_program(path, lm_override=lm_override)
    inputs = parse_cli_inputs(program, pairs)
    previews = ProgramRunner(program, context=None).preview(inputs)
    if as_json:
        payload = [
            {"step": step.id, "module": step.module, "lm": program.modules[step.module].lm.model, "messages": messages}
            for step, messages in previews
        ]
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    for step, messages in previews:
        sys.stdout.write(render.messages_text(step, program.modules[step.module], messages))


def validate(path: Path) -> None:
    program = load_program(path)
    sys.stdout.write(render.program_summary(program))
