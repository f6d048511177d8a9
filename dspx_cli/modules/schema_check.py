"""Checking a tool argument against its JSON schema, the way DSPy's Tool does with `jsonschema`.

DSPy validates each argument an LM wrote with `jsonschema.validate` before converting it with
pydantic. That check decides what is accepted (JSON types are strict: "3" is not an integer, but
3.0 is) and its message is what the LM reads back ("'3' is not of type 'integer'"). dspx does not
depend on jsonschema, so this module implements the keywords pydantic's schemas use (type, enum,
const, items, prefixItems, properties, required, additionalProperties, anyOf, oneOf, allOf, and
the number, length and pattern bounds) with jsonschema's messages, and picks the reported error
with jsonschema's `best_match` rules. `format` is not checked, as in jsonschema by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["schema_error"]

_WEAK = ("anyOf", "oneOf")


@dataclass
class _Error:
    message: str
    keyword: str
    path: tuple[Any, ...]
    matches_type: bool  # whether the instance has the type its schema names (jsonschema's relevance)
    context: list[_Error] = field(default_factory=list)


def schema_error(instance: Any, schema: Any) -> str | None:
    """jsonschema's message for the best-matching error, or None when `instance` is valid."""
    errors = list(_errors(instance, schema, ()))
    if not errors:
        return None
    best = errors[0]
    for error in errors[1:]:  # max(), the first of equals winning, as jsonschema's best_match
        if _relevance(error) > _relevance(best):
            best = error
    while best.context:
        ranked = sorted(best.context, key=_relevance)
        if len(ranked) >= 2 and _relevance(ranked[0]) == _relevance(ranked[1]):
            break
        best = ranked[0]
    return best.message


def _relevance(error: _Error) -> tuple[Any, ...]:
    # jsonschema's key: shallower errors, then the later sibling (it compares paths), then strong
    # keywords over weak ones, then errors whose instance is not even of the schema's type. Path
    # parts are tagged so an index and a property name never need comparing with each other.
    path = tuple((isinstance(part, str), part) for part in error.path)
    return (-len(error.path), path, error.keyword not in _WEAK, not error.matches_type)


def _is_type(instance: Any, kind: str) -> bool:
    if kind == "integer":
        if isinstance(instance, bool):
            return False
        return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())
    if kind == "number":
        return isinstance(instance, int | float) and not isinstance(instance, bool)
    checks: dict[str, Any] = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}
    return kind in checks and isinstance(instance, checks[kind])


def _matches_type(instance: Any, schema: dict[str, Any]) -> bool:
    expected = schema.get("type")
    if expected is None:
        return False
    kinds = expected if isinstance(expected, list) else [expected]
    return any(_is_type(instance, kind) for kind in kinds)


