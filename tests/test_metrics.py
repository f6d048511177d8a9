"""Metrics: the built-ins against values worked out from DSPy's definitions, Python metric files,
and the LM judge against the loopback server."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example, Prediction
from dspx_cli.errors import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    DspxError,
    ProgramError,
    UsageError,
)
from dspx_cli.evaluate import BUILTIN_METRICS, Metric, MetricError, resolve_metric
from dspx_cli.evaluate.metrics import f1_score, normalize_text, passage_match
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from tests.lm_server import LMServer

QA = """\
signatures:
  qa:
    inputs: {question: str}
    outputs: {answer: str}
modules:
  answer:
    signature: qa
"""

TWO_OUTPUTS = """\
signatures:
  qa:
    inputs: {question: str}
    outputs: {label: str, note: str}
modules:
  answer:
    signature: qa
"""


def make_program(tmp_path: Path, metric: str, body: str = QA, env: dict[str, str] | None = None) -> Program:
    path = tmp_path / "program.yaml"
    path.write_text(body + textwrap.dedent(metric))
    return load_program(path, env=env or {})


def score(
    metric: Metric, gold: dict[str, Any], predicted: dict[str, Any], inputs: tuple[str, ...] = ("question",)
) -> float:
    example = Example(question="q", **gold).with_inputs(*inputs)
    return asyncio.run(metric(example, Prediction(**predicted)))


def builtin(tmp_path: Path, spec: str, body: str = QA) -> Metric:
    return resolve_metric(make_program(tmp_path, f"metric: {spec}\n", body), None)


def located(error: DspxError, program: Program, needle: str) -> str:
    """The error's text after checking it points at the line holding `needle`."""
    line = next(n for n, text in enumerate(program.path.read_text().splitlines(), 1) if needle in text)
    assert isinstance(error, ProgramError) and error.exit_code == EXIT_USAGE
    assert str(error).startswith(f"{program.path}:{line}:"), str(error)
    return error.detail


# ----- DSPy's normalization and scores -----------------------------------------------------------


def test_normalize_text_follows_dspy() -> None:
    assert normalize_text("The,  Eiffel  Tower!") == "eiffel tower"
    assert normalize_text("An apple a day") == "apple day"  # articles go, on word boundaries only
    assert normalize_text("Theater, anthem; Able") == "theater anthem able"
    assert normalize_text("the-end") == "theend"  # punctuation goes before articles are looked for
    assert normalize_text(" A\tB\n") == "b"
    assert normalize_text("Café") == "cafe\u0301"  # NFD: the accent is a separate combining mark


def test_f1_partial_overlap() -> None:
    assert f1_score("the quick brown fox", "Quick brown dog") == pytest.approx(2 / 3)  # 2 shared of 3 and 3
    assert f1_score("Eiffel Tower is in Paris", "Paris") == pytest.approx(1 / 3)  # P = 1/5, R = 1
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)  # shared tokens counted with multiplicity
    assert f1_score("Paris!", "the paris") == 1.0
    assert f1_score("", "") == 0.0  # DSPy's choice for the both-empty edge case
    assert f1_score("london", "paris") == 0.0


def test_passage_match_uses_whole_tokens_in_sequence() -> None:
    passages = ["Nothing here.", "The Eiffel Tower is in Paris."]
    assert passage_match(passages, ["eiffel tower"])
    assert passage_match(passages, ["Tower is"])
    assert not passage_match(passages, ["Tower in"])  # not contiguous
    assert not passage_match(passages, ["Eiffel Tow"])  # a token prefix is not a token
    assert passage_match(passages, ["Louvre", "PARIS"])  # any of several answers
    assert not passage_match([], ["paris"])


# ----- built-ins ---------------------------------------------------------------------------------


