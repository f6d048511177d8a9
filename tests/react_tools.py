"""Tool functions shared by the ReAct tests and by the script that records DSPy's golden output for
them (tests/fixtures/react/generate.py runs them through dspy.Tool and dspy.ReAct).

Imports only the standard library and pydantic, so DSPy's environment can import this file too.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel

POPULATIONS = {"Paris": "2.1 million", "Tokyo": "14 million", "Lyon": "0.5 million"}


def get_population(city: str, year: int = 2020) -> str:
    """Look up the population of a city.

    Returns the figure as text, or "unknown"."""
    return POPULATIONS.get(city, "unknown")


def search(query: str, k: int = 3, mode: Literal["fast", "exact"] = "fast", tags: list[str] | None = None) -> list[str]:
    """Search the notes and return the matching lines."""
    lines = [f"{query} note {i}" for i in range(k)]
    return lines if tags is None else [f"{line} [{', '.join(tags)}]" for line in lines]


def untyped(a, b: float = 0.5):  # type: ignore[no-untyped-def]
    return f"{a!r} {b!r}"


class Point(BaseModel):
    x: float
    y: float = 0.0
    label: str | None = None


def distance(a: Point, b: Point) -> float:
    """Euclidean distance between two points."""
    return float(((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5)


class Unit(Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def convert(value: float, to: Unit = Unit.CELSIUS, precision: Decimal = Decimal("0.1")) -> str:
    """Convert a temperature."""
    return f"{value} {to.value} {precision}"


def with_kwargs(name: str, **extra: int) -> dict[str, Any]:
    """Record a name with extra counters."""
    return {"name": name, **extra}


def nested(matrix: list[list[int]], weights: dict[str, float] | None = None, pair: tuple[int, str] = (1, "a")) -> int:
    """Sum a matrix."""
    return sum(map(sum, matrix))


async def weather(city: str, days: int = 1) -> dict[str, Any]:
    """Forecast for a city: temperature in celsius per day."""
    await asyncio.sleep(0)
    return {"city": city, "celsius": [21] * days}


class Counter:
    """Count steps; each call adds `step`."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, step: int = 1) -> int:
        self.total += step
        return self.total


def echo_types(count: int, ratio: float, flag: bool, choice: Literal["a", "b"], maybe: int | None = None) -> str:
    """Show what the arguments became."""
    return repr((count, ratio, flag, choice, maybe))


# Every tool whose DSPy description and schema the fixture records, by the name the fixture uses.
TOOL_FUNCTIONS: dict[str, Any] = {
    "get_population": get_population,
    "search": search,
    "untyped": untyped,
    "distance": distance,
    "convert": convert,
    "with_kwargs": with_kwargs,
    "nested": nested,
    "weather": weather,
    "counter": Counter(),
    "echo_types": echo_types,
}

# Argument sets for `echo_types` (and others) whose acceptance DSPy's Tool decides; the fixture
# records whether DSPy accepted each and what the function then returned.
ARGUMENT_CASES: list[tuple[str, dict[str, Any]]] = [
    ("echo_types", {"count": 3, "ratio": 2, "flag": True, "choice": "a"}),
    ("echo_types", {"count": "3", "ratio": 2.5, "flag": False, "choice": "b"}),
    ("echo_types", {"count": 3, "ratio": "2.5", "flag": False, "choice": "b"}),
    ("echo_types", {"count": 3, "ratio": 2.5, "flag": "true", "choice": "b"}),
    ("echo_types", {"count": 3, "ratio": 2.5, "flag": True, "choice": "c"}),
    ("echo_types", {"count": 3, "ratio": 2.5, "flag": True, "choice": "a", "maybe": "7"}),
    ("echo_types", {"count": 3, "ratio": 2.5, "flag": True, "choice": "a", "maybe": None}),
    ("echo_types", {"count": 3, "ratio": 2.5, "flag": True, "choice": "a", "other": 1}),
    ("search", {"query": "q", "tags": ["x", "y"]}),
    ("search", {"query": "q", "tags": [1]}),
    ("search", {"query": "q", "mode": "slow"}),
    ("distance", {"a": {"x": 0, "y": 3}, "b": {"x": 4}}),
    ("distance", {"a": {"x": "zero"}, "b": {"x": 4}}),
    ("convert", {"value": 20, "to": "fahrenheit"}),
    ("with_kwargs", {"name": "n", "apples": 2}),
    ("nested", {"matrix": [[1, 2], [3]], "pair": [2, "b"]}),
    ("nested", {"matrix": [[1, "2"]]}),
    ("nested", {"matrix": [[1]], "pair": [2]}),
    ("nested", {"matrix": [[1]], "pair": [2, "b", 3]}),
    ("echo_types", {"count": 3.0, "ratio": 1, "flag": False, "choice": "a"}),
    ("echo_types", {"count": True, "ratio": 1, "flag": False, "choice": "a"}),
    ("echo_types", {"count": 1, "ratio": False, "flag": False, "choice": "a"}),
    ("echo_types", {"count": 1, "ratio": 1, "flag": 0, "choice": "a"}),
    ("echo_types", {"count": 1, "ratio": 1, "flag": True, "choice": 1}),
    ("distance", {"a": {"y": 1}, "b": {"x": 4}}),
    ("distance", {"a": {"x": 1, "label": 5}, "b": {"x": 4}}),
    ("distance", {"a": [1, 2], "b": {"x": 4}}),
    ("convert", {"value": 20, "to": "kelvin"}),
    ("convert", {"value": 20, "precision": "abc"}),
    ("convert", {"value": 20, "precision": "0.25"}),
    ("with_kwargs", {"name": "n", "extra": "x"}),
]

# Schemas and values for the JSON-schema check alone (jsonschema's verdict and message).
SCHEMA_CASES: list[tuple[dict[str, Any], Any]] = [
    ({"type": "integer"}, 3.0),
    ({"type": "integer"}, 3.5),
    ({"type": "integer"}, "3"),
    ({"type": "number"}, True),
    ({"type": "string"}, None),
    ({"type": "boolean"}, 1),
    ({"type": "null"}, 0),
    ({"type": "array", "items": {"type": "string"}}, ["a", 2, 3]),
    ({"items": {"type": "string"}, "type": "array"}, "abc"),
    ({"enum": ["a", "b"], "type": "string"}, 5),
    ({"enum": [1, 2]}, True),
    ({"const": 1}, 2),
    ({"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x", "y"]}, {"x": "1"}),
    ({"type": "object", "properties": {"x": {"type": "number"}}, "additionalProperties": False}, {"x": 1, "z": 2}),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, {"a": 1, "b": "2"}),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False}, [1, 2, 3]),
    ({"type": "array", "minItems": 1}, []),
    ({"type": "array", "maxItems": 0}, [1]),
    ({"type": "string", "minLength": 2}, "a"),
    ({"type": "string", "pattern": "^[a-z]+$"}, "ABC"),
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 10}, 10),
    ({"type": "number", "minimum": 0}, -1),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}], "type": "integer"}, "x"),
    (
        {
            "type": "object",
            "properties": {"v": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}},
        },
        {"v": [1]},
    ),
    ({"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}, {"v": 5}),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}, {"a": "1", "b": "2"}),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}], "type": "number"}, 3),
    ({"allOf": [{"type": "number"}, {"minimum": 5}], "type": "number"}, 3),
    ({"type": ["string", "null"]}, 3),
    ({"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}, [[1], [2, "x"]]),
    ({"type": "integer"}, 3),
    ({"type": "object", "properties": {"x": {"type": "number"}}}, {"x": 1, "extra": "ok"}),
]
