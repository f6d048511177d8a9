"""Resolve `flow` and `output` into run-ordered steps and program outputs.

A program with one module needs neither: it becomes one step that reads every signature input
from `$input` and returns every output.
"""

from __future__ import annotations

import functools
import operator
import re
import types
import typing
from typing import Any

from dspx_cli.core import Field, annotation_name
from dspx_cli.errors import ProgramError
from dspx_cli.program.input_types import allows_none
from dspx_cli.program.model import INPUT, ItemRef, ModuleDef, Ref, Step
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
        for key, ref in (("foreach", step.foreach), ("when", step.when)):
            if ref is not None:
                _check_ref(ref, by_id, modules, positions.locate(("flow", index, key)))
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
        # A list mapped over is typed by the input its items feed; a condition is a bool.
        if step.foreach is not None and step.foreach.source == INPUT and step.foreach.field not in inputs:
            item = _item_type(step, modules)
            inputs[step.foreach.field] = Field(step.foreach.field, list[item], "")  # type: ignore[valid-type]
        if step.when is not None and step.when.source == INPUT and step.when.field not in inputs:
            inputs[step.when.field] = Field(step.when.field, bool, "")
    return ordered, outputs, inputs


def produced_type(step: Step, modules: dict[str, ModuleDef], name: str) -> Any:
    """The type readers see for output `name` of `step`: a `foreach` step gives a list (of
    optional items when some may fail), a `when` step may give null."""
    annotation = modules[step.module].output_annotation(name)
    if step.foreach is not None:
        annotation = list[annotation | None] if step.max_errors > 1 else list[annotation]  # type: ignore[valid-type]
    if step.when is not None:
        annotation = annotation | None
    return annotation


def _item_type(step: Step, modules: dict[str, ModuleDef]) -> Any:
    """The type of a mapped list's items: that of the first input `$item` feeds, else objects
    when only `$item.key`s are read."""
    fields = modules[step.module].signature.input_fields
    refs = [(n, v) for n, v in step.bindings.items() if isinstance(v, ItemRef)]
    whole = next((fields[n].annotation for n, v in refs if v.key is None), None)
    if whole is not None:
        return whole
    return dict[str, Any] if refs else Any  # only `$item.key`s: the items are objects


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
    foreach = when = None
    item = raw.get("as", "item")
    if "foreach" in raw:
        where = positions.locate((*key_path, "foreach"))
        foreach = _parse_ref(raw["foreach"], where)
        if foreach is None:
            raise ProgramError(
                f"foreach: expected a reference to a list such as $input.items, got {raw['foreach']!r}", where
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item) or item == INPUT:
            raise ProgramError(
                f"as: expected a name for the item (not `input`), got {item!r}", positions.locate((*key_path, "as"))
            )
    elif "as" in raw or "max_errors" in raw:
        key = "as" if "as" in raw else "max_errors"
        raise ProgramError(f"`{key}` only applies to a step with `foreach`", positions.locate((*key_path, key)))
    when_not = False
    if "when" in raw:
        where = positions.locate((*key_path, "when"))
        text = raw["when"].strip() if isinstance(raw["when"], str) else ""
        when_not = text.startswith("not ")
        when = _parse_ref(text[4:].strip() if when_not else text, where)
        if when is None:
            raise ProgramError(f"when: expected $step.field or `not $step.field`, got {raw['when']!r}", where)
    bindings: dict[str, Any] = {}
    for name, value in (raw.get("with") or {}).items():
        where = positions.locate((*key_path, "with", name))
        if name not in signature.input_fields:
            raise ProgramError(
                f"step {step_id!r} binds {name!r}, which is not an input of module {module_name!r}; "
                f"expected one of: {', '.join(signature.input_fields)}",
                where,
            )
        if foreach is not None and isinstance(value, str) and (value == f"${item}" or value.startswith(f"${item}.")):
            item_key = value[len(item) + 2 :] or None
            if item_key is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item_key):
                raise ProgramError(f"expected ${item} or ${item}.<key>, got {value!r}", where)
            bindings[name] = ItemRef(item, item_key)
            continue
        ref = _parse_ref(value, where) if isinstance(value, str) else None
        bindings[name] = ref if ref is not None else value
    if foreach is not None and not any(isinstance(v, ItemRef) for v in bindings.values()):
        raise ProgramError(
            f"step {step_id!r} maps over {foreach} but no input reads the item; bind one to ${item}",
            positions.locate((*key_path, "with")) if "with" in raw else positions.locate(key_path),
        )
    missing = [name for name in signature.input_fields if name not in bindings]
    if missing:
        raise ProgramError(
            f"step {step_id!r} does not bind input(s) {', '.join(missing)} of module {module_name!r}; "
            f"add them under `with`, e.g. {missing[0]}: $input.{missing[0]}",
            positions.locate(key_path),
        )
    location = positions.locate(key_path)
    return Step(step_id, module_name, bindings, location, foreach, raw.get("max_errors", 1), when, when_not)


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

        def where(*keys: Any) -> Any:
            return positions.locate(("flow", index, *keys)) if index is not None else step.location  # noqa: B023

        item: Any = Any  # the type of a mapped list's items
        if step.foreach is not None and step.foreach.source != INPUT:
            listed = produced_type(by_id[step.foreach.source], modules, step.foreach.field)
            if typing.get_origin(listed) is not list:
                raise ProgramError(
                    f"foreach: {step.foreach} is {annotation_name(listed)}, expected a list (list[T])", where("foreach")
                )
            (item,) = typing.get_args(listed) or (Any,)
        if step.when is not None and step.when.source != INPUT:
            condition = produced_type(by_id[step.when.source], modules, step.when.field)
            if not _compatible(_strip_none(condition), bool):  # null (a skipped step) counts as false
                raise ProgramError(f"when: {step.when} is {annotation_name(condition)}, expected bool", where("when"))
        for name, value in step.bindings.items():
            target = modules[step.module].signature.input_fields[name].annotation
            if isinstance(value, ItemRef):
                if value.key is not None:
                    continue  # a key of an object item: its type is known only when the item is
                if not _compatible(item, target):
                    raise ProgramError(
                        f"{value} (an item of {step.foreach}) is {annotation_name(item)} but input {name!r} "
                        f"of module {step.module!r} expects {annotation_name(target)}",
                        where("with", name),
                    )
                continue
            if not isinstance(value, Ref) or value.source == INPUT:
                continue
            source_step = by_id[value.source]
            source = produced_type(source_step, modules, value.field)
            if source_step.when is not None:
                # A skipped step's outputs are null: only an input that may be null can read them.
                if not allows_none(target):
                    raise ProgramError(
                        f"{value} is null when step {source_step.id!r} is skipped (`when`), but input {name!r} "
                        f"of module {step.module!r} expects {annotation_name(target)}; declare it optional "
                        f"({annotation_name(target)} | None)",
                        where("with", name),
                    )
                source = _strip_none(source)
            if not _compatible(source, target):
                raise ProgramError(
                    f"{value} is {annotation_name(source)} but input {name!r} of module {step.module!r} "
                    f"expects {annotation_name(target)}",
                    where("with", name),
                )


def _strip_none(annotation: Any) -> Any:
    """`T | None` -> T (the union of the rest when several)."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return functools.reduce(operator.or_, rest) if rest else type(None)


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
