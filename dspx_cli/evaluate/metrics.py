"""Metrics: score one prediction against its example, as a float (a bool counts 1.0 or 0.0).

`metric:` in a program file is one of
- a built-in name, `exact_match`, or the same with options: `{name: f1, field: answer}`;
- `{python: "metrics.py:function"}`: `function(example, prediction[, trace])`, sync or async, in a
  file relative to the program's folder, returning a bool or a number;
- `{judge: {signature: ..., lm: ..., instructions: ..., type: predict}}`: an LM judge.

Built-ins are records of the registry in `metric_base.py`, defined in `builtin_metrics.py`
(name, option keys, builder, docs line); the names and "expected ..." messages here read it.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dspx_cli.core import Example, Prediction
from dspx_cli.core.image_file import ImageFile, MediaError
from dspx_cli.core.pyfile import PyFileError, find_function, load_function
from dspx_cli.errors import DspxError, UsageError

# Importing builtin_metrics registers the built-ins.
from dspx_cli.evaluate.builtin_metrics import f1_score, normalize_text, passage_match
from dspx_cli.evaluate.metric_base import METRICS, Metric, MetricError, MetricOrigin, as_score, metric_forms
from dspx_cli.program.media_inputs import example_with_images_read
from dspx_cli.program.model import Program
from dspx_cli.program.source import KeyPath

if TYPE_CHECKING:
    from dspx_cli.program.context import RunContext

__all__ = [
    "BUILTIN_METRICS",
    "Metric",
    "MetricError",
    "as_score",
    "describe_metric",
    "f1_score",
    "normalize_text",
    "passage_match",
    "resolve_metric",
]

BUILTIN_METRICS = tuple(METRICS)


# ----- resolving the metric spec ------------------------------------------------------------------


def resolve_metric(
    program: Program,
    context: RunContext | None = None,
    spec: str | dict[str, Any] | None = None,
    *,
    where: KeyPath | None = None,
    run_code: bool = True,
) -> Metric:
    """The program's `metric:`, or `spec` instead (from the command line unless `where` locates it
    in the program file). Every check happens here, before any example is scored; `context` (a
    RunContext) is needed only to call an LM judge, so `context=None` validates without LMs, and
    `run_code=False` checks a Python metric by parsing its file instead of importing it."""
    if spec is None:
        spec, where = program.spec.metric, ("metric",)
        if spec is None:
            raise UsageError(f"{program.path} has no metric; add `metric: exact_match` (or another) to it")
    origin = MetricOrigin(program, where)
    if isinstance(spec, str):
        return _builtin(spec, {}, origin)
    if not isinstance(spec, Mapping):
        raise origin.error(f"expected {metric_forms()}, got {type(spec).__name__}")
    kinds = [key for key in ("name", "python", "judge") if key in spec]
    if len(kinds) != 1:
        raise origin.error(f"expected exactly one of the keys name, python, judge; got {', '.join(spec) or 'none'}")
    if kinds == ["name"]:
        return _builtin(spec["name"], {k: v for k, v in spec.items() if k != "name"}, origin)
    _no_other_keys(spec, kinds[0], origin)
    if kinds == ["python"]:
        return _python_metric(spec["python"], origin) if run_code else _parsed_python_metric(spec["python"], origin)
    # Imported here: the modules layer loads only when a judge is used.
    from dspx_cli.evaluate.judge import build_judge

    return build_judge(spec["judge"], program, context, origin.error)


def describe_metric(spec: str | Mapping[str, Any]) -> str:
    """One line for summaries (`validate`): the metric's name and what it scores, from the registry.
    `spec` is assumed checked (by `resolve_metric`)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if "python" in spec:
        return f"python {spec['python']}"
    if "judge" in spec:
        judge = spec["judge"]
        signature = judge.get("signature") if isinstance(judge, Mapping) else None
        return f"LM judge ({signature})" if isinstance(signature, str) else "LM judge"
    kind = METRICS.get(spec.get("name"))  # type: ignore[arg-type]
    if kind is None:
        return str(spec.get("name"))
    options = ", ".join(f"{key}: {value}" for key, value in spec.items() if key != "name")
    return f"{kind.name}{f' ({options})' if options else ''}: {kind.doc}"


def _no_other_keys(spec: Mapping[str, Any], kind: str, origin: MetricOrigin) -> None:
    for key in spec:
        if key != kind:
            raise origin.error(f"unknown key {key!r} next to {kind!r} in the metric", key)


