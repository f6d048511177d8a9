"""The pydantic side of core/spec_model.py: a SpecModel's mirror, and dataclasses checked the same way.

`pydantic_model(cls)` builds, once per class, the pydantic model with the SpecModel's fields,
defaults, bounds, aliases, validators, extra-key rule, name and docstring. It checks every value the
fast check could not vouch for (pydantic's error or coerced values are the answer), and `dspx
schema` reads it. Imported only then: a valid program file never loads this module or pydantic.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any

from dspx_cli.core.spec_model import _CONSTRAINTS, _MISSING, SpecModel, SpecValidationError, _check, _Unsure

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["from_mirror", "pydantic_model", "validate_dataclass"]

_MIRRORS: dict[type[SpecModel], type[BaseModel]] = {}
_MIRRORED: dict[type[BaseModel], type[SpecModel]] = {}


def pydantic_model(cls: type[SpecModel]) -> type[BaseModel]:
    """The pydantic model with `cls`'s fields, defaults, bounds, aliases, validators, extra-key
    rule, name and docstring: what checks a value the fast check could not vouch for, and what
    `dspx schema` reads."""
    mirror = _MIRRORS.get(cls)
    if mirror is not None:
        return mirror
    from pydantic import ConfigDict, create_model
    from pydantic import Field as PydanticField
    from pydantic import field_validator as pydantic_validator

    definitions: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        options: dict[str, Any] = {key: getattr(info, key) for key in _CONSTRAINTS if getattr(info, key) is not None}
        if info.alias:
            options["alias"] = info.alias
        if info.description is not None:
            options["description"] = info.description
        if not info.repr:
            options["repr"] = False
        if info.default_factory is not None:
            options["default_factory"] = info.default_factory
        elif info.default is not _MISSING:
            options["default"] = info.default
        definitions[name] = (_mirrored(info.annotation), PydanticField(**options))
    hooks = {
        f"_hook_{index}": pydantic_validator(*hook.fields, mode=hook.mode)(hook.func)
        for index, hook in enumerate(cls._spec_validators)
    }
    mirror = create_model(
        cls.__name__,
        __config__=ConfigDict(extra=cls._spec_extra, populate_by_name=True),
        __doc__=cls.__doc__,
        __module__=cls.__module__,
        __validators__=hooks,
        **definitions,
    )
    _MIRRORS[cls] = mirror
    _MIRRORED[mirror] = cls
    return mirror


def _mirrored(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        return pydantic_model(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[tuple(_mirrored(arg) for arg in args)]  # noqa: UP007 - built from a tuple
    if origin is dict:
        return dict.__class_getitem__((args[0], _mirrored(args[1])))
    if origin is list:
        return list.__class_getitem__(_mirrored(args[0]))
    return annotation


def from_mirror(checked: BaseModel) -> Any:
    """The SpecModel a mirror's instance stands for, with pydantic's (coerced) values."""
    cls = _MIRRORED[type(checked)]
    built = cls.__new__(cls)
    built.__dict__.update({name: _unmirrored(getattr(checked, name)) for name in cls.model_fields})
    built.__dict__["model_fields_set"] = set(checked.model_fields_set)
    extra = checked.model_extra
    built.__dict__["model_extra"] = {k: _unmirrored(v) for k, v in extra.items()} if extra is not None else None
    return built


def _unmirrored(value: Any) -> Any:
    if type(value) in _MIRRORED:
        return from_mirror(value)
    if type(value) is dict:
        return {k: _unmirrored(v) for k, v in value.items()}
    if type(value) is list:
        return [_unmirrored(v) for v in value]
    return value


def validate_dataclass(cls: type[Any], data: dict[str, Any]) -> Any:
    """A dataclass from `data`, as pydantic's TypeAdapter makes it (the same fast check first);
    SpecValidationError when it is not valid."""
    try:
        hints = typing.get_type_hints(cls)
        known = {field.name for field in dataclasses.fields(cls)}
        if type(data) is dict and all(key in known for key in data):
            return cls(**{key: _check(value, hints[key]) for key, value in data.items()})
    except _Unsure:
        pass
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise SpecValidationError(exc, cls) from None
