"""Metrics: score one prediction against its example, as a float (a bool counts 1.0 or 0.0).

`metric:` in a program file is one of
- a built-in name, `exact_match`, or the same with options: `{name: f1, field: answer}`;
- `{python: "metrics.py:function"}`: `function(example, prediction[, trace])`, sync or async, in a
  file relative to the program's folder, returning a bool or a number;
- `{judge: {signature: ..., lm: ..., instructions: ..., type: predict}}`: an LM judge.

Built-ins (the text ones use DSPy's answer normalization: NFD, lowercase, drop ASCII punctuation,
drop the articles a/an/the, collapse whitespace; a gold value may be a list of accepted answers):

| name | score | DSPy |
|---|---|---|
| exact_match | 1 if every label field equals the prediction's, compared as they are | (strict `==`) |
| answer_exact_match | 1 if the normalized prediction equals a normalized gold answer; with `frac` < 1, if F1 >= frac | `answer_exact_match` |
| answer_passage_match | 1 if a passage of the prediction's `context` contains a gold answer's tokens | `answer_passage_match` |
| f1 | token F1 of the normalized texts, the best over the gold answers | `F1` / `f1_score` |
| contains | 1 if a normalized gold answer occurs, on token boundaries, in the normalized prediction | — |
| regex | 1 if `re.search(pattern, prediction field)` finds a match | — |

`field` names the compared field (default: `answer` if the program outputs it, else the program's
only output). `exact_match` without `field` compares every label field of the example that is a
program output.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import inspect
import numbers
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dspx_cli.core import Example, Prediction
from dspx_cli.core.pyfile import PyFileError, find_function, load_function
from dspx_cli.errors import DspxError, ProgramError, UsageError
from dspx_cli.program.model import Program
from dspx_cli.program.source import KeyPath

if TYPE_CHECKING:
    from dspx_cli.program.context import RunContext

__all__ = [
    "BUILTIN_METRICS", "Metric", "MetricError", "as_score", "f1_score", "normalize_text", "passage_match",
    "resolve_metric",
]

BUILTIN_METRICS = ("exact_match", "answer_exact_match", "answer_passage_match", "f1", "contains", "regex")
_OPTIONS = {
    "exact_match": {"field"},
    "answer_exact_match": {"field", "frac"},
    "answer_passage_match": {"field", "passages"},
    "f1": {"field"},
    "contains": {"field"},
    "regex": {"field", "pattern"},
}
_FORMS = f"a built-in ({', '.join(BUILTIN_METRICS)}), {{python: \"file.py:function\"}} or {{judge: {{...}}}}"


class Metric(Protocol):
    name: str

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float: ...


class MetricError(DspxError):
    """Scoring one example failed (a missing field, a metric returning a string, ...)."""


# ----- DSPy's text normalization and scores ------------------------------------------------------

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: str) -> str:
    """DSPy's `normalize_text`, in its order: NFD, lowercase, punctuation, articles, whitespace."""
    text = unicodedata.normalize("NFD", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 of the normalized texts; 0 when nothing overlaps (also when both are empty, as in DSPy)."""
    predicted, expected = normalize_text(prediction).split(), normalize_text(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def _dpr_tokens(text: str) -> list[str]:
    """DPR's SimpleTokenizer, lowercased: runs of letters/digits/marks, and every other visible
    character alone; separators (Z*) and control characters (C*) split tokens and are dropped."""
    tokens: list[str] = []
    run: list[str] = []
    for char in unicodedata.normalize("NFD", text):
        kind = unicodedata.category(char)[0]
        if kind in "LNM":
            run.append(char)
            continue
        if run:
            tokens.append("".join(run).lower())
            run = []
        if kind not in "ZC":
            tokens.append(char.lower())
    if run:
        tokens.append("".join(run).lower())
    return tokens


def passage_match(passages: Iterable[str], answers: Iterable[str]) -> bool:
    """DSPy's `_passage_match`: some passage holds some answer's DPR tokens contiguously."""
    wanted = [_dpr_tokens(normalize_text(answer)) for answer in answers]
    for passage in passages:
        tokens = _dpr_tokens(normalize_text(passage))
        # An answer with no tokens matches anywhere, as in DSPy's has_answer.
        if any(tokens[i : i + len(w)] == w for w in wanted for i in range(len(tokens) - len(w) + 1)):
            return True
    return False


# ----- resolving the metric spec ------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """Where a metric spec was written: in the program file (`key_path`) or on the command line."""

    program: Program
    key_path: KeyPath | None

    @property
    def base_dir(self) -> Path:
        return self.program.base_dir if self.key_path is not None else Path.cwd()

    def error(self, message: str, *sub: str | int) -> DspxError:
        if self.key_path is None:
            return UsageError(f"--metric: {message}")
        return ProgramError(message, self.program.positions.locate((*self.key_path, *sub)))


def resolve_metric(
    program: Program, context: RunContext | None = None, spec: str | dict[str, Any] | None = None, *,
    where: KeyPath | None = None, run_code: bool = True,
) -> Metric:
    """The program's `metric:`, or `spec` instead (from the command line unless `where` locates it
    in the program file). Every check happens here, before any example is scored; `context` (a
    RunContext) is needed only to call an LM judge, so `context=None` validates without LMs, and
    `run_code=False` checks a Python metric by parsing its file instead of importing it."""
    if spec is None:
        spec, where = program.spec.metric, ("metric",)
        if spec is None:
            raise UsageError(f"{program.path} has no metric; add `metric: exact_match` (or another) to it")
    origin = _Origin(program, where)
    if isinstance(spec, str):
        return _builtin(spec, {}, origin)
    if not isinstance(spec, Mapping):
        raise origin.error(f"expected {_FORMS}, got {type(spec).__name__}")
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


def _no_other_keys(spec: Mapping[str, Any], kind: str, origin: _Origin) -> None:
    for key in spec:
        if key != kind:
            raise origin.error(f"unknown key {key!r} next to {kind!r} in the metric", key)


# ----- built-ins ---------------------------------------------------------------------------------


@dataclass
class _Scored:
    name: str
    score: Callable[[Example, Prediction], float]

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        return self.score(example, prediction)


def _builtin(name: Any, options: dict[str, Any], origin: _Origin) -> Metric:
    if name not in BUILTIN_METRICS:
        close = difflib.get_close_matches(str(name), BUILTIN_METRICS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected {_FORMS}"
        raise origin.error(f"unknown metric {name!r}; {hint}", *(("name",) if options else ()))
    for key in options:
        if key not in _OPTIONS[name]:
            close = difflib.get_close_matches(str(key), sorted(_OPTIONS[name]), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"its options: {', '.join(sorted(_OPTIONS[name]))}"
            raise origin.error(f"unknown option {key!r} for metric {name}; {hint}", key)
    outputs = [n for n in origin.program.outputs]
    if name == "exact_match":
        fields = options.get("field")
        if fields is not None:
            fields = [fields] if isinstance(fields, str) else fields
            if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
                raise origin.error("field: expected a field name or a list of names", "field")
            for field in fields:
                _check_output(field, origin, "field")
        return _Scored(name, lambda ex, pred: _exact_match(ex, pred, fields, outputs))

    field = _answer_field(options, origin, check=name != "answer_passage_match")
    if name == "answer_exact_match":
        frac = options.get("frac", 1.0)
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac <= 1:
            raise origin.error(f"frac: expected a number from 0 to 1, got {frac!r}", "frac")

        def answer_exact(example: Example, prediction: Prediction) -> float:
            predicted, golds = _text(prediction, field, "prediction"), _golds(example, field)
            if frac >= 1:
                return float(any(normalize_text(predicted) == normalize_text(gold) for gold in golds))
            return float(max(f1_score(predicted, gold) for gold in golds) >= frac)

        return _Scored(name, answer_exact)
    if name == "f1":
        return _Scored(name, lambda ex, pred: max(f1_score(_text(pred, field, "prediction"), g) for g in _golds(ex, field)))
    if name == "contains":
        return _Scored(name, lambda ex, pred: float(_contains(_text(pred, field, "prediction"), _golds(ex, field))))
    if name == "regex":
        pattern = options.get("pattern")
        if not isinstance(pattern, str):
            raise origin.error("metric regex needs `pattern: <regular expression>`", *(("pattern",) if "pattern" in options else ()))
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise origin.error(f"pattern: invalid regular expression: {exc}", "pattern") from None
        return _Scored(name, lambda ex, pred: float(compiled.search(_text(pred, field, "prediction")) is not None))
    # answer_passage_match: gold answers from the example, passages from the prediction.
    passages = options.get("passages", "context")
    _check_output(passages, origin, "passages")
    return _Scored(name, lambda ex, pred: float(passage_match(_passages(pred, passages), _golds(ex, field))))


def _answer_field(options: dict[str, Any], origin: _Origin, *, check: bool) -> str:
    outputs = [n for n in origin.program.outputs if n != "reasoning"]
    field = options.get("field")
    if field is not None:
        if not isinstance(field, str):
            raise origin.error(f"field: expected a field name, got {field!r}", "field")
        if check:
            _check_output(field, origin, "field")
        return field
    if "answer" in origin.program.outputs or not check:
        return "answer"
    if len(outputs) == 1:
        return outputs[0]
    raise origin.error(
        f"the program has several outputs ({', '.join(outputs)}) and none is named answer; "
        "choose one with {name: <metric>, field: <output>}"
    )


def _check_output(field: Any, origin: _Origin, key: str) -> None:
    if field not in origin.program.outputs:
        raise origin.error(
            f"{key}: {field!r} is not an output of the program; its outputs: {', '.join(origin.program.outputs)}", key
        )


def _exact_match(example: Example, prediction: Prediction, fields: list[str] | None, outputs: list[str]) -> float:
    if fields is None:
        labels = example.labels().keys() if example.input_keys is not None else example.keys()
        fields = [name for name in labels if name in outputs]
        if not fields:
            raise MetricError(
                f"exact_match: none of the example's fields ({', '.join(labels) or 'none'}) is a program output "
                f"({', '.join(outputs)}); name the field to compare with {{name: exact_match, field: ...}}"
            )
    for field in fields:
        if field not in example:
            raise MetricError(f"exact_match: the example has no field {field!r}; its fields: {', '.join(example.keys())}")
        if field not in prediction:
            raise MetricError(f"exact_match: the prediction has no field {field!r}")
    return float(all(example[field] == prediction[field] for field in fields))


def _text(record: Example, field: str, what: str) -> str:
    if field not in record:
        raise MetricError(f"the {what} has no field {field!r}; its fields: {', '.join(record.keys()) or 'none'}")
    value = record[field]
    return "" if value is None else value if isinstance(value, str) else str(value)


def _golds(example: Example, field: str) -> list[str]:
    """A gold value is one answer or a list of accepted answers (as in DSPy's answer_exact_match)."""
    if field not in example:
        raise MetricError(f"the example has no field {field!r}; its fields: {', '.join(example.keys()) or 'none'}")
    value = example[field]
    answers = value if isinstance(value, list | tuple) else [value]
    if not answers:
        raise MetricError(f"the example's {field!r} is an empty list; expected at least one answer")
    return [str(answer) for answer in answers]


def _passages(prediction: Prediction, field: str) -> list[str]:
    if field not in prediction:
        raise MetricError(f"answer_passage_match: the prediction has no field {field!r} with passages")
    value = prediction[field]
    return [value] if isinstance(value, str) else [str(passage) for passage in value or []]


def _contains(predicted: str, golds: list[str]) -> bool:
    # Padded with spaces so "art" is not found in "party": whole normalized tokens only.
    text = f" {normalize_text(predicted)} "
    return any(f" {normalize_text(gold)} " in text for gold in golds)


# ----- Python metrics ----------------------------------------------------------------------------


@dataclass
class _PythonMetric:
    name: str
    function: Callable[..., Any]
    arity: int  # 2: (example, prediction); 3: (example, prediction, trace)

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        args = (example, prediction, trace)[: self.arity]
        try:
            # An object with an async __call__ is not a coroutine function; its call in the
            # thread returns a coroutine, awaited here.
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(*args)
            else:
                # A thread, as DSPy's evaluator uses: a slow or blocking metric (one that calls an
                # LM itself, say) must not stall every other example's LM calls.
                result = await asyncio.to_thread(self.function, *args)
                if inspect.isawaitable(result):
                    result = await result
        except DspxError:
            raise
        except Exception as exc:
            raise MetricError(f"metric {self.name} raised {type(exc).__name__}: {exc}") from exc
        return as_score(result, self.name)


def as_score(value: Any, name: str) -> float:
    """bool -> 1.0/0.0, a number -> float; a record with a `score` field (DSPy's dspy.Prediction(score=...))."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Example | Mapping) and "score" in value:
        return as_score(value["score"], name)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise MetricError(f"metric {name} returned {type(value).__name__} {shown}; expected a bool or a number")


def _python_metric(target: Any, origin: _Origin) -> Metric:
    try:
        function, path = load_function(target, origin.base_dir, prefix="dspx_metric")
    except PyFileError as exc:
        raise origin.error(f"python: {exc}", "python") from None
    function_name = target.rpartition(":")[2]
    return _PythonMetric(function_name, function, _arity(function, f"{path.name}:{function_name}", origin))


def _arity(function: Callable[..., Any], shown: str, origin: _Origin) -> int:
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
    positional: int, required: int, variadic: bool, keyword_only: bool, shown: str, takes: str, origin: _Origin
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


def _parsed_python_metric(target: Any, origin: _Origin) -> Metric:
    try:
        found = find_function(target, origin.base_dir)
    except PyFileError as exc:
        raise origin.error(f"python: {exc}", "python") from None
    definition = found.definition
    if definition is not None:
        args = definition.args
        positional = len(args.posonlyargs) + len(args.args)
        keyword_only = any(default is None for default in args.kw_defaults)
        _checked_arity(positional, positional - len(args.defaults), args.vararg is not None, keyword_only,
                       f"{found.path.name}:{found.name}", f"({ast.unparse(args)})", origin)
    return _ParsedPythonMetric(found.name)