def test_exact_match_is_strict_on_every_label_field_the_program_outputs(tmp_path: Path) -> None:
    metric = builtin(tmp_path, "exact_match")
    assert metric.name == "exact_match"
    assert score(metric, {"answer": "Paris"}, {"answer": "Paris"}) == 1.0
    assert score(metric, {"answer": "Paris"}, {"answer": "paris"}) == 0.0  # no normalization
    assert score(metric, {"answer": 8}, {"answer": "8"}) == 0.0  # nor conversion
    # A label the program does not output (an id, a source) is not compared.
    assert score(metric, {"answer": "Paris", "id": 17}, {"answer": "Paris"}) == 1.0

    both = builtin(tmp_path, "exact_match", TWO_OUTPUTS)
    assert score(both, {"label": "a", "note": "n"}, {"label": "a", "note": "n"}) == 1.0
    assert score(both, {"label": "a", "note": "n"}, {"label": "a", "note": "m"}) == 0.0
    only_label = builtin(tmp_path, "{name: exact_match, field: label}", TWO_OUTPUTS)
    assert score(only_label, {"label": "a", "note": "n"}, {"label": "a", "note": "m"}) == 1.0
    with pytest.raises(MetricError, match=r"none of the example's fields .*is a program output"):
        score(metric, {"id": 1}, {"answer": "x"})


def test_answer_exact_match_normalizes_and_accepts_a_list_of_answers(tmp_path: Path) -> None:
    metric = builtin(tmp_path, "answer_exact_match")
    assert score(metric, {"answer": ["Eiffel Tower", "Louvre"]}, {"answer": "The Eiffel Tower"}) == 1.0
    assert score(metric, {"answer": "Paris"}, {"answer": "  paris. "}) == 1.0
    assert score(metric, {"answer": "Paris, France"}, {"answer": "paris"}) == 0.0
    assert score(metric, {"answer": 8}, {"answer": "8"}) == 1.0  # numbers compared as their text
    # frac < 1: the best F1 must reach it (F1 here is 1/3).
    loose = builtin(tmp_path, "{name: answer_exact_match, frac: 0.3}")
    strict = builtin(tmp_path, "{name: answer_exact_match, frac: 0.5}")
    assert score(loose, {"answer": "Paris"}, {"answer": "Eiffel Tower is in Paris"}) == 1.0
    assert score(strict, {"answer": "Paris"}, {"answer": "Eiffel Tower is in Paris"}) == 0.0


def test_numeric_match_compares_the_last_number_written(tmp_path: Path) -> None:
    metric = builtin(tmp_path, "numeric_match")
    assert score(metric, {"answer": "1200"}, {"answer": "$1,200."}) == 1.0
    assert score(metric, {"answer": 42}, {"answer": "42.0 apples"}) == 1.0
    assert score(metric, {"answer": "7"}, {"answer": "5 + 3 = 8, minus 1 is 7"}) == 1.0  # the last number
    assert score(metric, {"answer": "8"}, {"answer": "8 - 1 = 7"}) == 0.0
    assert score(metric, {"answer": "-4"}, {"answer": "x = -4"}) == 1.0
    assert score(metric, {"answer": "4"}, {"answer": "5-4"}) == 1.0  # a minus between numbers is no sign
    assert score(metric, {"answer": ["3", "4"]}, {"answer": "4"}) == 1.0
    assert score(metric, {"answer": "0"}, {"answer": "none"}) == 0.0  # no number is no match
    assert score(metric, {"answer": "12"}, {"answer": "12.5"}) == 0.0


def test_f1_contains_and_regex(tmp_path: Path) -> None:
    f1 = builtin(tmp_path, "f1")
    assert score(f1, {"answer": ["dog", "quick brown dog"]}, {"answer": "The quick brown fox"}) == pytest.approx(2 / 3)
    contains = builtin(tmp_path, "contains")
    assert score(contains, {"answer": "paris"}, {"answer": "It is Paris, France."}) == 1.0
    assert score(contains, {"answer": "Paris"}, {"answer": "Parisian cafes"}) == 0.0  # whole tokens only
    assert score(contains, {"answer": ["Rome", "the new york"]}, {"answer": "In New York!"}) == 1.0
    regex = builtin(tmp_path, '{name: regex, pattern: "^[0-9]+$"}')
    assert score(regex, {}, {"answer": "42"}) == 1.0
    assert score(regex, {}, {"answer": "42 apples"}) == 0.0
    assert score(regex, {}, {"answer": 7}) == 1.0


def test_answer_passage_match_reads_the_predictions_context(tmp_path: Path) -> None:
    body = QA.replace("outputs: {answer: str}", 'outputs: {context: "list[str]", answer: str}')
    metric = builtin(tmp_path, "answer_passage_match", body)
    passages = ["Rome is in Italy.", "The Eiffel Tower is in Paris."]
    assert score(metric, {"answer": "Eiffel Tower"}, {"context": passages, "answer": ""}) == 1.0
    assert score(metric, {"answer": ["Big Ben", "LOUVRE"]}, {"context": passages, "answer": ""}) == 0.0
    error = pytest.raises(ProgramError, builtin, tmp_path, "answer_passage_match").value
    assert "passages: 'context' is not an output of the program; its outputs: answer" in str(error)


