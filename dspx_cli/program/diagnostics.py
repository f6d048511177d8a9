"""Turn a failed check of a program file into one ProgramError that a person can act on.

The check that failed is pydantic's (core/spec_model.py hands it every value its fast check could
not vouch for), and pydantic reports every failed union branch; we keep the error that went deepest into the data
(the branch that matched what the user actually wrote), locate it in the file and phrase it as
"what was expected".
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dspx_cli.core.redact import REDACTED, is_secret_name
from dspx_cli.core.spec_model import SpecValidationError
from dspx_cli.errors import ProgramError
from dspx_cli.program.source import KeyPath, Positions

if TYPE_CHECKING:
    from pydantic import BaseModel

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def to_program_error(
    exc: SpecValidationError,
    data: Any,
    positions: Positions,
    *,
    at: KeyPath = (),
    common: Sequence[str] = (),
) -> ProgramError:
    """`data` failed its check (`exc`); it lies at `at` in the file. `common`: keys its top level
    also takes, checked elsewhere (a module's common keys, beside its type's own settings)."""
    root = exc.model
    errors = exc.errors()
    best = max(errors, key=lambda e: _depth(data, e))
    inner, missing = _data_path(data, best["loc"])
    path = (*at, *inner)
    where = positions.locate(path)
    dotted = ".".join(str(p) for p in path) or "the top level"
    kind = best["type"]
    if path and is_secret_name(path[-1]):  # an error message must not quote a key
        best = {**best, "input": REDACTED}
    if kind == "missing":
        return ProgramError(f"missing required key {missing!r} in {dotted}", where)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, inner[:-1])
        if not inner[:-1]:
            allowed = [*common, *(key for key in allowed if key not in common)]
        hint = unknown_name_hint(str(path[-1]), allowed)
        parent = ".".join(str(p) for p in path[:-1]) or "the top level"
        return ProgramError(f"unknown key {path[-1]!r} in {parent}{hint}", where)
    # Several failed union branches at the same depth: say what each would have accepted.
    siblings = [e for e in errors if _data_path(data, e["loc"])[0] == inner]
    expected = sorted({_EXPECTED[e["type"]] for e in siblings if e["type"] in _EXPECTED})
    if expected and kind in _EXPECTED:
        got = _describe(best.get("input"))
        return ProgramError(f"{dotted}: expected {' or '.join(expected)}, got {got}", where)
    if kind == "literal_error":
        return ProgramError(f"{dotted}: expected {best['ctx']['expected']}, got {_describe(best.get('input'))}", where)
    message = best["msg"].replace("Input should be", "expected").replace("Value error, ", "")
    return ProgramError(f"{dotted}: {message}, got {_describe(best.get('input'))}", where)


def unknown_name_hint(name: str, allowed: list[str]) -> str:
    """ "; did you mean 'temperature'?" for a near miss, else the list of what is allowed."""
    import difflib  # only for a misspelt name

    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(allowed)}" if allowed else ""


def _depth(data: Any, error: Any) -> int:
    # A missing key lies one level below the mapping that lacks it.
    path, missing = _data_path(data, error["loc"])
    return len(path) + (1 if missing and missing not in path else 0)


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[KeyPath, str | None]:
    """Follow `loc` through the data, skipping pydantic's union-branch tags."""
    path: list[str | int] = []
    current = data
    missing = None
    for part in loc:
        if isinstance(current, dict):
            key = "with" if part == "with_" and "with" in current else part
            if key in current:
                path.append(key)
                current = current[key]
                continue
            if isinstance(part, str) and not _looks_like_tag(part):
                missing = part
                # A missing or unknown key: extra keys are in the data, missing ones are not.
                if part in current:
                    path.append(part)
                break
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            path.append(part)
            current = current[part]
    return tuple(path), missing


def _looks_like_tag(part: str) -> bool:
    return part[:1].isupper() or "[" in part or part in ("str", "int", "float", "bool", "dict", "list")


def _allowed_keys(root: type[BaseModel], path: KeyPath) -> list[str]:
    model: Any = root
    for part in path:
        model = _descend(model, part)
        if model is None:
            return []
    model = _find_model(model)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _descend(annotation: Any, part: str | int) -> Any:
    model = _find_model(annotation)
    if model is not None and isinstance(part, str):
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    # dict[str, X] or list[X]: step into the value type.
    for arg in _union_args(annotation):
        origin = typing.get_origin(arg)
        if origin is dict:
            return typing.get_args(arg)[1]
        if origin is list:
            return typing.get_args(arg)[0]
    return None


def _find_model(annotation: Any) -> type[BaseModel] | None:
    from pydantic import BaseModel  # loaded already: it reported the error

    for arg in _union_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _union_args(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
