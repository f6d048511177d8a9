"""Values as JSON data, and JSON types named for messages: one definition for every layer.

`jsonable` is what prompts (DSPy's `serialize_for_json`: pydantic's JSON mode), compiled state
(demos with pydantic values dumped) and output records (`run --json`, batch lines) need alike:
containers become dicts with text keys and lists, pydantic models and dates their JSON form, and
anything pydantic cannot serialize its `str()`, item by item, so one odd value never hides the rest.
"""

from __future__ import annotations

from typing import Any

__all__ = ["json_kind", "jsonable"]


def jsonable(value: Any) -> Any:
    """`value` as JSON data (dict, list, str, int, float, bool, None)."""
    if type(value) is str:  # the common case in prompts, without a trip through pydantic
        return value
    # Imported here: core is imported by every command, and pydantic only by those that run programs.
    import pydantic_core

    try:
        return pydantic_core.to_jsonable_python(value, fallback=str)
    except Exception:  # noqa: BLE001 - e.g. a container that holds itself
        return str(value)


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value, as error messages name it ("got a list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    return "an object"
