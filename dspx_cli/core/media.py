"""DSPy's two non-text input types, `History` and `Image`, as names a signature can use.

They are marker classes: a field annotated with one is formatted by the adapters in DSPy's way
(past turns as user/assistant pairs; an image as a content part) rather than as text. The values
stay plain JSON, so examples, caches and traces need nothing new:

- History: `{"messages": [{field: value, ...}, ...]}`, each message holding some of the
  signature's input and output fields, or a bare list of messages. `history_value` owns that
  rule: every place a History value enters (-i, --batch rows, dataset rows, demos, the adapters)
  calls it, so they accept the same shapes and refuse the others with the same message.
- Image: a string, an http(s)/gs URL or a `data:` URI. A local file path is read into a data URI
  by the input layer (program/media_inputs.py), which knows where the path came from.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

__all__ = [
    "MEDIA_TYPES",
    "History",
    "Image",
    "contains_media",
    "history_field",
    "history_value",
    "is_image",
    "media_annotation",
]


class History:
    """Marker: an input holding the conversation so far (DSPy's `dspy.History`)."""


class Image:
    """Marker: an input holding one image, sent as an `image_url` content part (DSPy's `dspy.Image`)."""


MEDIA_TYPES: dict[str, type] = {"History": History, "Image": Image}


def media_annotation(annotation: Any) -> type | None:
    """History or Image when the annotation is one of them, or `Optional[...]` of one, else None."""
    if annotation in (History, Image):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1 and rest[0] in (History, Image):
            return rest[0]
    return None


def is_image(annotation: Any) -> bool:
    return media_annotation(annotation) is Image


def contains_media(annotation: Any) -> bool:
    """Whether History or Image appears anywhere inside the annotation."""
    if annotation in (History, Image):
        return True
    return any(contains_media(arg) for arg in get_args(annotation))


def history_field(names_and_annotations: Any) -> str | None:
    """The first input whose annotation is exactly History: DSPy's rule (`annotation == History`)."""
    for name, annotation in names_and_annotations:
        if annotation is History:
            return str(name)
    return None


def history_value(value: Any) -> dict[str, list[dict[str, Any]]]:
    """A History value as `{"messages": [...]}`, or ValueError saying what is wrong with it.

    DSPy's `History` is a pydantic model with one field, `messages: list[dict]`, and no other keys
    (extra="forbid"); a bare list of messages is accepted too (JSON users write that)."""
    if isinstance(value, Mapping):
        if set(value) != {"messages"}:
            got = f"the key(s) {', '.join(map(str, value))}" if value else "an empty object"
            raise ValueError(f'expected a History {{"messages": [...]}}, got {got}')
        messages = value["messages"]
        if not isinstance(messages, list):
            raise ValueError(f'expected "messages" to be a list of messages, got {_kind(messages)}')
    elif isinstance(value, list):
        messages = value
    else:
        raise ValueError(f'expected a History {{"messages": [...]}} or a list of messages, got {_kind(value)}')
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(
                f"expected each History message to be an object of field values, got {_kind(message)} at [{index}]"
            )
    return {"messages": [dict(message) for message in messages]}


def _kind(value: Any) -> str:
    """The JSON name of a value's type, as the user wrote it."""
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), "an object" if isinstance(value, Mapping) else f"a {type(value).__name__}")