def test_the_field_defaults_to_answer_or_the_only_output(tmp_path: Path) -> None:
    sentiment = QA.replace("outputs: {answer: str}", "outputs: {sentiment: str}")
    for name in ("exact_match", "answer_exact_match", "f1", "contains"):
        metric = builtin(tmp_path, name, sentiment)
        assert score(metric, {"sentiment": "positive"}, {"sentiment": "positive"}) == 1.0
        assert score(metric, {"sentiment": "positive"}, {"sentiment": "negative"}) == 0.0
    chosen = builtin(tmp_path, "{name: f1, field: note}", TWO_OUTPUTS)
    assert score(chosen, {"note": "x y"}, {"note": "x z", "label": "x y"}) == pytest.approx(0.5)

    program = make_program(tmp_path, "metric: f1\n", TWO_OUTPUTS)
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert "several outputs (label, note) and none is named answer" in located(error, program, "metric: f1")


def test_scoring_a_record_without_the_field_is_a_runtime_error(tmp_path: Path) -> None:
    metric = builtin(tmp_path, "f1")
    with pytest.raises(MetricError, match="the example has no field 'answer'; its fields: question") as caught:
        score(metric, {}, {"answer": "x"})
    assert caught.value.exit_code == EXIT_RUNTIME
    with pytest.raises(MetricError, match="the prediction has no field 'answer'"):
        score(metric, {"answer": "x"}, {})


def test_metric_spec_errors_are_located(tmp_path: Path) -> None:
    program = make_program(tmp_path, "metric: accuracy\n")
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    detail = located(error, program, "metric: accuracy")
    assert detail.startswith("unknown metric 'accuracy'; expected a built-in (")
    assert all(name in detail for name in BUILTIN_METRICS) and "{python:" in detail and "{judge:" in detail

    program = make_program(tmp_path, "metric:\n  name: f1\n  feild: answer\n")
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert located(error, program, "feild") == "unknown option 'feild' for metric f1; did you mean 'field'?"
    program = make_program(tmp_path, "metric:\n  name: f1\n  colour: answer\n")
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert located(error, program, "colour") == "unknown option 'colour' for metric f1; its options: field"
    program = make_program(tmp_path, "metric: exact_macth\n")
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert located(error, program, "metric:") == "unknown metric 'exact_macth'; did you mean 'exact_match'?"

    program = make_program(tmp_path, 'metric:\n  name: regex\n  pattern: "(unclosed"\n')
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert located(error, program, "pattern:").startswith("pattern: invalid regular expression: missing )")
    program = make_program(tmp_path, "metric: regex\n")
    assert "needs `pattern: <regular expression>`" in str(
        pytest.raises(ProgramError, resolve_metric, program, None).value
    )
    program = make_program(tmp_path, "metric: {name: answer_exact_match, frac: 2}\n")
    assert "frac: expected a number from 0 to 1, got 2" in str(
        pytest.raises(ProgramError, resolve_metric, program, None).value
    )
    program = make_program(tmp_path, "metric: {name: f1, python: m.py:f}\n")
    assert "exactly one of the keys name, python, judge" in str(
        pytest.raises(ProgramError, resolve_metric, program, None).value
    )

    program = make_program(tmp_path, "")
    error = pytest.raises(UsageError, resolve_metric, program, None).value
    assert str(error) == f"{program.path} has no metric; add `metric: exact_match` (or another) to it"
    # A spec from the command line is a usage error with no file position.
    error = pytest.raises(UsageError, resolve_metric, program, None, "bleu").value
    assert str(error).startswith("--metric: unknown metric 'bleu'")
    assert resolve_metric(program, None, {"name": "f1"}).name == "f1"


# ----- Python metrics ----------------------------------------------------------------------------


