"""Example, Prediction and Completions: records with DSPy's semantics.

An Example is one data row (inputs and labels); a Prediction is what a module returns (its output
fields, every sampled completion, and the LM usage that produced it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Completions", "Example", "Prediction"]


class Example:
    """A record with attribute and item access; `with_inputs` marks which keys are inputs."""

    _store: dict[str, Any]
    _input_keys: tuple[str, ...] | None

    def __init__(self, base: Mapping[str, Any] | Example | None = None, **fields: Any) -> None:
        if isinstance(base, Example):
            store = dict(base._store)
        elif base is not None:
            store = dict(base)
        else:
            store = {}
        store.update(fields)
        # Straight into the instance dict: records are made several times per example, and
        # __setattr__ would route each private name through its field checks.
        self.__dict__.update(_store=store, _input_keys=None)

    # ----- access --------------------------------------------------------------------------------

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails; dunder probes (copy, pickle) must not hit the store.
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        store = self.__dict__.get("_store", {})
        if key in store:
            return store[key]
        raise AttributeError(f"{type(self).__name__} has no field {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        # Private names and class attributes (methods, properties like Prediction.usage) are real
        # attributes; everything else is a field, as in DSPy.
        if key.startswith("_") or hasattr(type(self), key):
            object.__setattr__(self, key, value)
        else:
            self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._store))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store

    def __hash__(self) -> int:
        # DSPy hashes the items; values such as lists are unhashable, so fall back to their repr.
        try:
            return hash(tuple(self._store.items()))
        except TypeError:
            return hash(tuple((k, repr(v)) for k, v in self._store.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._store}) (input_keys={self._input_keys})"

    def keys(self) -> list[str]:
        return list(self._store)

    def values(self) -> list[Any]:
        return list(self._store.values())

    def items(self) -> list[tuple[str, Any]]:
        return list(self._store.items())

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    # ----- inputs and labels ---------------------------------------------------------------------

    @property
    def input_keys(self) -> tuple[str, ...] | None:
        return self._input_keys

    def with_inputs(self, *keys: str) -> Example:
        copied = self.copy()
        copied._input_keys = tuple(dict.fromkeys(keys))
        return copied

    def inputs(self) -> Example:
        if self._input_keys is None:
            raise ValueError("this example has no input keys; call example.with_inputs(...) first")
        selected = type(self)({k: v for k, v in self._store.items() if k in self._input_keys})
        selected._input_keys = self._input_keys
        return selected

    def labels(self) -> Example:
        if self._input_keys is None:
            raise ValueError("this example has no input keys; call example.with_inputs(...) first")
        input_keys = self._input_keys
        return type(self)({k: v for k, v in self._store.items() if k not in input_keys})

    # ----- copies --------------------------------------------------------------------------------

    def copy(self, **updates: Any) -> Example:
        copied = type(self)(self, **updates)
        # Unlike DSPy, a copy keeps the input keys: `example.copy(answer=...)` is still an example
        # with the same inputs.
        copied._input_keys = self._input_keys
        return copied

    def without(self, *keys: str) -> Example:
        copied = self.copy()
        for key in keys:
            copied._store.pop(key, None)
        return copied

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, nested records and pydantic models converted too (JSON-friendly)."""
        return {k: _plain(v) for k, v in self._store.items()}

    toDict = to_dict  # DSPy's spelling, for metric code written against DSPy


def _plain(value: Any) -> Any:
    if isinstance(value, Example):
        return value.to_dict()
    if hasattr(value, "model_dump"):  # pydantic models, without importing pydantic here
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Prediction(Example):
    """A module's outputs: the first completion's fields, plus all `completions` and LM `usage`."""

    _completions: Completions | None
    _usage: Any

    def __init__(self, base: Mapping[str, Any] | Example | None = None, **fields: Any) -> None:
        super().__init__(base, **fields)
        self.__dict__.update(_completions=None, _usage=None)

    @classmethod
    def from_completions(cls, completions: Sequence[Mapping[str, Any]] | Mapping[str, list[Any]]) -> Prediction:
        prediction = cls()
        columns = Completions(completions)
        prediction.__dict__.update(_completions=columns, _store={k: v[0] for k, v in columns.items() if v})
        return prediction

    @property
    def completions(self) -> Completions:
        if self._completions is None:
            # A Prediction built from fields is its own single completion.
            return Completions([dict(self._store)])
        return self._completions

    @property
    def usage(self) -> Any:
        """Token usage of the LM call(s) behind this prediction; set by the module layer."""
        return self._usage

    @usage.setter
    def usage(self, value: Any) -> None:
        self._usage = value

    def __repr__(self) -> str:
        fields = ",\n    ".join(f"{k}={v!r}" for k, v in self._store.items())
        extra = len(self._completions) - 1 if self._completions is not None else 0
        if extra <= 0:
            return f"Prediction(\n    {fields}\n)"
        return f"Prediction(\n    {fields},\n    completions=Completions(...)\n) ({extra} completions omitted)"


class Completions:
    """Every sampled completion of one call: `len`, `[i]` (a Prediction), `.field` (a list)."""

    def __init__(self, completions: Sequence[Mapping[str, Any]] | Mapping[str, list[Any]]) -> None:
        columns: dict[str, list[Any]] = {}
        if isinstance(completions, Mapping):
            columns = {k: list(v) for k, v in completions.items()}
        else:
            for i, completion in enumerate(completions):
                if i and set(completion) != set(columns):
                    raise ValueError(
                        f"completion {i} has fields {sorted(completion)}, expected {sorted(columns)} like the first"
                    )
                for k, v in completion.items():
                    columns.setdefault(k, []).append(v)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"every field needs one value per completion, got lengths {sorted(lengths)}")
        self._columns = columns
        self._length = lengths.pop() if lengths else 0

    def items(self) -> Any:
        return self._columns.items()

    def keys(self) -> Any:
        return self._columns.keys()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            if not -self._length <= key < self._length:
                raise IndexError(f"completion {key} out of range ({self._length} completions)")
            return Prediction({k: v[key] for k, v in self._columns.items()})
        return self._columns[key]

    def __iter__(self) -> Iterator[Prediction]:
        return (self[i] for i in range(self._length))

    def __getattr__(self, name: str) -> list[Any]:
        columns: dict[str, list[Any]] = self.__dict__.get("_columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(f"Completions has no field {name!r}")

    def __contains__(self, key: object) -> bool:
        return key in self._columns

    def __repr__(self) -> str:
        items = ",\n    ".join(f"{k}={v!r}" for k, v in self._columns.items())
        return f"Completions(\n    {items}\n)"
