"""The built-in metrics, each registered in `METRICS` (see metric_base.py) with its options and docs line.

The text ones use DSPy's answer normalization (NFD, lowercase, drop ASCII punctuation, drop the
articles a/an/the, collapse whitespace); a gold value may be a list of accepted answers. `field`
names the compared field (default: `answer` if the program outputs it, else the program's only
output).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dspx_cli.core import Example, Prediction
from dspx_cli.core.json_values import jsonable
from dspx_cli.evaluate.metric_base import Metric, MetricError, MetricOrigin, register_metric

__all__ = ["f1_score", "last_number", "normalize_text", "passage_match"]

# ----- DSPy's text normalization and scores ------------------------------------------------------

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = r"\b(a|an|the)\b"  # compiled (and cached by re) on first use


def normalize_text(text: str) -> str:
    """DSPy's `normalize_text`, in its order: NFD, lowercase, punctuation, articles, whitespace."""
    text = unicodedata.normalize("NFD", text).lower().translate(_PUNCTUATION)
    return " ".join(re.sub(_ARTICLES, " ", text).split())


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


# ----- the registered metrics --------------------------------------------------------------------


@dataclass
class _Scored:
    """A built-in metric: a plain scoring function behind the async metric interface."""

    name: str
    score: Callable[[Example, Prediction], float]

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        return self.score(example, prediction)


@register_metric(
    "exact_match",
    {"field"},
    "1 if every label field equals the prediction's, compared as they are (no normalization)",
)
def _build_exact_match(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    outputs = list(origin.program.outputs)
    fields = options.get("field")
    if fields is not None:
        fields = [fields] if isinstance(fields, str) else fields
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise origin.error("field: expected a field name or a list of names", "field")
        for field in fields:
            _check_output(field, origin, "field")
    return _Scored("exact_match", lambda ex, pred: _exact_match(ex, pred, fields, outputs))


@register_metric(
    "answer_exact_match",
    {"field", "frac"},
    "1 if the normalized prediction equals a normalized gold answer; with `frac` < 1, if F1 >= frac",
)
def _build_answer_exact_match(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    field = _answer_field(options, origin, check=True)
    frac = options.get("frac", 1.0)
    if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac <= 1:
        raise origin.error(f"frac: expected a number from 0 to 1, got {frac!r}", "frac")

    def answer_exact(example: Example, prediction: Prediction) -> float:
        predicted, golds = _text(prediction, field, "prediction"), _golds(example, field)
        if frac >= 1:
            return float(any(normalize_text(predicted) == normalize_text(gold) for gold in golds))
        return float(max(f1_score(predicted, gold) for gold in golds) >= frac)

    return _Scored("answer_exact_match", answer_exact)


@register_metric(
    "answer_passage_match",
    {"field", "passages"},
    "1 if a passage of the prediction's `context` (`passages`) contains a gold answer's tokens",
)
def _build_answer_passage_match(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    # Gold answers from the example, passages from the prediction.
    field = _answer_field(options, origin, check=False)
    passages = options.get("passages", "context")
    _check_output(passages, origin, "passages")
    return _Scored(
        "answer_passage_match", lambda ex, pred: float(passage_match(_passages(pred, passages), _golds(ex, field)))
    )


@register_metric("f1", {"field"}, "token F1 of the normalized texts, the best over the gold answers")
def _build_f1(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    field = _answer_field(options, origin, check=True)
    return _Scored("f1", lambda ex, pred: max(f1_score(_text(pred, field, "prediction"), g) for g in _golds(ex, field)))


@register_metric(
    "contains", {"field"}, "1 if a normalized gold answer occurs, on token boundaries, in the normalized prediction"
)
def _build_contains(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    field = _answer_field(options, origin, check=True)
    return _Scored("contains", lambda ex, pred: float(_contains(_text(pred, field, "prediction"), _golds(ex, field))))


@register_metric("regex", {"field", "pattern"}, "1 if `re.search(pattern, prediction field)` finds a match")
def _build_regex(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    field = _answer_field(options, origin, check=True)
    pattern = options.get("pattern")
    if not isinstance(pattern, str):
        raise origin.error(
            "metric regex needs `pattern: <regular expression>`", *(("pattern",) if "pattern" in options else ())
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise origin.error(f"pattern: invalid regular expression: {exc}", "pattern") from None
    return _Scored("regex", lambda ex, pred: float(compiled.search(_text(pred, field, "prediction")) is not None))


@register_metric(
    "numeric_match",
    {"field"},
    "1 if the last number in the prediction equals a gold number (thousands commas, units and words ignored)",
)
def _build_numeric_match(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
    field = _answer_field(options, origin, check=True)

    def numeric(example: Example, prediction: Prediction) -> float:
        predicted = last_number(_text(prediction, field, "prediction"))
        return float(predicted is not None and any(last_number(gold) == predicted for gold in _golds(example, field)))

    return _Scored("numeric_match", numeric)


# A number not glued to a word or another number: "-3" in "= -3", but only "3" in "5-3" or "x3".
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?|(?<=\w)\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def last_number(text: str) -> Decimal | None:
    """The last number written in `text` ("$1,200." -> 1200, "x = 7 apples" -> 7), or None.

    The last one, as GSM8K's scorers take it: a model that shows its working ends with the result.
    Decimal, so "42", "42.0" and 42 are equal and no float rounding makes two answers meet.
    """
    found = _NUMBER.findall(_THOUSANDS.sub("", text))
    return Decimal(found[-1]) if found else None


# ----- shared checks and field access ------------------------------------------------------------


def _answer_field(options: Mapping[str, Any], origin: MetricOrigin, *, check: bool) -> str:
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


def _check_output(field: Any, origin: MetricOrigin, key: str) -> None:
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
            raise MetricError(
                f"exact_match: the example has no field {field!r}; its fields: {', '.join(example.keys())}"
            )
        if field not in prediction:
            raise MetricError(f"exact_match: the prediction has no field {field!r}")
    return float(all(_same(example[field], prediction[field]) for field in fields))


def _same(gold: Any, predicted: Any) -> bool:
    # A declared object type (`types:`) is parsed into a pydantic model, while a dataset's label is
    # the JSON object it was written as: compare the prediction's JSON form with it.
    if gold == predicted:
        return True
    objects = predicted if isinstance(predicted, list) else [predicted]
    if any(hasattr(value, "model_dump") for value in objects):
        return bool(gold == jsonable(predicted))
    return False


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