METRICS_PY = """\
import asyncio
from helper import same  # a neighbour of this file

def sync_bool(example, prediction, trace=None):
    return same(example.answer, prediction.answer)

async def async_float(example, prediction):
    await asyncio.sleep(0)
    return 0.25

def sees_trace(example, prediction, trace):
    return 1 if trace == ["step"] else 0

def returns_text(example, prediction):
    return "yes"

def returns_record(example, prediction, trace=None):
    return {"score": 0.75, "feedback": "close"}

def fails(example, prediction):
    return example.missing

def one_arg(example):
    return 1.0

def four_args(example, prediction, trace, extra):
    return 1.0

def keyword_needed(example, prediction, *, strict):
    return 1.0

def flexible(*args):
    return len(args)
"""


def python_metric(tmp_path: Path, target: str) -> Metric:
    (tmp_path / "metrics.py").write_text(METRICS_PY)
    (tmp_path / "helper.py").write_text("def same(a, b):\n    return a == b\n")
    return resolve_metric(make_program(tmp_path, f'metric: {{python: "{target}"}}\n'), None)


def test_python_metrics_sync_async_bool_and_numbers(tmp_path: Path) -> None:
    metric = python_metric(tmp_path, "metrics.py:sync_bool")
    assert metric.name == "sync_bool"
    assert score(metric, {"answer": "a"}, {"answer": "a"}) == 1.0
    assert score(metric, {"answer": "a"}, {"answer": "b"}) == 0.0
    assert score(python_metric(tmp_path, "metrics.py:async_float"), {}, {}) == 0.25
    assert score(python_metric(tmp_path, "metrics.py:returns_record"), {}, {}) == 0.75  # dspy.Prediction(score=...)
    assert score(python_metric(tmp_path, "metrics.py:flexible"), {}, {}) == 3.0  # *args gets the trace too

    traced = python_metric(tmp_path, "metrics.py:sees_trace")
    example = Example(question="q").with_inputs("question")
    assert asyncio.run(traced(example, Prediction(), ["step"])) == 1.0
    assert asyncio.run(traced(example, Prediction())) == 0.0


def test_python_metric_bad_results_are_runtime_errors(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match=r"metric returns_text returned str 'yes'; expected a bool or a number"):
        score(python_metric(tmp_path, "metrics.py:returns_text"), {}, {})
    with pytest.raises(MetricError, match=r"metric fails raised AttributeError: Example has no field 'missing'"):
        score(python_metric(tmp_path, "metrics.py:fails"), {}, {})


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "metrics.py:one_arg",
            "metrics.py:one_arg must take (example, prediction) or (example, prediction, trace); it takes (example)",
        ),
        ("metrics.py:four_args", "it takes (example, prediction, trace, extra)"),
        ("metrics.py:keyword_needed", "it takes (example, prediction, *, strict)"),
        (
            "metrics.py:nothing",
            "metrics.py defines no function 'nothing'; its functions: async_float, fails, flexible,",
        ),
        ("gone.py:f", "python: file not found: "),
        ("metrics.py", "python: expected \"file.py:function\", got 'metrics.py'"),
    ],
)
def test_python_metric_problems_are_located(tmp_path: Path, target: str, message: str) -> None:
    with pytest.raises(ProgramError) as caught:
        python_metric(tmp_path, target)
    assert message in caught.value.detail
    assert str(caught.value).startswith(f"{tmp_path / 'program.yaml'}:{len(QA.splitlines()) + 1}:")


