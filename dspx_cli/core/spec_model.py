"""Models of the program file's keys, checked without pydantic when the file is valid.

A `SpecModel` subclass is written like a pydantic model (annotated fields, `Field(...)`,
`field_validator`) and behaves like one for the code that reads it (attributes, `model_dump`,
`model_fields`, `model_extra`, `model_fields_set`, `model_validate`). What differs is who checks
the data: importing pydantic and building its validators costs more than everything else
`dspx validate` does (~90 ms of a ~170 ms process), yet almost every file it reads is valid.

So a value is checked twice over, by two checkers with one meaning:
- the fast check here accepts only what is exactly right (a str where a str is declared, an int
  for an int, a mapping with known keys, ...) and builds the object directly;
- anything else (a mistake, or a value pydantic would coerce, such as "8" for an int) goes to a
  pydantic model mirrored from the same declarations (core/spec_mirror.py), which gives the
  error pydantic always gave or the coerced values. pydantic remains the arbiter: the fast check
  only ever answers "certainly valid, and these are the values pydantic would produce".

`dspx schema` reads the mirrors too, so the JSON Schema is pydantic's, as before.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["Field", "FieldInfo", "SpecModel", "SpecValidationError", "field_validator", "is_spec_model"]

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
_CONSTRAINTS = ("ge", "gt", "le", "lt", "min_length")


class FieldInfo:
    """One declared key: what pydantic's FieldInfo says about it, for the code that reads models."""

    __slots__ = ("alias", "annotation", "default", "default_factory", "description", "name", "repr", *_CONSTRAINTS)

    def __init__(
        self,
        default: Any = _MISSING,
        *,
        default_factory: Callable[[], Any] | None = None,
        alias: str | None = None,
        description: str | None = None,
        repr: bool = True,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        min_length: int | None = None,
    ) -> None:
        self.name = ""
        self.annotation: Any = Any
        if isinstance(default, (list, dict, set)):
            # One object would be shared by every instance (pydantic copies it): use default_factory.
            raise TypeError(f"a mutable default ({type(default).__name__}) needs default_factory")
        self.default = default
        self.default_factory = default_factory
        self.alias = alias
        self.description = description
        self.repr = repr
        self.ge, self.gt, self.le, self.lt, self.min_length = ge, gt, le, lt, min_length

    def is_required(self) -> bool:
        return self.default is _MISSING and self.default_factory is None

    def get_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def Field(default: Any = _MISSING, **options: Any) -> Any:
    """A key's default, alias, bounds and description: FieldInfo's arguments (pydantic.Field's
    that dspx uses). Typed as Any, as pydantic's is, so `x: int = Field(default=3)` type-checks."""
    return FieldInfo(default, **options)


Mode = Literal["before", "wrap", "after"]
Extra = Literal["forbid", "allow", "ignore"]


class _Validator:
    """A function run on named keys, called as pydantic calls field validators: `(cls, value)`,
    or `(cls, value, handler)` in wrap mode, so the mirror takes the same function."""

    __slots__ = ("fields", "func", "mode")

    def __init__(self, fields: tuple[str, ...], mode: Mode, func: Callable[..., Any]) -> None:
        self.fields, self.mode, self.func = fields, mode, func


def field_validator(*fields: str, mode: Mode = "after") -> Callable[[Any], Any]:
    def declare(func: Any) -> Any:
        return _Validator(fields, mode, getattr(func, "__func__", func))  # a classmethod's function

    return declare


