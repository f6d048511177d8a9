"""Tool (descriptions, schemas, argument checks, running, timeouts, error text) and the calculator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from pydantic import BaseModel

from dspx_cli.modules.calculator import MAX_INT_BITS, calculator
from dspx_cli.modules.schema_check import schema_error
from dspx_cli.modules.tool import Tool, ToolSchemaError, format_tool_error
from tests import react_tools

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "react" / "golden.json").read_text())
TOOL_RECORDS = {record["key"]: record for record in GOLDEN["tools"]}


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def tool_for(key: str) -> Tool:
    if key == "calculator":
        return Tool(calculator)
    if key == "get_population+arg_desc":
        return Tool(react_tools.get_population, arg_desc={"city": "The city's English name"})
    if key == "search+name+desc":
        return Tool(react_tools.search, name="find", desc="Find notes.\nOne per line.")
    return Tool(react_tools.TOOL_FUNCTIONS[key])


def call(tool: Tool, **kwargs: Any) -> Any:
    return asyncio.run(tool.acall(**kwargs))


# ----- descriptions and schemas, against DSPy's -------------------------------------------------


# Argument schemas are pydantic's, in DSPy as here; a newer pydantic may word some differently
# (2.14 added a `pattern` to Decimal's string form). Under another pydantic than the one the
# fixture was recorded with, those version-dependent keys are left out of the comparison.
SAME_PYDANTIC = pydantic.VERSION == GOLDEN["pydantic_version"]
_PYDANTIC_WORDING = ("pattern",)


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if SAME_PYDANTIC or k not in _PYDANTIC_WORDING}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@pytest.mark.parametrize("key", sorted(TOOL_RECORDS))
def test_tool_description_matches_dspy(key: str) -> None:
    record, tool = TOOL_RECORDS[key], tool_for(key)
    assert tool.name == record["name"]
    assert tool.desc == record["desc"]
    assert _stable(plain(tool.args)) == _stable(record["args"])
    if SAME_PYDANTIC or plain(tool.args) == record["args"]:
        assert str(tool) == record["str"]
    else:  # the description part is dspx's own; the schema part was checked above
        assert str(tool).split("It takes arguments")[0] == record["str"].split("It takes arguments")[0]


def test_schema_from_hints_written_out() -> None:
    # What dspy.Tool gives for this function, worked out from its code: pydantic's schema per
    # argument, the default added last, the docstring raw (newlines become two spaces in str()).
    def lookup(city: str, year: int = 2020, units: Literal["m", "k"] = "m", tags: list[str] | None = None) -> str:
        """Find a city.

        Returns text."""
        return city

    tool = Tool(lookup)
    assert tool.args == {
        "city": {"type": "string"},
        "year": {"type": "integer", "default": 2020},
        "units": {"enum": ["m", "k"], "type": "string", "default": "m"},
        "tags": {"anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}], "default": None},
    }
    assert str(tool) == (
        "lookup, whose description is <desc>Find a city.            Returns text.</desc>. It takes arguments "
        "{'city': {'type': 'string'}, 'year': {'type': 'integer', 'default': 2020}, "
        "'units': {'enum': ['m', 'k'], 'type': 'string', 'default': 'm'}, "
        "'tags': {'anyOf': [{'items': {'type': 'string'}, 'type': 'array'}, {'type': 'null'}], 'default': None}}."
    )


def test_tool_without_docstring_or_hints() -> None:
    tool = Tool(lambda x, y=2: x)
    assert str(tool) == "<lambda>. It takes arguments {'x': {}, 'y': {'default': 2}}."


class Opaque:
    """A class pydantic has no schema for."""


def takes_opaque(thing: Opaque) -> str:
    return "never"


def takes_callback(callback: Callable[[int], int]) -> int:
    return callback(1)


@pytest.mark.parametrize(
    ("func", "words"),
    [
        (takes_opaque, ["takes_opaque", "'thing'", "Opaque", "JSON"]),
        (takes_callback, ["takes_callback", "'callback'", "JSON"]),
    ],
)
def test_parameter_without_json_schema_is_rejected(func: Callable[..., Any], words: list[str]) -> None:
    with pytest.raises(ToolSchemaError) as caught:
        Tool(func)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    assert isinstance(caught.value, ValueError)


class Node(BaseModel):
    value: int
    children: list[Node] = []


def takes_tree(root: Node) -> int:
    return root.value


def test_recursive_model_is_rejected() -> None:
    with pytest.raises(ToolSchemaError, match=r"takes_tree.*'root'.*recursive"):
        Tool(takes_tree)


class Inner(BaseModel):
    n: int


class Outer(BaseModel):
    inner: Inner
    more: list[Inner] = []


def uses_outer(outer: Outer) -> int:
    return outer.inner.n


def test_nested_model_schema_is_inlined() -> None:
    tool = Tool(uses_outer)
    assert "$ref" not in json.dumps(tool.args) and "$defs" not in json.dumps(tool.args)
    assert tool.args["outer"]["properties"]["inner"]["properties"] == {"n": {"title": "N", "type": "integer"}}
    assert call(tool, outer={"inner": {"n": 4}}) == 4


def test_unresolvable_hint_is_rejected() -> None:
    def broken(x: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821
        return "never"

    with pytest.raises(ToolSchemaError, match=r"broken.*type hints"):
        Tool(broken)


def test_explicit_args_skip_schema_generation() -> None:
    tool = Tool(takes_opaque, args={"thing": {"type": "object"}}, arg_types={"thing": Any})
    assert str(tool).endswith("It takes arguments {'thing': {'type': 'object'}}.")


# ----- argument checks, against DSPy's decisions -------------------------------------------------


@pytest.mark.parametrize("case", GOLDEN["arguments"], ids=lambda c: f"{c['tool']}-{json.dumps(c['args'])}")
def test_argument_checks_match_dspy(case: dict[str, Any]) -> None:
    tool = Tool(react_tools.TOOL_FUNCTIONS[case["tool"]])
    if case["ok"]:
        assert plain(call(tool, **case["args"])) == case["result"]
        return
    with pytest.raises(ValueError) as caught:
        call(tool, **case["args"])
    message = str(caught.value)
    if case["error"].startswith("Arg "):  # unknown arguments and jsonschema's verdicts: DSPy's words
        assert message == case["error"]
    else:  # pydantic's conversion failed: DSPy shows pydantic's raw report, dspx names the argument
        assert case["error"] == "1 validation error for Wrapper"
        assert message.startswith("Arg ") and " is invalid: " in message


def test_arguments_become_their_annotated_types() -> None:
    tool = Tool(react_tools.distance)
    assert call(tool, a={"x": 0, "y": 3}, b={"x": 4}) == 5.0
    convert = Tool(react_tools.convert)
    assert call(convert, value=20, to="fahrenheit") == "20.0 fahrenheit 0.1"


# ----- running ---------------------------------------------------------------------------------


def test_sync_tools_run_in_a_worker_thread_and_async_tools_on_the_loop() -> None:
    threads: list[str] = []

    def sync_tool() -> str:
        threads.append(threading.current_thread().name)
        return "sync"

    async def async_tool() -> str:
        threads.append(threading.current_thread().name)
        return "async"

    assert call(Tool(sync_tool)) == "sync"
    assert call(Tool(async_tool)) == "async"
    assert threads[0] != threading.main_thread().name
    assert threads[1] == threading.main_thread().name


def test_slow_sync_tool_does_not_block_the_loop() -> None:
    def slow() -> str:
        time.sleep(0.3)
        return "done"

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(Tool(slow).acall() for _ in range(4)))
        return time.perf_counter() - started

    assert asyncio.run(main()) < 1.0  # four 0.3 s calls overlap


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_timeout(kind: str) -> None:
    def sync_slow() -> str:
        time.sleep(1.0)
        return "late"

    async def async_slow() -> str:
        await asyncio.sleep(5)
        return "late"

    tool = Tool(sync_slow if kind == "sync" else async_slow, name="slow", timeout=0.1)

    async def main() -> float:
        started = time.perf_counter()
        with pytest.raises(TimeoutError, match=r"^slow did not finish within 0\.1 seconds$"):
            await tool.acall()
        return time.perf_counter() - started

    started = time.perf_counter()
    assert asyncio.run(main()) < 0.9
    # The abandoned sync call runs on in a daemon thread: leaving the event loop does not wait for it.
    assert time.perf_counter() - started < 0.9


def test_a_tools_own_timeout_error_is_not_relabelled() -> None:
    async def gives_up() -> str:
        raise TimeoutError("upstream took too long")

    with pytest.raises(TimeoutError, match=r"^upstream took too long$"):
        call(Tool(gives_up, timeout=5))


def test_bad_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Tool(calculator, timeout=0)


def failure(tool: Tool, **kwargs: Any) -> BaseException:
    async def main() -> BaseException:
        try:
            await tool.acall(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the failure is what is tested
            return exc
        raise AssertionError("the tool did not fail")

    return asyncio.run(main())


def test_error_text_keeps_the_tools_frames_only() -> None:
    def fragile(x: int) -> str:
        raise KeyError(f"no entry {x}")

    for kind in (fragile, _async(fragile)):
        text = format_tool_error(failure(Tool(kind), x=3))
        assert text.startswith("\nTraceback (most recent call last):\n")
        assert "in fragile" in text and "raise KeyError" in text
        assert text.endswith("KeyError: 'no entry 3'")
        files = [line for line in text.splitlines() if line.lstrip().startswith("File ")]
        assert files and not any("dspx_cli" in line or "asyncio" in line or "threading" in line for line in files)


def _async(func: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(x: int) -> Any:
        return func(x)

    return wrapper


def test_error_text_for_dspx_own_errors_has_no_dspx_frames() -> None:
    text = format_tool_error(failure(Tool(calculator), expression="1/0"))
    assert text.endswith("\nValueError: division by zero (/ by 0)") and "dspx_cli" not in text
    text = format_tool_error(failure(Tool(calculator), expr="1"))
    assert text.endswith("\nValueError: Arg expr is not in the tool's args.") and "dspx_cli" not in text


# ----- the calculator --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("-3 ** 2", -9),
        ("+4 - -4", 8),
        ("2 ** -1", 0.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("round(pi, 2)", 3.14),
        ("round(2.7)", 3),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log10(1000)", 3.0),
        ("min(3, 1, 2) + max(4, 5)", 6),
        ("floor(2.5) + ceil(2.5)", 5),
        ("sin(0) + cos(0)", 1.0),
        ("1_000 * 1.5e3", 1_500_000.0),
        ("  2.1 + 14 ", 16.1),
    ],
)
def test_calculator_computes(expression: str, value: float) -> None:
    assert calculator(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('echo hi')", "attribute access"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("(1).__class__", "attribute access"),
        ("math.sqrt(4)", "attribute access"),
        ("x + 1", "unknown name 'x'"),
        ("__builtins__", "unknown name '__builtins__'"),
        ("'a' * 3", "not a number"),
        ("[1, 2]", "a list is not allowed"),
        ("(1, 2)[0]", "indexing"),
        ("1 < 2", "comparison"),
        ("lambda: 1", "lambda"),
        ("True + 1", "not a number"),
        ("sqrt(x=4)", "no keyword arguments"),
        ("9 ** 9 ** 9", "too large"),
        ("2 ** 100000", "too large"),
        ("10.0 ** 400", "too large"),
        ("exp(1000)", "too large"),
        ("1e999", "too large"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("(-8) ** (1/3)", "not a real number"),
        ("round(1.5, 1000)", "round"),
        ("", "empty"),
        ("1 +", "cannot read"),
        ("1" * 2000, "longer than"),
    ],
)
def test_calculator_refuses(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        calculator(expression)
    assert reason in str(caught.value)


def test_calculator_bounds_every_intermediate_result() -> None:
    assert MAX_INT_BITS == 10_000
    assert calculator("10 ** 3000 * 10") == 10**3001  # ~9970 bits
    with pytest.raises(ValueError, match="too large"):
        calculator("10 ** 3000 * 10 ** 3000")  # each factor fits, the product does not
    with pytest.raises(ValueError, match="too large"):
        calculator("-(10 ** 3000) * 10 ** 3000")


def test_calculator_never_evaluates_python() -> None:
    # Anything that would have a side effect if evaluated is refused before evaluation.
    marker: list[str] = []
    globals()["_calculator_marker"] = marker
    with pytest.raises(ValueError):
        calculator("_calculator_marker.append(1)")
    assert marker == []


def test_calculator_is_a_described_tool() -> None:
    tool = Tool(calculator)
    assert tool.name == "calculator" and tool.args == {"expression": {"type": "string"}}
    assert "sqrt" in tool.desc and "\n" not in tool.desc
    assert call(tool, expression="2 * (3 + 4)") == 14


@pytest.mark.parametrize("case", GOLDEN["schema_checks"], ids=lambda c: f"{json.dumps(c['schema'])}-{c['instance']!r}")
def test_schema_check_matches_jsonschema(case: dict[str, Any]) -> None:
    assert schema_error(case["instance"], case["schema"]) == case["error"]
