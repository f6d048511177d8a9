"""A program's own object types (its `types:` section) as pydantic models.

DSPy users write pydantic classes for structured fields; a program file declares the same thing
as data (field name -> type string, description, optional) and dspx makes each one a model with
`pydantic.create_model`, so prompts show the JSON schema DSPy shows for such a class and replies
are validated the same way. Models are built when a program with a `types:` section is loaded,
never on import: pydantic is imported inside `build_object_types`.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from dspx_cli.core.types import parse_type
from dspx_cli.errors import SignatureError

__all__ = ["ObjectTypeError", "build_object_types"]


class ObjectTypeError(SignatureError):
    """A declared type is wrong; `path` is where, under `types:` (type name, field name, key)."""

    def __init__(self, message: str, path: tuple[str, ...]) -> None:
        super().__init__(message)
        self.path = path


def _field_entry(type_name: str, field_name: str, entry: Any) -> tuple[str, str, bool, tuple[str, ...]]:
    """(type text, description, optional, path of the type text) of one declared field."""
    path: tuple[str, ...] = (type_name, field_name)
    if entry is None:
        return "str", "", False, path
    if isinstance(entry, str):
        return entry, "", False, path
    if not isinstance(entry, Mapping):
        raise ObjectTypeError(f'field "{field_name}" of {type_name}: expected a type or {{type, desc, optional}}', path)
    type_text = entry.get("type", "str")
    return type_text, entry.get("desc") or "", bool(entry.get("optional")), (*path, "type") if "type" in entry else path


class _Resolver(Mapping[str, Any]):
    """Declared names to models, each built on first lookup, so a field may name a type declared
    later in the file; a type reached again while it is being built is a cycle."""

    def __init__(self, section: Mapping[str, Mapping[str, Any]]) -> None:
        self._section = section
        self._built: dict[str, Any] = {}
        self._building: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return iter(self._section)

    def __len__(self) -> int:
        return len(self._section)

    def __getitem__(self, name: str) -> Any:
        if name in self._built:
            return self._built[name]
        if name not in self._section:
            raise KeyError(name)
        if name in self._building:
            cycle = " -> ".join([*self._building[self._building.index(name) :], name])
            # Reported where the cycle closes: the field of the last type being built.
            raise ObjectTypeError(f"types refer to each other in a cycle ({cycle})", self._closing_path)
        self._building.append(name)
        try:
            self._built[name] = self._build(name)
        finally:
            self._building.pop()
        return self._built[name]

    def _build(self, type_name: str) -> Any:
        import pydantic

        fields: dict[str, Any] = {}
        for field_name, entry in self._section[type_name].items():
            if not isinstance(field_name, str) or not field_name.isidentifier() or keyword.iskeyword(field_name):
                raise ObjectTypeError(f"field name {field_name!r} of {type_name}: expected an identifier", (type_name,))
            if field_name.startswith(("_", "model_")):
                # pydantic keeps `_x` private and reserves `model_*`: the schema would silently lose them.
                raise ObjectTypeError(
                    f'field "{field_name}" of {type_name}: names starting with "_" or "model_" are reserved',
                    (type_name, field_name),
                )
            type_text, desc, optional, path = _field_entry(type_name, field_name, entry)
            self._closing_path = path
            try:
                annotation = parse_type(type_text, self)
            except ObjectTypeError:
                raise
            except SignatureError as exc:
                raise ObjectTypeError(f'field "{field_name}" of {type_name}: {exc}', path) from None
            # No description at all (not "") when none is given: pydantic would print an empty one.
            description = desc or None
            if optional:
                # Like `x: Optional[T] = None` in a pydantic class: the LM may leave it out.
                fields[field_name] = (Optional[annotation], pydantic.Field(default=None, description=description))  # noqa: UP045
            else:
                fields[field_name] = (annotation, pydantic.Field(description=description))
        try:
            return pydantic.create_model(type_name, **fields)
        except Exception as exc:  # noqa: BLE001 - any refusal is a mistake in the declaration
            raise ObjectTypeError(f"type {type_name}: {' '.join(str(exc).split())}", (type_name,)) from None

    _closing_path: tuple[str, ...] = ()


def build_object_types(section: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each declared type's pydantic model, by name; raises ObjectTypeError (with its path)."""
    for name, fields in section.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ObjectTypeError(f"type name {name!r}: expected an identifier such as Order", (str(name),))
        if _is_builtin(name):
            raise ObjectTypeError(f"type name {name!r} is a built-in type; choose another name", (name,))
        if not isinstance(fields, Mapping) or not fields:
            raise ObjectTypeError(f"type {name}: expected a mapping of field name to type, with at least one", (name,))
    resolver = _Resolver(section)
    return {name: resolver[name] for name in section}


def _is_builtin(name: str) -> bool:
    if name in ("Optional", "Union", "Literal"):
        return True
    try:
        parse_type(name)
    except SignatureError:
        return False
    return True
