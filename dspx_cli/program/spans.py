"""The spans of a program run and of its steps (core/telemetry.py); only called when tracing is on.

    run {program}    dspx.program.name, dspx.program.path, dspx.usage.input_tokens/output_tokens
      step {id}      dspx.step.id, dspx.module.name, dspx.module.type, dspx.step.foreach
        chat {model} (lm/spans.py)
        execute_tool {name}   a tool an agent called (GenAI conventions: gen_ai.operation.name
                     execute_tool, gen_ai.tool.name, gen_ai.tool.type; with the content opt-in
                     also gen_ai.tool.call.arguments and gen_ai.tool.call.result)

Steps of one flow run as tasks of the run's task group, so each step's span is a child of the run's
(a task starts in a copy of its creator's context) and an LM call's span a child of its step's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from dspx_cli.core.telemetry import Span, Telemetry
from dspx_cli.program.model import Program, Step

if TYPE_CHECKING:
    from dspx_cli.modules.tool import Tool
    from dspx_cli.program.runner import ProgramRunner, RunResult


def step_span(telemetry: Telemetry, program: Program, step: Step) -> Span:
    definition = program.modules[step.module]
    return telemetry.span(
        f"step {step.id}",
        {
            "dspx.step.id": step.id,
            "dspx.module.name": step.module,
            "dspx.module.type": definition.type,
            "dspx.step.foreach": step.foreach is not None,
        },
    )


async def traced_run(
    runner: ProgramRunner, inputs: dict[str, Any], run: Callable[[dict[str, Any]], Awaitable[RunResult]]
) -> RunResult:
    program = runner.program
    attributes = {"dspx.program.name": program.name, "dspx.program.path": str(program.path)}
    with runner.telemetry.span(f"run {program.name}", attributes) as span:
        result = await run(inputs)
        # dspx.usage, not gen_ai.usage: a backend that sums gen_ai.usage over a trace would count twice.
        span.update(
            {
                "dspx.usage.input_tokens": result.usage.prompt_tokens,
                "dspx.usage.output_tokens": result.usage.completion_tokens,
            }
        )
        return result


def traced_tool(tool: Tool, telemetry: Telemetry) -> Tool:
    """`tool` with each call in an `execute_tool` span: a copy (a Python tool is one object,
    built when the program loads, that every run shares)."""
    from dspx_cli.modules.tool import Tool

    class TracedTool(Tool):
        def __init__(self) -> None:  # the tool's state as it is; nothing is parsed again
            self.__dict__.update(tool.__dict__)

        async def acall(self, **kwargs: Any) -> Any:
            attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": self.name}
            with telemetry.span(f"execute_tool {self.name}", {**attributes, "gen_ai.tool.type": "function"}) as span:
                if telemetry.capture_content:
                    span.set("gen_ai.tool.call.arguments", json.dumps(kwargs, ensure_ascii=False, default=str))
                # The wrapped tool's own acall: a subclass (the sandbox tool) may run calls its own way.
                result = await tool.acall(**kwargs)
                if telemetry.capture_content:
                    span.set("gen_ai.tool.call.result", str(result))
                return result

        @asynccontextmanager
        async def per_run(self) -> AsyncIterator[Tool]:
            # A tool with per-run state (the sandbox tool) hands each run a copy: trace that copy.
            async with tool.per_run() as run_tool:
                yield self if run_tool is tool else traced_tool(run_tool, telemetry)

    return TracedTool()
