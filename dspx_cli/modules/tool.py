"""Tools: Python callables an agent (ReAct) may call, described to the LM the way DSPy describes them.

A `Tool` reads its name, description and per-argument JSON schema from the function itself (its
`__name__`, raw docstring and type hints), exactly as `dspy.Tool` does, because that text goes
into ReAct's prompt and must be byte-for-byte DSPy's:

    def get_population(city: str, year: int = 2020) -> str:
        "Look up the population of a city."

    str(Tool(get_population))
    # get_population, whose description is <desc>Look up the population of a city.</desc>. It takes
    # arguments {'city': {'type': 'string'}, 'year': {'type': 'integer', 'default': 2020}}.

`await tool.acall(**args)` checks the LM's arguments against the schema, converts them to the
annotated types (pydantic models, enums, ...), and runs the function: coroutine functions on the
event loop, plain functions in a thread of their own so a slow tool never blocks other runs. An optional
`timeout` bounds each call.

Arguments are checked in DSPy's two steps: an argument whose schema has a top-level "type" must
satisfy its schema, with JSON's strict types ("3" is not an integer; modules/schema_check.py does
what DSPy does with jsonschema, with the same messages), and then pydantic converts it, in lax
mode, to the annotated type.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any, get_origin, get_type_hints

import dspx_cli
from dspx_cli.adapters.values import describe_error
from dspx_cli.modules.schema_check import schema_error

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["Tool", "ToolSchemaError", "format_tool_error", "in_thread"]


class ToolSchemaError(ValueError):
    """A callable cannot be a tool: a parameter's type has no JSON schema, or its hints do not resolve.

    A plain ValueError subclass, like SignatureError: the program loader catches it and reports a
    ProgramError at the place the tool is named.
    """


class Tool:
    """A callable with the name, description and argument schemas the LM sees.

    `name`, `desc`, `args` (argument name -> JSON schema) and `arg_types` (argument name -> type)
    default to what the function declares; `arg_desc` adds a "description" to argument schemas.
    `timeout` (seconds, None for no limit) bounds each `acall`.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        desc: str | None = None,
        args: dict[str, Any] | None = None,
        arg_types: dict[str, Any] | None = None,
        arg_desc: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        if not callable(func):
            raise ToolSchemaError(f"a tool must be callable, got {type(func).__name__}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"a tool timeout must be a positive number of seconds, got {timeout!r}")
        self.func = func
        self.timeout = timeout
        # DSPy reads hints from __call__ for callable objects (a class instance is not a function).
        plain = inspect.isfunction(func) or inspect.ismethod(func)
        target: Callable[..., Any] = func if plain else func.__call__  # type: ignore[operator]
        target_name = getattr(func, "__name__", type(func).__name__)
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError) as exc:
            raise ToolSchemaError(f"tool {target_name!r}: cannot read its parameters ({exc})") from None
        try:
            hints = get_type_hints(target)
        except Exception as exc:  # noqa: BLE001 - an unresolvable forward reference, a typo in an annotation
            raise ToolSchemaError(f"tool {target_name!r}: cannot resolve its type hints ({exc})") from None

        own_types = {p: hints.get(p, Any) for p in parameters}
        # The raw docstring, as DSPy shows it: ReAct's prompt must match DSPy's byte for byte.
        own_desc = getattr(func, "__doc__", None) or getattr(target, "__doc__", None)
        self.name: str = name or target_name
        self.desc: str | None = desc or own_desc
        self.arg_types: dict[str, Any] = dict(arg_types) if arg_types is not None else own_types
        self.args: dict[str, Any] = (
            dict(args) if args is not None else _argument_schemas(self.name, parameters, own_types, arg_desc)
        )
        self.has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        # An object whose __call__ is a coroutine function is an async tool too.
        self._is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)
        self._adapters: dict[str, TypeAdapter[Any]] = {}

    # ----- how the LM sees it --------------------------------------------------------------------

    def __str__(self) -> str:
        # DSPy's Tool.__str__, the line ReAct's instructions list for each tool.
        desc = f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ") if self.desc else "."
        return f"{self.name}{desc} It takes arguments {self.args}."

    def format(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"Tool(name={self.name}, desc={self.desc}, args={self.args})"

    def per_run(self) -> AbstractAsyncContextManager[Tool]:
        """The tool as one run of an agent uses it, for the length of that run.

        Most tools are the same in every run. A tool with state that must last a run and no longer
        (the sandbox's variables, modules/sandbox_tool.py) yields a copy of its own and closes it
        when the run ends.
        """
        return nullcontext(self)

    # ----- calling -------------------------------------------------------------------------------

    async def acall(self, **kwargs: Any) -> Any:
        """Check and convert the arguments, run the function, return what it returns.

        Raises ValueError for arguments the tool does not take or that do not fit their type,
        TimeoutError when `timeout` passes, and whatever the function itself raises.
        """
        parsed = self.parse_args(kwargs)
        if self.timeout is None:
            return await self._run(parsed)
        scope = asyncio.timeout(self.timeout)
        try:
            async with scope:
                return await self._run(parsed)
        except TimeoutError:
            if not scope.expired():
                raise  # the tool's own TimeoutError, not ours
            # A thread cannot be stopped: a sync tool keeps running in its daemon thread until it
            # returns, and its result is dropped. Coroutine tools are cancelled.
            raise TimeoutError(f"{self.name} did not finish within {self.timeout:g} seconds") from None

    def parse_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments checked against their schemas and converted to their annotated types.

        DSPy's two steps: every argument whose schema names a "type" must satisfy the schema
        (jsonschema's strict JSON types), then pydantic converts it in lax mode. A ValueError
        names the first argument that fails.
        """
        for key, value in kwargs.items():
            if key not in self.args:
                if self.has_kwargs:
                    continue
                raise ValueError(f"Arg {key} is not in the tool's args.")
            schema = self.args[key]
            if isinstance(schema, dict) and schema.get("type") not in (None, "Any"):
                plain = value.model_dump() if hasattr(value, "model_dump") else value
                problem = schema_error(plain, schema)
                if problem is not None:
                    raise ValueError(f"Arg {key} is invalid: {problem}")
        parsed: dict[str, Any] = {}
        for key, value in kwargs.items():
            annotation = self.arg_types.get(key, Any)
            parsed[key] = value if annotation is Any else self._convert(key, annotation, value)
        return parsed

    def _convert(self, key: str, annotation: Any, value: Any) -> Any:
        from pydantic import TypeAdapter, ValidationError

        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self._adapters[key] = TypeAdapter(annotation)
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"Arg {key} is invalid: {describe_error(exc)}") from None

    async def _run(self, kwargs: dict[str, Any]) -> Any:
        if self._is_async:
            result = self.func(**kwargs)
        else:
            result = await in_thread(self.name, self.func, kwargs)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            result = await result
        return result


async def in_thread(name: str, func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a sync function (a tool, a Python step) in its own daemon thread and await its result.

    Not `asyncio.to_thread`: the default executor has a handful of threads (a few slow tools would
    queue every other run's calls), and its threads are joined when the loop and the interpreter
    shut down, so a tool that hangs past its timeout would keep the process from exiting. A daemon
    thread does neither; like `to_thread`, it sees the caller's context variables.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled: the caller timed out or went away
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = context.run(func, **kwargs), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    threading.Thread(target=work, name=f"dspx-tool-{name}", daemon=True).start()
    return await future


def _argument_schemas(
    tool: str, parameters: Any, types: dict[str, Any], arg_desc: dict[str, str] | None
) -> dict[str, Any]:
    """DSPy's per-argument schemas: pydantic's JSON schema, $refs inlined, plus default and description."""
    from pydantic import BaseModel, TypeAdapter

    schemas: dict[str, Any] = {}
    for key, annotation in types.items():
        origin = get_origin(annotation) or annotation
        try:
            if isinstance(origin, type) and issubclass(origin, BaseModel):
                raw = annotation.model_json_schema()
            else:
                raw = TypeAdapter(annotation).json_schema()
        except Exception as exc:
            shown = getattr(annotation, "__name__", None) or str(annotation)
            raise ToolSchemaError(
                f"tool {tool!r}: parameter {key!r} has type {shown}, which cannot be described as JSON "
                "(use str, int, float, bool, list, dict, Literal, enums, pydantic models or unions of them)"
            ) from exc
        schema = _inline_refs(raw, tool, key)
        default = parameters[key].default
        if default is not inspect.Parameter.empty:
            schema["default"] = _json_default(default)
        if arg_desc and key in arg_desc:
            schema["description"] = arg_desc[key]
        schemas[key] = schema
    return schemas


def _inline_refs(schema: dict[str, Any], tool: str, key: str) -> dict[str, Any]:
    """Replace every {"$ref": "#/$defs/X"} with the definition itself and drop $defs (DSPy does)."""
    if "$defs" not in schema and "definitions" not in schema:
        return schema
    definitions = schema.get("$defs", {})

    def resolve(node: Any, open_refs: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].split("/")[-1]
                if name in open_refs:
                    # DSPy recurses until Python gives up; a recursive type has no inline schema.
                    raise ToolSchemaError(
                        f"tool {tool!r}: parameter {key!r} has a recursive type ({name} contains itself), "
                        "which cannot be written out as an inline JSON schema"
                    )
                return resolve(definitions[name], (*open_refs, name))
            return {k: resolve(v, open_refs) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(item, open_refs) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema, ())
    resolved.pop("$defs", None)
    return resolved


def _json_default(value: Any) -> Any:
    """A parameter default in its JSON form (an Enum member as its value, a tuple as a list), as DSPy."""
    from decimal import Decimal

    import pydantic_core

    if isinstance(value, Decimal):
        return float(value)  # a JSON number fits float and Decimal arguments; pydantic would give text
    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:  # noqa: BLE001 - DSPy keeps such a default as it is
        return value


# ----- errors as the LM reads them -------------------------------------------------------------

# Frames from these places are dspx's machinery (argument checks, the worker thread, asyncio), not
# the tool's code; DSPy's traceback shows its own machinery, which would tell the LM nothing.
_INTERNAL = (
    os.path.dirname(dspx_cli.__file__) + os.sep,
    os.path.dirname(asyncio.__file__) + os.sep,
    os.path.join(os.path.dirname(os.__file__), "concurrent") + os.sep,
)
_THREADING = threading.__file__


def _internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL) or filename == _THREADING


def format_tool_error(error: BaseException, frames: int = 5) -> str:
    """DSPy's `format_error_for_lm(err, traceback_frames=5)`: a newline, then the traceback.

    The traceback keeps at most `frames` frames of the tool's own code (dspx's and asyncio's are
    left out), so an error raised by dspx itself (bad arguments, a timeout, the calculator) reads as
    just "\\nValueError: ...".
    """
    summary = traceback.TracebackException.from_exception(error)
    seen: set[int] = set()
    pending = [summary]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kept = [frame for frame in current.stack if not _internal(frame.filename)][:frames]
        current.stack = traceback.StackSummary.from_list(kept)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return "\n" + "".join(summary.format()).strip()
