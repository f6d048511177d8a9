"""Text for people: outputs on stdout, usage and diagnostics on stderr (rich, NO_COLOR-aware)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dspx_cli.adapters.media import content_text
from dspx_cli.core import annotation_name
from dspx_cli.program.model import ModuleDef, Program, Ref, Step
from dspx_cli.program.module_types import MODULE_TYPES
from dspx_cli.workflows.records import jsonable, outputs_record

if TYPE_CHECKING:
    # Annotations only: `validate` sends no message and meters no usage.
    from dspx_cli.lm.base import Message
    from dspx_cli.lm.usage import UsageMeter

__all__ = [
    "fields_text",
    "graph_mermaid",
    "graph_text",
    "jsonable",
    "messages_text",
    "outputs_record",
    "outputs_text",
    "program_summary",
    "trace_text",
    "usage_line",
    "usage_summary",
]


def fields_text(outputs: dict[str, Any]) -> str:
    lines = []
    for name, value in outputs.items():
        text = value if isinstance(value, str) else _compact(value)
        if "\n" in text:
            indented = "\n".join("  " + line for line in text.splitlines())
            lines.append(f"{name}:\n{indented}")
        else:
            lines.append(f"{name}: {text}")
    return "\n".join(lines) + "\n"


def outputs_text(outputs: dict[str, Any], completions: list[dict[str, Any]]) -> str:
    """The fields; with several completions, each one under its own numbered header."""
    if len(completions) <= 1:
        return fields_text(outputs)
    total = len(completions)
    return "".join(
        f"--- completion {index} of {total} ---\n" + fields_text(completion)
        for index, completion in enumerate(completions, start=1)
    )


def _compact(value: Any) -> str:
    import json

    return json.dumps(jsonable(value), ensure_ascii=False)


def trace_text(program: Program, steps: dict[str, Any]) -> str:
    """Each step's fields in run order; a ReAct trajectory as numbered thought / tool / observation,
    a program_of_thought or code_act one as numbered code / output / error."""
    out = []
    for step in program.steps:
        if step.id not in steps:
            continue
        module = program.modules[step.module]
        out.append(f"=== step {step.id} · module {module.name} ({module.type}) ===")
        fields = dict(steps[step.id].items())
        trajectory = fields.pop("trajectory", None)
        if isinstance(trajectory, dict) and module.type in _CODE_MODULES:
            out.extend(_code_lines(trajectory) or ["(no code)"])
        elif isinstance(trajectory, dict):
            out.extend(_trajectory_lines(trajectory) or ["(no tool calls)"])
        if fields:
            out.append(fields_text(fields).rstrip("\n"))
    return "\n".join(out) + "\n" if out else ""


def _trajectory_lines(trajectory: dict[str, Any]) -> list[str]:
    lines = []
    indexes = sorted({int(key.rsplit("_", 1)[1]) for key in trajectory if key.rsplit("_", 1)[-1].isdigit()})
    for i in indexes:
        tool, args = trajectory.get(f"tool_name_{i}"), trajectory.get(f"tool_args_{i}", {})
        lines.append(f"[{i}] thought: {trajectory.get(f'thought_{i}', '')}")
        lines.append(f"[{i}] tool: {tool}({_compact(args)})")
        observation = trajectory.get(f"observation_{i}")
        text = observation if isinstance(observation, str) else _compact(observation)
        lines.append(f"[{i}] observation: " + text.replace("\n", "\n    "))
    return lines


# Module types whose trajectory is code, output and errors per iteration (modules/code_act.py,
# modules/program_of_thought.py): (trajectory key prefix, label) in display order.
_CODE_MODULES = frozenset({"program_of_thought", "code_act"})
_CODE_ENTRIES = (("generated_code", "code"), ("code_output", "output"), ("error", "error"), ("observation", "error"))


def _code_lines(trajectory: dict[str, Any]) -> list[str]:
    lines = []
    indexes = sorted({int(key.rsplit("_", 1)[1]) for key in trajectory if key.rsplit("_", 1)[-1].isdigit()})
    for i in indexes:
        for prefix, label in _CODE_ENTRIES:
            value = trajectory.get(f"{prefix}_{i}")
            if value is None:
                continue
            text = value if isinstance(value, str) else _compact(value)
            lines.append(f"[{i}] {label}:" + ("\n    " + text.replace("\n", "\n    ") if "\n" in text else f" {text}"))
    return lines


def messages_text(step: Step, module: ModuleDef, messages: list[Message]) -> str:
    if not MODULE_TYPES[module.type].calls_lm:
        what = "(no LM call)"
        if module.retriever is not None:
            what = "(a search, no LM call: its passages are the {" + f"{step.id}.passages" + "} of the next steps)"
        return f"=== step {step.id} · module {module.name} ({_module_line(module)}) ===\n{what}\n\n"
    out = [f"=== step {step.id} · module {module.name} ({module.type}) · lm {module.lm.model} ==="]
    for message in messages:
        out.append(f"--- {message['role']} ---")
        out.append(content_text(message["content"]))
    return "\n".join(out) + "\n\n"


def program_summary(program: Program) -> str:
    inputs = ", ".join(f"{n}: {annotation_name(f.annotation)}" for n, f in program.inputs.items())
    outputs = ", ".join(program.outputs)
    lines = [
        f"ok: {program.path}",
        f"  name:    {program.name}",
        f"  inputs:  {inputs or '-'}",
        f"  outputs: {outputs}",
    ]
    for step in program.steps:
        module = program.modules[step.module]
        after = f" after {', '.join(sorted(step.depends_on))}" if step.depends_on else ""
        lines.append(f"  step {step.id}: {_module_line(module)}{after}{_step_keys(step)}")
    if program.spec.metric is not None:
        from dspx_cli.evaluate.metrics import describe_metric

        lines.append(f"  metric:  {describe_metric(program.spec.metric)}")
    optimizer = (program.spec.optimizer or {}).get("type")
    if optimizer is not None:
        from dspx_cli.optimizers.registry import OPTIMIZERS

        record = OPTIMIZERS.get(optimizer)
        lines.append(f"  optimizer: {optimizer}" + (f": {record.doc}" if record else ""))
    if program.prompt_lm is not None:
        lines.append(f"  prompt lm: {program.prompt_lm.model}")
    return "\n".join(lines) + "\n"


def _step_keys(step: Step) -> str:
    """`; foreach $input.items; when not $check.ok`: how a mapped or conditional step runs."""
    text = f"; foreach {step.foreach}" if step.foreach is not None else ""
    if step.when is not None:
        text += f"; when {'not ' if step.when_not else ''}{step.when}"
    return text


def _module_line(module: ModuleDef) -> str:
    return MODULE_TYPES[module.type].summary(module)


def usage_summary(meter: UsageMeter, seconds: float) -> str:
    """`local/smollm2 · 3 calls (1 cached) · 812 prompt + 40 completion tokens · $0.0004 · 1.93 s`"""
    parts = []
    for model, usage in meter.models.items():
        text = f"{model} · {usage.describe_calls()} · {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
        if usage.cost is not None:
            text += f" · ${usage.cost:.4f}"
        parts.append(text)
    if meter.adapter_fallbacks:
        parts.append(f"{meter.adapter_fallbacks} JSON fallback{'s' if meter.adapter_fallbacks != 1 else ''}")
    parts.append(f"{seconds:.2f} s")
    return " · ".join(parts) if meter.models else f"no LM calls · {seconds:.2f} s"


def usage_line(meter: UsageMeter, seconds: float) -> None:
    import sys

    text = usage_summary(meter, seconds)
    if not sys.stderr.isatty():  # one line for logs and scripts: rich would wrap it at 80 columns
        sys.stderr.write(text + "\n")
        return
    from rich.console import Console

    Console(stderr=True, highlight=False).print(text, style="dim", markup=False)


def _levels(program: Program) -> dict[str, int]:
    level: dict[str, int] = {}
    for step in program.steps:  # run order: dependencies first
        level[step.id] = 1 + max((level[d] for d in step.depends_on), default=-1)
    return level


def graph_text(program: Program) -> str:
    """Steps by level: a step runs once the steps it reads have; steps of one level run concurrently."""
    level = _levels(program)
    lines = ["graph (steps on the same level run concurrently):"]
    for depth in range(max(level.values(), default=-1) + 1):
        for step in (s for s in program.steps if level[s.id] == depth):
            module = program.modules[step.module]
            reads = ", ".join(f"{name} <- {value}" for name, value in step.bindings.items())
            lines.append(f"  [{depth}] {step.id} ({module.name}: {module.type})  {reads}{_step_keys(step)}")
    lines.append("  output: " + ", ".join(f"{name} <- {ref}" for name, ref in program.outputs.items()))
    return "\n".join(lines) + "\n"


def graph_mermaid(program: Program) -> str:
    lines = ["flowchart LR", "  input([input])"]
    for step in program.steps:
        module = program.modules[step.module]
        lines.append(f'  {step.id}["{step.id}<br/>{module.name}: {module.type}"]')
    lines.append("  output([output])")
    for step in program.steps:
        for value in step.bindings.values():
            if isinstance(value, Ref):
                lines.append(f"  {value.source} -- {value.field} --> {step.id}")
        for key, ref in (("foreach", step.foreach), ("when", step.when)):
            if ref is not None:
                lines.append(f"  {ref.source} -. {key} {ref.field} .-> {step.id}")
    for ref in program.outputs.values():
        lines.append(f"  {ref.source} -- {ref.field} --> output")
    return "\n".join(lines) + "\n"