def test_python_metric_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(example, prediction):\n    return (\n")
    program = make_program(tmp_path, 'metric: {python: "broken.py:f"}\n')
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert f"python: importing {tmp_path / 'broken.py'} failed: SyntaxError" in str(error)


# ----- the LM judge ------------------------------------------------------------------------------


PROGRAM_LM = """\
lm:
  model: openai/program-model
  api_base: ${BASE}
  max_tokens: 50
"""


def judge_program(tmp_path: Path, server: LMServer, judge: str) -> Program:
    return make_program(
        tmp_path,
        f"metric:\n  judge:\n{textwrap.indent(textwrap.dedent(judge), '    ')}",
        PROGRAM_LM + QA,
        {"BASE": server.api_base},
    )


async def judged(program: Program, example: Example, prediction: Prediction) -> float:
    context = RunContext(base_dir=program.base_dir)
    try:
        metric = resolve_metric(program, context)
        return await metric(example, prediction)
    finally:
        await context.aclose()


def test_judge_fills_its_inputs_from_example_and_prediction(tmp_path: Path, lm_server: LMServer) -> None:
    lm_server.responder = lambda body: "[[ ## score ## ]]\n0.5\n\n[[ ## completed ## ]]"
    program = judge_program(
        tmp_path,
        lm_server,
        """\
        signature: "question, answer, gold_answer -> score"
        instructions: Grade the answer against the gold answer.
        """,
    )
    example = Example(question="Capital of France?", answer="Paris").with_inputs("question")
    result = asyncio.run(judged(program, example, Prediction(answer="Lyon")))
    assert result == 0.5

    (request,) = lm_server.requests
    assert request.body["model"] == "program-model" and request.body["max_tokens"] == 50  # the program's LM
    system, user = request.body["messages"][0]["content"], request.body["messages"][-1]["content"]
    assert "Grade the answer against the gold answer." in system
    assert "`score` (float)" in system  # an untyped `score` is asked for as a number
    assert "[[ ## question ## ]]\nCapital of France?" in user
    assert "[[ ## answer ## ]]\nLyon" in user  # unprefixed: the prediction's value
    assert "[[ ## gold_answer ## ]]\nParis" in user


def test_judge_with_its_own_lm_and_a_bool_verdict(tmp_path: Path, lm_server: LMServer) -> None:
    lm_server.responder = lambda body: "[[ ## correct ## ]]\nTrue\n\n[[ ## completed ## ]]"
    program = judge_program(
        tmp_path,
        lm_server,
        f"""\
        signature: "question, gold_answer, predicted_answer -> correct: bool"
        lm: {{model: openai/judge-model, api_base: "{lm_server.api_base}", temperature: 0.0}}
        """,
    )
    example = Example(question="2+2?", answer="4").with_inputs("question")
    assert asyncio.run(judged(program, example, Prediction(answer="four"))) == 1.0
    (request,) = lm_server.requests
    assert request.body["model"] == "judge-model" and request.body["temperature"] == 0.0
    user = request.body["messages"][-1]["content"]
    assert "[[ ## gold_answer ## ]]\n4" in user and "[[ ## predicted_answer ## ]]\nfour" in user

    lm_server.responder = lambda body: "[[ ## correct ## ]]\nFalse\n\n[[ ## completed ## ]]"
    assert asyncio.run(judged(program, example, Prediction(answer="five"))) == 0.0


def test_judge_problems(tmp_path: Path, lm_server: LMServer) -> None:
    program = judge_program(tmp_path, lm_server, 'signature: "question, answer -> verdict: str"\n')
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert "needs an output `score: float` or `correct: bool`; it has verdict" in located(
        error, program, 'signature: "question'
    )

    program = judge_program(tmp_path, lm_server, 'signature: "question -> score"\nmodel: x\n')
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert located(error, program, "model: x").startswith("unknown key 'model' in the judge")

    program = judge_program(tmp_path, lm_server, 'signature: "question -> score"\nlm: {model: m, temprature: 1}\n')
    error = pytest.raises(ProgramError, resolve_metric, program, None).value
    assert "judge.lm.temprature" in str(error)

    # Without a run context the judge is checked but cannot score.
    program = judge_program(tmp_path, lm_server, 'signature: "question, context -> score"\n')
    metric = resolve_metric(program, None)
    with pytest.raises(MetricError, match="the LM judge has no LM"):
        score(metric, {}, {"answer": "x"})
    example = Example(question="q").with_inputs("question")
    with pytest.raises(MetricError, match="judge input 'context' is not a field of the prediction"):
        asyncio.run(judged(program, example, Prediction(answer="x")))
    assert lm_server.requests == []


def test_judge_default_lm_follows_the_lm_override(tmp_path: Path, lm_server: LMServer) -> None:
    lm_server.responder = lambda body: (
        "[[ ## reasoning ## ]]\nClose enough.\n\n[[ ## score ## ]]\n0.8\n\n[[ ## completed ## ]]"
    )
    path = tmp_path / "program.yaml"
    path.write_text(
        PROGRAM_LM + QA + 'metric:\n  judge: {signature: "answer, gold_answer -> score: float", type: cot}\n'
    )
    program = load_program(path, env={"BASE": lm_server.api_base}, lm_override="openai/override-model")
    example = Example(question="q", answer="Paris").with_inputs("question")
    assert asyncio.run(judged(program, example, Prediction(answer="paris"))) == 0.8
    (request,) = lm_server.requests
    assert request.body["model"] == "override-model"
    assert "`reasoning`" in request.body["messages"][0]["content"]  # chain_of_thought adds it
