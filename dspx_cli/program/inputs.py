"""Program inputs from the command line (`-i field=value`) or from a JSON record."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from dspx_cli.core import annotation_name
from dspx_cli.errors import UsageError
from dspx_cli.program.model import Program


def parse_cli_inputs(program: Program, pairs: Iterable[str]) -> dict[str, Any]:
    """A value is JSON when its field's type is not `str`: `-i k=3`, `-i context='["a", "b"]'`."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"-i {pair!r}: expected FIELD=VALUE")
        field = program.inputs.get(name)
        if field is None:
            raise UsageError(f"-i {name}: {program.path} has no input {name!r}; its inputs are: {_names(program)}")
        if field.annotation is str:
            values[name] = text
            continue
        try:
            values[name] = json.loads(text)
        except json.JSONDecodeError:
            # A bare word for a Literal/Optional[str]-like field is what people type; keep it as text.
            if _accepts_text(field.annotation):
                values[name] = text
            else:
                raise UsageError(
                    f"-i {name}: expected JSON for type {annotation_name(field.annotation)}, got {text!r}"
                ) from None
    missing = [name for name in program.inputs if name not in values]
    if missing:
        hint = " ".join(f"-i {name}=..." for name in missing)
        raise UsageError(f"missing input(s) {', '.join(missing)} for {program.path}; pass {hint}")
    return check_inputs(program, values)


def check_inputs(program: Program, values: Mapping[str, Any]) -> dict[str, Any]:
    """The program's inputs from a record; other keys (labels, ids) are ignored."""
    missing = [name for name in program.inputs if name not in values]
    if missing:
        raise UsageError(f"missing input(s) {', '.join(missing)}; expected keys: {', '.join(program.inputs)}")
    return {name: values[name] for name in program.inputs}


def _names(program: Program) -> str:
    return ", ".join(f"{n} ({annotation_name(f.annotation)})" for n, f in program.inputs.items()) or "none"


def _accepts_text(annotation: Any) -> bool:
    text = annotation_name(annotation)
    return text.startswith(("Literal[", "Union[str", "Any")) or text == "Any"
