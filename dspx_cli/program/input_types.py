"""Does a value given for an input fit the field's declared type?

Program files name types from a closed vocabulary (core/types.py), so the check walks that
vocabulary directly rather than building a pydantic model per field. It is strict where a
mistake would silently change the prompt (3.5 for `int`, a bare string for `list[str]`, `true`
for `int`) and lenient where JSON cannot say more (an array for `tuple` or `set`, an object's
string keys for `dict[int, V]` when they read as that type). Values are not converted: the
prompt shows what was given, as DSPy does with a module's keyword arguments.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Union

from dspx_cli.core import annotation_name
from dspx_cli.core.media import History, Image, history_value

__all__ = ["allows_none", "takes_text", "type_mismatch"]

_NONE = type(None)


def allows_none(annotation: Any) -> bool:
    """`Optional[T]`, `T | None` and `None` (not `Any`): DSPy's test for an input that may be omitted."""
    if annotation is None or annotation is _NONE:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(allows_none(arg) for arg in typing.get_args(annotation))
    return False


def takes_text(annotation: Any) -> bool:
    """Whether some plain text fits: `str`, `Any`, a Literal with a string choice, a union of one."""
    if annotation is str or annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return any(isinstance(choice, str) for choice in args)
    if origin in (Union, types.UnionType):
        return any(takes_text(arg) for arg in args)
    return False


def type_mismatch(value: Any, annotation: Any) -> str | None:
    """None when `value` fits `annotation`, else a short reason: `3.5 is not an int`,
    `item [1]: 3 is not a str`."""
    if annotation is Any or annotation is object:
        return None
    if annotation is Image:  # a path, URL or data URI; program/media_inputs.py checks the rest
        ok = isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("url"), str))
        return None if ok else f"{_show(value)} is not an image path, URL or data: URI"
    if annotation is History:  # core/media.py owns the rule, for every way a History value comes in
        try:
            history_value(value)
        except ValueError as exc:
            return str(exc)
        return None
    if annotation is None or annotation is _NONE:
        return None if value is None else f"{_show(value)} is not None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        reasons = [type_mismatch(value, arg) for arg in args]
        if any(reason is None for reason in reasons):
            return None
        return f"{_show(value)} is none of {', '.join(annotation_name(arg) for arg in args)}"
    if origin is Literal:
        # `==` alone would let True match 1; the type must agree too.
        if any(value == choice and type(value) is type(choice) for choice in args):
            return None
        return f"{_show(value)} is not one of {', '.join(_show(choice) for choice in args)}"
    if origin is not None:
        return _container_mismatch(value, origin, args)
    if isinstance(annotation, type) and hasattr(annotation, "model_validate"):
        return _object_mismatch(value, annotation)
    if isinstance(annotation, type):
        return _scalar_mismatch(value, annotation)
    return None  # a type outside the vocabulary: nothing to check against


def _object_mismatch(value: Any, model: Any) -> str | None:
    """A declared object type (`types:`, a pydantic model): the value must validate against it."""
    if not isinstance(value, dict | model):
        return f"{_show(value)} is not {_article(annotation_name(model))} object"
    try:
        model.model_validate(value)
    except ValueError as exc:  # pydantic's ValidationError
        from dspx_cli.adapters.values import describe_error

        return describe_error(exc)
    return None


def _scalar_mismatch(value: Any, expected: type) -> str | None:
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif expected in (list, tuple, set):
        ok = isinstance(value, list | tuple | set)
    else:
        ok = isinstance(value, expected)
    return None if ok else f"{_show(value)} is not {_article(annotation_name(expected))}"


def _container_mismatch(value: Any, origin: Any, args: tuple[Any, ...]) -> str | None:
    if origin is dict:
        if not isinstance(value, dict):
            return f"{_show(value)} is not a dict"
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        for key, item in value.items():
            if type_mismatch(key, key_type) is not None and not _reads_as(key, key_type):
                return f"key {_show(key)} is not {_article(annotation_name(key_type))}"
            reason = type_mismatch(item, value_type)
            if reason is not None:
                return f"key {_show(key)}: {reason}"
        return None
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, list | tuple | set | frozenset):
            return f"{_show(value)} is not a {origin.__name__}"
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                return f"{len(items)} items where the tuple has {len(args)}"
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(items)
        for index, (item, item_type) in enumerate(zip(items, item_types, strict=True)):
            reason = type_mismatch(item, item_type)
            if reason is not None:
                return f"item [{index}]: {reason}"
        return None
    return None


def _reads_as(key: Any, key_type: Any) -> bool:
    """JSON object keys are always strings; `{"1": ...}` is a fair `dict[int, ...]`."""
    if not isinstance(key, str):
        return False
    try:
        return type_mismatch(json.loads(key), key_type) is None
    except (ValueError, RecursionError):
        return False


def _article(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value)  # quoted, so the string '3' reads apart from the number 3
        return text if len(text) <= 40 else text[:37] + "..."
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
