"""Field values to prompt text and LM text back to typed values, the way DSPy's adapters do it.

Shared by the ChatAdapter and the JSONAdapter. pydantic and json_repair are imported on first
use, so importing an adapter (which every module does) stays cheap for `dspx --help`/`validate`.
"""

from __future__ import annotations

import enum
import json
import types
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from dspx_cli.core.json_values import jsonable

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = [
    "annotation_allows_none",
    "describe_error",
    "format_field_value",
    "json_schema",
    "parse_value",
    "type_placeholder",
]

_NONE_TYPE = type(None)


@lru_cache(maxsize=256)
def _cached_adapter(annotation: Any) -> TypeAdapter[Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation)


def _type_adapter(annotation: Any) -> TypeAdapter[Any]:
    try:
        return _cached_adapter(annotation)
    except TypeError:  # an unhashable annotation cannot be a cache key
        from pydantic import TypeAdapter

        return TypeAdapter(annotation)


# ----- values to text ----------------------------------------------------------------------------


def format_field_value(annotation: Any, value: Any) -> str:
    """DSPy's rendering of a field value: «» lists for text fields, JSON for containers, else str()."""
    if isinstance(value, list) and annotation is str:
        return _numbered_list(value)
    data = jsonable(value)
    if isinstance(data, dict | list):
        return json.dumps(data, ensure_ascii=False)
    # Strings stay bare: quoting them would change what the LM reads (and, e.g., its length).
    return str(data)


def _numbered_list(items: list[Any]) -> str:
    if not items:
        return "N/A"
    if len(items) == 1:
        return _blob(items[0])
    return "\n".join(f"[{i}] {_blob(item)}" for i, item in enumerate(items, start=1))


def _blob(item: Any) -> str:
    # DSPy assumes text items; str() keeps non-text items from crashing the prompt build.
    text = item if isinstance(item, str) else str(item)
    if "\n" in text or "«" in text or "»" in text:
        indented = text.replace("\n", "\n    ")
        return f"«««\n    {indented}\n»»»"
    return f"«{text}»"


# ----- type notes in the system message ----------------------------------------------------------


def json_schema(annotation: Any) -> dict[str, Any]:
    """pydantic's JSON schema with each "type" key first (DSPy does this for LM readability)."""

    def type_first(node: Any) -> Any:
        if isinstance(node, Mapping):
            ordered = sorted(node.items(), key=lambda item: (item[0] != "type", item[0]))
            return {k: type_first(v) for k, v in ordered}
        if isinstance(node, list):
            return [type_first(v) for v in node]
        return node

    schema: dict[str, Any] = type_first(_type_adapter(annotation).json_schema())
    return schema


def _output_type_note(annotation: Any) -> str:
    if annotation is str:
        return ""
    if annotation is bool:
        return "must be True or False"
    if annotation is int or annotation is float:
        return f"must be a single {annotation.__name__} value"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "must be one of: " + "; ".join(str(member.value) for member in annotation)
    if get_origin(annotation) is Literal:
        # Spelled out so the LM answers with a bare choice, not 'Literal[...]' or a quoted value.
        choices = "; ".join(str(choice) for choice in get_args(annotation))
        return f"must exactly match (no extra characters) one of: {choices}"
    schema = json.dumps(json_schema(annotation), ensure_ascii=False)
    return f"must adhere to the JSON schema: {schema}"


def type_placeholder(name: str, annotation: Any, *, is_input: bool) -> str:
    """`{name}`, plus for typed outputs DSPy's `# note: the value you produce ...` hint."""
    note = "" if is_input else _output_type_note(annotation)
    return f"{{{name}}}" + (" " * 8 + f"# note: the value you produce {note}" if note else "")


# ----- text to values ----------------------------------------------------------------------------


def annotation_allows_none(annotation: Any) -> bool:
    if annotation is None or annotation is _NONE_TYPE:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(annotation_allows_none(arg) for arg in get_args(annotation))
    return False


def _enum_member(annotation: type[enum.Enum], value: Any) -> enum.Enum:
    # Values first: with explicit values, a value may coincide with another member's name.
    for member in annotation:
        if member.value == value:
            return member
    if value in annotation.__members__:
        return annotation[value]
    raise ValueError(f"{value!r} is neither a value nor a name of {annotation.__name__}")


def _literal_choice(value: Any, annotation: Any) -> Any:
    allowed = get_args(annotation)
    if value in allowed:
        return value
    if isinstance(value, str):
        text = value.strip()
        # LMs echo the annotation back ("Literal['yes']") or quote the choice ("'yes'").
        if text.startswith(("Literal[", "str[")) and text.endswith("]"):
            text = text[text.index("[") + 1 : -1]
        if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        if text in allowed:
            return text
    raise ValueError(f"{value!r} is not one of {allowed!r}")


def parse_value(value: Any, annotation: Any) -> Any:
    """Coerce an LM-written value to `annotation` with DSPy's rules (raises on failure)."""
    if annotation is str:
        return str(value)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_member(annotation, value)
    origin = get_origin(annotation)
    if origin is Literal:
        return _literal_choice(value, annotation)
    adapter = _type_adapter(annotation)
    if not isinstance(value, str):
        return adapter.validate_python(value)
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        # Text-or-None fields take the text as written; JSON decoding could turn "42" into an int.
        if _NONE_TYPE in args and str in args:
            return adapter.validate_python(value)

    import ast

    import json_repair

    candidate = json_repair.loads(value)
    # json_repair answers "" when it finds no JSON; Python literals (True, None, 'a') may remain.
    if candidate == "" and value != "":
        try:
            candidate = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            candidate = value
    return adapter.validate_python(candidate)


def describe_error(exc: Exception) -> str:
    """One line saying why a value was rejected (pydantic's multi-line reports condensed)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            details = errors()
        except Exception:  # noqa: BLE001 - the message is then built without the details
            details = None
        if details:
            parts = []
            for detail in details:
                where = ".".join(str(p) for p in detail.get("loc", ()))
                parts.append(f"{where}: {detail.get('msg')}" if where else str(detail.get("msg")))
            return "; ".join(parts)
    return " ".join(str(exc).split()) or type(exc).__name__