class SpecValidationError(ValueError):
    """The data is not valid: pydantic's ValidationError from the mirror, and the mirror itself
    (program/diagnostics.py locates the error by walking it)."""

    def __init__(self, error: ValidationError, model: type[Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.model = model

    def errors(self) -> list[Any]:
        return list(self.error.errors())


class _Unsure(Exception):
    """The fast check cannot vouch for a value: pydantic decides."""


class _ClassProperty:
    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __get__(self, instance: Any, owner: type) -> Any:
        return self.func(owner)


class SpecModel:
    """A model of program-file keys (module docstring). Unknown keys, as a class keyword (inherited):
    `extra="forbid"` makes them errors, `"allow"` keeps them in `model_extra`, `"ignore"` drops them."""

    _spec_extra: ClassVar[Extra] = "ignore"
    _spec_validators: ClassVar[tuple[_Validator, ...]] = ()
    _spec_declared: ClassVar[dict[str, FieldInfo]] = {}

    if TYPE_CHECKING:
        model_extra: dict[str, Any] | None
        model_fields_set: set[str]

    def __init_subclass__(cls, *, extra: Extra | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if extra is not None:
            cls._spec_extra = extra
        declared: dict[str, FieldInfo] = {}
        validators: list[_Validator] = []
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, SpecModel):
                declared.update(base.__dict__.get("_spec_declared", {}))
                validators.extend(base.__dict__.get("_spec_validators", ()))
        for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063 - `inspect` costs start-up
            if name.startswith("_"):
                continue
            value = cls.__dict__.get(name, _MISSING)
            info = value if isinstance(value, FieldInfo) else FieldInfo(value)
            info.name = name
            declared[name] = info
            if value is not _MISSING:
                delattr(cls, name)  # an instance's own value is read, never the declaration
        for name, value in list(cls.__dict__.items()):
            if isinstance(value, _Validator):
                validators.append(value)
                delattr(cls, name)
        cls._spec_declared = declared
        cls._spec_validators = tuple(validators)

    if TYPE_CHECKING:
        model_fields: ClassVar[dict[str, FieldInfo]]
        model_config: ClassVar[dict[str, Any]]
    else:

        @_ClassProperty
        def model_config(cls) -> dict[str, Any]:
            """What pydantic's config would say of the keys: `{"extra": ...}`."""
            return {"extra": cls._spec_extra}

        @_ClassProperty
        def model_fields(cls) -> dict[str, FieldInfo]:
            """The fields, their annotations evaluated (on first use: a file with postponed
            annotations names types defined after the class)."""
            if "_spec_resolved" not in cls.__dict__:
                hints = typing.get_type_hints(cls)
                for name, info in cls._spec_declared.items():
                    info.annotation = hints.get(name, Any)
                cls._spec_resolved = True
            return cls._spec_declared

    # --- building ----------------------------------------------------------------------------

    def __init__(self, **data: Any) -> None:
        self.__dict__.update(type(self).model_validate(data).__dict__)

    @classmethod
    def model_validate(cls, data: Any) -> typing.Self:
        """Check `data` (a mapping, as a program file gives) and build the model; raises
        SpecValidationError with pydantic's account of what is wrong."""
        if isinstance(data, cls):
            return data
        try:
            return cls._checked(data)
        except _Unsure:
            pass
        from pydantic import ValidationError

        from dspx_cli.core.spec_mirror import from_mirror, pydantic_model

        mirror = pydantic_model(cls)
        try:
            checked = mirror.model_validate(data)
        except ValidationError as exc:
            raise SpecValidationError(exc, mirror) from None
        built: typing.Self = from_mirror(checked)
        return built

    @classmethod
    def _checked(cls, data: Any) -> typing.Self:
        if type(data) is not dict:
            raise _Unsure
        fields = cls.model_fields
        by_key = _keys(cls)
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            name = by_key.get(key)
            if name is None:
                if type(key) is not str or cls._spec_extra != "allow":
                    raise _Unsure  # unknown keys: pydantic's message (and its `ignore` rule)
                extra[key] = value
            elif name in values:
                raise _Unsure  # a key given both by its name and its alias
            else:
                values[name] = _field_value(cls, fields[name], value)
        for name, info in fields.items():
            if name not in values and info.is_required():
                raise _Unsure
        built = cls.__new__(cls)
        built.__dict__.update(
            {name: values[name] if name in values else info.get_default() for name, info in fields.items()}
        )
        built.__dict__["model_fields_set"] = set(values) | set(extra)  # pydantic counts kept extras
        built.__dict__["model_extra"] = extra if cls._spec_extra == "allow" else None
        return built

    # --- reading -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Kept extra keys read as attributes, as pydantic's do.
        extra = self.__dict__.get("model_extra")
        if extra and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def model_dump(self, *, mode: Literal["python", "json"] = "python", by_alias: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            key = info.alias if by_alias and info.alias else name
            data[key] = _dump(self.__dict__[name], mode, by_alias)
        for key, value in (self.__dict__.get("model_extra") or {}).items():
            data[key] = _dump(value, mode, by_alias)
        return data

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names = type(self).model_fields
        mine, theirs = self.__dict__, other.__dict__
        return all(mine[n] == theirs[n] for n in names) and mine.get("model_extra") == theirs.get("model_extra")

    __hash__ = None  # type: ignore[assignment] # mutable, like pydantic's models

    def __repr__(self) -> str:
        shown = [f"{n}={self.__dict__[n]!r}" for n, info in type(self).model_fields.items() if info.repr]
        shown += [f"{k}={v!r}" for k, v in (self.__dict__.get("model_extra") or {}).items()]
        return f"{type(self).__name__}({', '.join(shown)})"


def _keys(cls: type[SpecModel]) -> dict[Any, str]:
    """Every key a mapping may use for a field: its name and its alias (populate_by_name)."""
    keys = cls.__dict__.get("_spec_keys")
    if keys is None:
        keys = {}
        for name, info in cls.model_fields.items():
            keys[name] = name
            if info.alias:
                keys[info.alias] = name
        cls._spec_keys = keys  # type: ignore[attr-defined]
    return keys


def _field_value(cls: type[SpecModel], info: FieldInfo, value: Any) -> Any:
    hooks = [v for v in cls._spec_validators if info.name in v.fields]
    for hook in reversed([h for h in hooks if h.mode == "before"]):
        value = _run(hook.func, cls, value)
    wraps = [h for h in hooks if h.mode == "wrap"]
    if wraps:
        (wrap,) = wraps  # dspx declares at most one per key

        def handler(raw: Any) -> Any:
            return _constrained(raw, info)

        value = _run(wrap.func, cls, value, handler)
    else:
        value = _constrained(value, info)
    for hook in (h for h in hooks if h.mode == "after"):
        value = _run(hook.func, cls, value)
    return value


def _run(func: Callable[..., Any], *args: Any) -> Any:
    try:
        return func(*args)
    except _Unsure:
        raise
    except Exception:  # noqa: BLE001 - a validator's complaint, whatever it is: pydantic words it
        raise _Unsure from None


def _constrained(value: Any, info: FieldInfo) -> Any:
    value = _check(value, info.annotation)
    if value is None:
        return value
    if info.min_length is not None and (not hasattr(value, "__len__") or len(value) < info.min_length):
        raise _Unsure
    bounds = (info.ge, info.gt, info.le, info.lt)
    if bounds != (None, None, None, None):
        if not isinstance(value, (int, float)):
            raise _Unsure
        if (
            (info.ge is not None and not value >= info.ge)
            or (info.gt is not None and not value > info.gt)
            or (info.le is not None and not value <= info.le)
            or (info.lt is not None and not value < info.lt)
        ):
            raise _Unsure
    return value


def _check(value: Any, annotation: Any) -> Any:
    """`value` if it is exactly of `annotation` (a float for an int widened, as pydantic does),
    else _Unsure."""
    kind = type(value)
    if annotation is Any:
        return value
    if annotation is str:
        if kind is str:
            return value
    elif annotation is int:
        if kind is int:
            return value
    elif annotation is float:
        if kind is float:
            return value
        if kind is int:
            try:
                return float(value)
            except OverflowError:  # an int of hundreds of digits: pydantic's error
                raise _Unsure from None
    elif annotation is bool:
        if kind is bool:
            return value
    elif annotation is type(None) or annotation is None:
        if value is None:
            return value
    elif isinstance(annotation, type) and issubclass(annotation, SpecModel):
        # Only mappings: the mirror takes no SpecModel object, so accepting one here would make the
        # answer depend on whether another key sent the data to pydantic.
        return annotation._checked(value)
    else:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            for member in typing.get_args(annotation):
                try:
                    return _check(value, member)
                except _Unsure:
                    continue
        elif origin is Literal:
            for choice in typing.get_args(annotation):
                if type(choice) is kind and choice == value:
                    return value
        elif origin is dict and kind is dict:
            key_type, value_type = typing.get_args(annotation)
            return {_check(k, key_type): _check(v, value_type) for k, v in value.items()}
        elif origin is list and kind is list:
            (item_type,) = typing.get_args(annotation)
            return [_check(item, item_type) for item in value]
    raise _Unsure


def _dump(value: Any, mode: str, by_alias: bool) -> Any:
    if isinstance(value, SpecModel):
        return value.model_dump(mode=mode, by_alias=by_alias)  # type: ignore[arg-type]
    if type(value) is dict:
        return {k: _dump(v, mode, by_alias) for k, v in value.items()}
    if type(value) is list or (mode == "json" and type(value) is tuple):
        return [_dump(v, mode, by_alias) for v in value]
    return value


def is_spec_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, SpecModel)