def _equal(a: Any, b: Any) -> bool:
    """jsonschema's equality: True is not 1, and containers compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _errors(instance: Any, schema: Any, path: tuple[Any, ...]) -> list[_Error]:
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [_Error(f"False schema does not allow {instance!r}", "not", path, False)]
    if not isinstance(schema, dict):
        return []
    found: list[_Error] = []

    def fail(message: str, keyword: str, context: list[_Error] | None = None) -> None:
        found.append(_Error(message, keyword, path, _matches_type(instance, schema), context or []))

    for keyword, value in schema.items():
        if keyword == "type":
            kinds = value if isinstance(value, list) else [value]
            if not any(_is_type(instance, kind) for kind in kinds):
                fail(f"{instance!r} is not of type {', '.join(repr(kind) for kind in kinds)}", keyword)
        elif keyword == "enum":
            if not any(_equal(instance, choice) for choice in value):
                fail(f"{instance!r} is not one of {value!r}", keyword)
        elif keyword == "const":
            if not _equal(instance, value):
                fail(f"{value!r} was expected", keyword)
        elif keyword in ("anyOf", "oneOf"):
            _alternatives(instance, keyword, value, fail)
        elif keyword == "allOf":
            for sub in value:
                found.extend(_errors(instance, sub, path))
        elif isinstance(instance, list):
            found.extend(_array_errors(instance, keyword, value, schema, path, fail))
        elif isinstance(instance, dict):
            found.extend(_object_errors(instance, keyword, value, schema, path, fail))
        elif isinstance(instance, str):
            _string_errors(instance, keyword, value, fail)
        elif _is_type(instance, "number"):
            _number_errors(instance, keyword, value, fail)
    return found


def _alternatives(instance: Any, keyword: str, subschemas: list[Any], fail: Any) -> None:
    context: list[_Error] = []
    for index, sub in enumerate(subschemas):  # noqa: B007 - index is read after the loop
        errors = _errors(instance, sub, ())
        if not errors:
            break
        context.extend(errors)
    else:
        fail(f"{instance!r} is not valid under any of the given schemas", keyword, context)
        return
    if keyword == "oneOf":
        # jsonschema lists the other valid alternatives, then the first one.
        others = [sub for sub in subschemas[index + 1 :] if not _errors(instance, sub, ())]
        if others:
            shown = ", ".join(repr(sub) for sub in [*others, subschemas[index]])
            fail(f"{instance!r} is valid under each of {shown}", keyword)


def _array_errors(
    instance: list[Any], keyword: str, value: Any, schema: dict[str, Any], path: tuple[Any, ...], fail: Any
) -> list[_Error]:
    found: list[_Error] = []
    if keyword == "items":
        prefix = len(schema.get("prefixItems", []))
        if value is False and len(instance) > prefix:
            extra = len(instance) - prefix
            rest = instance[prefix:] if extra != 1 else instance[prefix]
            fail(
                f"Expected at most {prefix} {'item' if prefix == 1 else 'items'} but found {extra} extra: {rest!r}",
                keyword,
            )
        elif value is not False:
            for index in range(prefix, len(instance)):
                found.extend(_errors(instance[index], value, (*path, index)))
    elif keyword == "prefixItems":
        for index, (item, sub) in enumerate(zip(instance, value, strict=False)):
            found.extend(_errors(item, sub, (*path, index)))
    elif keyword == "minItems" and len(instance) < value:
        fail(f"{instance!r} {'should be non-empty' if value == 1 else 'is too short'}", keyword)
    elif keyword == "maxItems" and len(instance) > value:
        fail(f"{instance!r} {'is expected to be empty' if value == 0 else 'is too long'}", keyword)
    return found


def _object_errors(
    instance: dict[str, Any], keyword: str, value: Any, schema: dict[str, Any], path: tuple[Any, ...], fail: Any
) -> list[_Error]:
    found: list[_Error] = []
    if keyword == "properties":
        for name, sub in value.items():
            if name in instance:
                found.extend(_errors(instance[name], sub, (*path, name)))
    elif keyword == "required":
        for name in value:
            if name not in instance:
                fail(f"{name!r} is a required property", keyword)
    elif keyword == "additionalProperties":
        extras = [name for name in instance if name not in schema.get("properties", {})]
        if isinstance(value, dict):
            for name in extras:
                found.extend(_errors(instance[name], value, (*path, name)))
        elif not value and extras:
            shown = ", ".join(repr(name) for name in sorted(extras, key=str))
            fail(
                f"Additional properties are not allowed ({shown} {'was' if len(extras) == 1 else 'were'} unexpected)",
                keyword,
            )
    return found


def _string_errors(instance: str, keyword: str, value: Any, fail: Any) -> None:
    if keyword == "minLength" and len(instance) < value:
        fail(f"{instance!r} {'should be non-empty' if value == 1 else 'is too short'}", keyword)
    elif keyword == "maxLength" and len(instance) > value:
        fail(f"{instance!r} {'is expected to be empty' if value == 0 else 'is too long'}", keyword)
    elif keyword == "pattern" and re.search(value, instance) is None:
        fail(f"{instance!r} does not match {value!r}", keyword)


def _number_errors(instance: float, keyword: str, value: Any, fail: Any) -> None:
    if keyword == "minimum" and instance < value:
        fail(f"{instance!r} is less than the minimum of {value!r}", keyword)
    elif keyword == "maximum" and instance > value:
        fail(f"{instance!r} is greater than the maximum of {value!r}", keyword)
    elif keyword == "exclusiveMinimum" and instance <= value:
        fail(f"{instance!r} is less than or equal to the minimum of {value!r}", keyword)
    elif keyword == "exclusiveMaximum" and instance >= value:
        fail(f"{instance!r} is greater than or equal to the maximum of {value!r}", keyword)