def _close_matches(word: str, choices: list[str]) -> list[str]:
    import difflib  # only for a misspelt name: a valid program's load does not need it

    return difflib.get_close_matches(word, choices, n=1)


def _builtin(name: Any, options: dict[str, Any], origin: MetricOrigin) -> Metric:
    kind = METRICS.get(name) if isinstance(name, str) else None
    if kind is None:
        close = _close_matches(str(name), list(METRICS))
        hint = f"did you mean {close[0]!r}?" if close else f"expected {metric_forms()}"
        raise origin.error(f"unknown metric {name!r}; {hint}", *(("name",) if options else ()))
    for key in options:
        if key not in kind.options:
            close = _close_matches(str(key), sorted(kind.options))
            hint = f"did you mean {close[0]!r}?" if close else f"its options: {', '.join(sorted(kind.options))}"
            raise origin.error(f"unknown option {key!r} for metric {name}; {hint}", key)
    return kind.build(options, origin)


# ----- Python metrics ----------------------------------------------------------------------------


@dataclass
class _PythonMetric:
    """A metric from a program's Python file, called with as many arguments as it takes."""

    name: str
    function: Callable[..., Any]
    arity: int  # 2: (example, prediction); 3: (example, prediction, trace)

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        try:
            # A dataset row's image is an ImageFile until its example runs; the function gets the
            # data URI string it would get from a row read at once (in a thread: it reads a file).
            example = await _images_read(example)
        except MediaError as exc:
            raise MetricError(f"metric {self.name}: {exc}") from None
        args = (example, prediction, trace)[: self.arity]
        try:
            # An object with an async __call__ is not a coroutine function; its call in the
            # thread returns a coroutine, awaited here.
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(*args)
            else:
                # A thread, as DSPy's evaluator uses: a slow or blocking metric (one that calls an
                # LM itself, say) must not stall every other example's LM calls.
                import asyncio  # here: `dspx validate` resolves metrics without importing asyncio

                result = await asyncio.to_thread(self.function, *args)
                if inspect.isawaitable(result):
                    result = await result
        except DspxError:
            raise
        except Exception as exc:
            raise MetricError(f"metric {self.name} raised {type(exc).__name__}: {exc}") from exc
        return as_score(result, self.name)


async def _images_read(example: Example) -> Example:
    if not any(isinstance(value, ImageFile) for value in example.values()):
        return example
    import asyncio  # here: `dspx validate` resolves metrics without importing asyncio

    return await asyncio.to_thread(example_with_images_read, example)


def _python_metric(target: Any, origin: MetricOrigin) -> Metric:
    try:
        function, path = load_function(target, origin.base_dir, prefix="dspx_metric")
    except PyFileError as exc:
        raise origin.error(f"python: {exc}", "python") from None
    function_name = target.rpartition(":")[2]
    return _PythonMetric(function_name, function, _arity(function, f"{path.name}:{function_name}", origin))


def _arity(function: Callable[..., Any], shown: str, origin: MetricOrigin) -> int:
    """How many of (example, prediction, trace) to pass: 3 when the function takes a third."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 3  # a builtin or C callable without a readable signature: call it DSPy's way
    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    keyword_only = any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters)
    return _checked_arity(len(positional), len(required), variadic, keyword_only, f"{shown}", str(signature), origin)


def _checked_arity(
    positional: int, required: int, variadic: bool, keyword_only: bool, shown: str, takes: str, origin: MetricOrigin
) -> int:
    if keyword_only or required > 3 or (positional < 2 and not variadic):
        raise origin.error(
            f"python: {shown} must take (example, prediction) or (example, prediction, trace); it takes {takes}",
            "python",
        )
    return 3 if variadic or positional >= 3 else 2


@dataclass
class _ParsedPythonMetric:
    """A Python metric checked by reading its file (`dspx validate`): it cannot score."""

    name: str

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        raise MetricError(f"metric {self.name} was only checked, not loaded; resolve it with run_code=True")


def _parsed_python_metric(target: Any, origin: MetricOrigin) -> Metric:
    try:
        found = find_function(target, origin.base_dir)
    except PyFileError as exc:
        raise origin.error(f"python: {exc}", "python") from None
    definition = found.definition
    if definition is not None:
        args = definition.args
        positional = len(args.posonlyargs) + len(args.args)
        keyword_only = any(default is None for default in args.kw_defaults)
        _checked_arity(
            positional,
            positional - len(args.defaults),
            args.vararg is not None,
            keyword_only,
            f"{found.path.name}:{found.name}",
            f"({ast.unparse(args)})",
            origin,
        )
    return _ParsedPythonMetric(found.name)
