"""Resolve `flow` and `output` into run-ordered steps and program outputs.

A program with one module needs neither: it becomes one step that reads every signature input
from `$input` and returns every output.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from dspx_cli.core import Field, annotation_name
from dspx_cli.errors import ProgramError
from dspx_cli.program.model import INPUT, ModuleDef, Ref, Step
from dspx_cli.program.schema import ProgramSpec
from dspx_cli.program.source import Positions

_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_]*)$")


def build_flow(
    spec: ProgramSpec, data: dict[str, Any], modules: dict[str, ModuleDef], positions: Positions
) -> tuple[list[Step], dict[str, Ref], dict[str, Field]]:
    if spec.flow is None:
        # A module that another wraps (best_of_n, refine) runs inside it, not as a step of its own.
        wrapped = {module.wraps for module in modules.values() if module.wraps}
        top = [module for name, module in modules.items() if name not in wrapped]
        if len(top) > 1:
            raise ProgramError(
                f"a program with several modules ({', '.join(m.name for m in top)}) needs a `flow` that connects them",
                positions.locate(("modules",)),
            )
        (module,) = top
        bindings: dict[str, Any] = {name: Ref(INPUT, name) for name in module.signature.input_fields}
        steps = [Step(module.name, module.name, bindings, module.location)]
    else:
        steps = [_build_step(index, data, modules, positions) for index in range(len(spec.flow))]
    by_id = {step.id: step for step in steps}
    for index, step in enumerate(steps):
        for name, value in step.bindings.items():
            if isinstance(value, Ref):
                _check_ref(value, by_id, modules, positions.locate(("flow", index, "with", name)))
    ordered = _topological(steps, positions)

    if spec.output is None:
        last = modules[ordered[-1].module]
        outputs = {name: Ref(ordered[-1].id, name) for name in last.default_outputs}
    else:
        outputs = {}
        for name, text in spec.output.items():
            where = positions.locate(("output", name))
            ref = _parse_ref(text, where)
            if ref is None:
                raise ProgramError(f"output {name!r}: expected a reference such as $step.field, got {text!r}", where)
            _check_ref(ref, by_id, modules, where)
            outputs[name] = ref

    _check_types(ordered, modules, positions, spec)
    _check_reachable(ordered, outputs, positions)

    inputs: dict[str, Field] = {}
    for step in ordered:
        signature = modules[step.module].signature
        for name, value in step.bindings.items():
            if isinstance(value, Ref) and value.source == INPUT and value.field not in inputs:
                declared = signature.input_fields[name]
                inputs[value.field] = Field(value.field, declared.annotation, declared.desc)
    return ordered, outputs, inputs


def _build_step(index: int, data: dict[str, Any], modules: dict[str, ModuleDef], positions: Positions) -> Step:
    raw = data["flow"][index]
    key_path = ("flow", index)
    step_id, module_name = raw["id"], raw["module"]
    if module_name not in modules:
        raise ProgramError(
            f"step {step_id!r} uses unknown module {module_name!r}; defined modules: {', '.join(modules)}",
            positions.locate((*key_path, "module")),
        )
    signature = modules[module_name].signature
    if any(earlier["id"] == step_id for earlier in data["flow"][:index]):
        raise ProgramError(f"duplicate step id {step_id!r}", positions.locate((*key_path, "id")))
    if step_id == INPUT:
        raise ProgramError(f"step id {INPUT!r} is reserved for program inputs", positions.locate((*key_path, "id")))
    bindings: dict[str, Any] = {}
    for name, value in (raw.get("with") or {}).items():
        where = positions.locate((*key_path, "with", name))
        if name not in signature.input_fields:
            raise ProgramError(
                f"step {step_id!r} binds {name!r}, which is not an input of module {module_name!r}; "
                f"expected one of: {', '.join(signature.input_fields)}",
                where,
            )
        ref = _parse_ref(value, where) if isinstance(value, str) else None
        bindings[name] = ref if ref is not None else value
    missing = [name for name in signature.input_fields if name not in bindings]
    if missing:
        raise ProgramError(
            f"step {step_id!r} does not bind input(s) {', '.join(missing)} of module {module_name!r}; "
            f"add them under `with`, e.g. {missing[0]}: $input.{missing[0]}",
            positions.locate(key_path),
        )
    return Step(step_id, module_name, bindings, positions.locate(key_path))


def _parse_ref(text: str, where: Any) -> Ref | None:
    if not text.startswith("$"):
        return None
    match = _REF.match(text)
    if not match:
        raise ProgramError(f"expected a reference such as $input.field or $step.field, got {text!r}", where)
    return Ref(match.group(1), match.group(2))


def _check_ref(ref: Ref, steps: dict[str, Step], modules: dict[str, ModuleDef], where: Any) -> None:
    if ref.source == INPUT:
        return
    if ref.source not in steps:
        raise ProgramError(f"{ref} refers to unknown step {ref.source!r}; steps: {', '.join(steps)}", where)
    produced = modules[steps[ref.source].module].output_names
    if ref.field not in produced:
        raise ProgramError(
            f"{ref}: step {ref.source!r} has no output {ref.field!r}; it produces: {', '.join(produced)}", where
        )


def _topological(steps: list[Step], positions: Positions) -> list[Step]:
    """Order steps so each follows what it reads, keeping the written order where free."""
    by_id = {step.id: step for step in steps}
    done: set[str] = set()
    visiting: list[str] = []
    ordered: list[Step] = []

    def visit(step: Step) -> None:
        if step.id in done:
            return
        if step.id in visiting:
            cycle = " -> ".join([*visiting[visiting.index(step.id) :], step.id])
            raise ProgramError(f"the flow has a cycle: {cycle}", step.location)
        visiting.append(step.id)
        for dependency in sorted(step.depends_on, key=lambda s: steps.index(by_id[s])):
            visit(by_id[dependency])
        visiting.pop()
        done.add(step.id)
        ordered.append(step)

    for step in steps:
        visit(step)
    return ordered


def _compatible(source: Any, target: Any) -> bool:
    """Whether a value of type `source` fits an input of type `target`. Anything can be shown as
    text, so `str` inputs take everything; otherwise the types must agree (int fits float)."""
    if target in (str, Any) or source is Any or source == target or (source, target) == (int, float):
        return True
    if typing.get_origin(target) in (typing.Union, types.UnionType):
        return any(_compatible(source, option) for option in typing.get_args(target))
    return False


def _check_types(steps: list[Step], modules: dict[str, ModuleDef], positions: Positions, spec: ProgramSpec) -> None:
    by_id = {step.id: step for step in steps}
    for step in steps:
        index = next(i for i, s in enumerate(spec.flow or []) if s.id == step.id) if spec.flow else None
        for name, value in step.bindings.items():
            if not isinstance(value, Ref) or value.source == INPUT:
                continue
            source = modules[by_id[value.source].module].output_annotation(value.field)
            target = modules[step.module].signature.input_fields[name].annotation
            if not _compatible(source, target):
                raise ProgramError(
                    f"{value} is {annotation_name(source)} but input {name!r} of module {step.module!r} "
                    f"expects {annotation_name(target)}",
                    positions.locate(("flow", index, "with", name)) if index is not None else step.location,
                )


def _check_reachable(steps: list[Step], outputs: dict[str, Ref], positions: Positions) -> None:
    """Every step must feed the program's output, directly or through other steps."""
    by_id = {step.id: step for step in steps}
    needed: set[str] = set()
    frontier = [ref.source for ref in outputs.values() if ref.source != INPUT]
    while frontier:
        current = frontier.pop()
        if current not in needed:
            needed.add(current)
            frontier.extend(by_id[current].depends_on)
    for step in steps:
        if step.id not in needed:
            raise ProgramError(
                f"step {step.id!r} is unreachable: none of its outputs leads to the program's output; "
                "use it in `output` or remove it",
                step.location,
            )
