"""`-i FIELD=VALUE` and `--batch FILE`: values checked against the field's type before any LM call,
optional inputs that may be left out, and help that does not offer two options reading alike."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from dspx_cli.program.input_types import allows_none, type_mismatch
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

FIXTURE = Path(__file__).parent / "fixtures" / "optional_inputs" / "dspy_messages.json"

TYPED = """\
modules:
  m:
    signature: >-
      tags: list[str], k: int, ratio: float, mode: Literal['fast', 'slow'],
      weights: dict[str, float], note: Optional[str] -> answer
"""
GOOD = ["-i", 'tags=["a", "b"]', "-i", "k=3", "-i", "ratio=2", "-i", "mode=fast", "-i", 'weights={"x": 0.5}']


def typed_program(tmp_path: Path) -> Path:
    path = tmp_path / "typed.yaml"
    path.write_text(TYPED)
    return path


def good_args_except(field: str) -> list[str]:
    return [
        arg
        for flag, pair in zip(GOOD[::2], GOOD[1::2], strict=True)
        if not pair.startswith(field + "=")
        for arg in (flag, pair)
    ]


def user_message(done: Any) -> str:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]["messages"][-1]["content"]


def test_good_values_pass_as_typed(tmp_path: Path) -> None:
    user = user_message(dspx("inspect", str(typed_program(tmp_path)), *GOOD, "--json"))
    assert '[[ ## tags ## ]]\n["a", "b"]\n\n[[ ## k ## ]]\n3\n\n[[ ## ratio ## ]]\n2\n\n' in user
    assert '[[ ## mode ## ]]\nfast\n\n[[ ## weights ## ]]\n{"x": 0.5}\n\n' in user


@pytest.mark.parametrize(
    "override, fragment",
    [
        ('tags="abc"', "-i tags: expected list[str], got '\"abc\"'"),
        ("tags=abc", "-i tags: expected JSON for type list[str], got 'abc'"),
        ("tags=[1]", "item [0]: 1 is not a str"),
        ("k=3.5", "-i k: expected int, got '3.5' (3.5 is not an int)"),
        ("k=true", "-i k: expected int"),
        ('k="3"', "-i k: expected int"),
        ("ratio=true", "-i ratio: expected float"),
        ("mode=medium", "-i mode: expected Literal['fast', 'slow'], got 'medium'"),
        ('weights={"x": "a"}', "key 'x'"),
        ("weights=[1]", "-i weights: expected dict[str, float]"),
    ],
)
def test_a_value_that_does_not_fit_its_type_is_exit_2(tmp_path: Path, override: str, fragment: str) -> None:
    field = override.split("=", 1)[0]
    done = dspx("inspect", str(typed_program(tmp_path)), *good_args_except(field), "-i", override)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert done.stdout == ""


@pytest.mark.parametrize("override", ["k=" + "9" * 5000, "tags=" + "[" * 100_000, "tags=" + "[" * 900 + "]" * 900])
def test_hostile_values_are_a_one_line_exit_2(tmp_path: Path, override: str) -> None:
    field = override.split("=", 1)[0]
    done = dspx("inspect", str(typed_program(tmp_path)), *good_args_except(field), "-i", override)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: -i {field}: expected ") and len(line) < 400


def test_a_repeated_input_is_exit_2(tmp_path: Path) -> None:
    done = dspx("inspect", str(typed_program(tmp_path)), *GOOD, "-i", "k=4")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: -i k: given more than once; pass each input once"


def test_a_file_given_to_i_points_to_batch() -> None:
    done = dspx("run", "programs/sentiment.yaml", "--input", "rows.jsonl")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: -i 'rows.jsonl': expected FIELD=VALUE; to run every JSON line of a file, use --batch rows.jsonl"
    )


def test_run_help_has_one_input_option_and_batch() -> None:
    done = dspx("run", "--help")
    assert done.returncode == 0
    assert done.stdout.count("--input") == 1 and "-i, --input FIELD=VALUE" in done.stdout
    assert "--batch FILE" in done.stdout


def test_optional_inputs_may_be_omitted_and_prompts_match_dspy(lm_server: LMServer, tmp_path: Path) -> None:
    """Left out: no section, as a DSPy module called without the keyword; `null`: the text None."""
    golden = json.loads(FIXTURE.read_text())
    path = tmp_path / "p.yaml"
    path.write_text(
        'lm: {model: openai/test-model, api_base: "${BASE}", api_key: x}\n'
        f"modules:\n  m: {{signature: {json.dumps(golden['signature'])}}}\n"
    )
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nBrussels\n\n[[ ## completed ## ]]"
    for case, expected in golden["cases"].items():
        args = []
        for name, value in expected["inputs"].items():
            args += ["-i", f"{name}={'null' if value is None else value}"]
        done = dspx("run", str(path), *args, "--no-cache", "--json", BASE=lm_server.api_base)
        assert done.returncode == 0, (case, done.stderr)
        assert json.loads(done.stdout) == {"answer": "Brussels"}
        assert lm_server.requests[-1].body["messages"] == expected["messages"], case
    # A required input is still required.
    done = dspx("run", str(path), "-i", "context=x", BASE=lm_server.api_base)
    assert done.returncode == 2 and "missing input(s) question" in done.stderr


def test_batch_rows_may_omit_optional_inputs(lm_server: LMServer, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/test-model, api_base: "${BASE}", api_key: x}
            modules:
              m: {signature: "question: str, context: Optional[str] -> answer"}
            """
        )
    )
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
    rows = '{"question": "a"}\n{"question": "b", "context": "c"}\n{"context": "c"}\n'
    done = dspx("run", str(path), "--batch", "-", "-j", "1", input=rows, BASE=lm_server.api_base)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[:2] == [{"answer": "ok"}, {"answer": "ok"}]
    assert records[2]["error"]["line"] == 3 and "missing input(s) question" in records[2]["error"]["message"]
    sent = [r.body["messages"][-1]["content"] for r in lm_server.requests]
    assert sum("[[ ## context ## ]]" in text for text in sent) == 1


@pytest.mark.parametrize(
    "value, annotation, fits",
    [
        (3, int, True),
        (True, int, False),
        (3, float, True),
        ([1, 2], tuple[int, ...], True),
        ([1, "a"], tuple[int, str], True),
        ([1], tuple[int, str], False),
        ({"1": "a"}, dict[int, str], True),
        ({"x": "a"}, dict[int, str], False),
        (None, Optional[int], True),
        ("a", Optional[int], False),
        (1, Literal[1, 2], True),
        (True, Literal[1, 2], False),
        ({"a": [1]}, Any, True),
        ([["a"]], list[list[str]], True),
        ([["a", 1]], list[list[str]], False),
    ],
)
def test_type_mismatch(value: Any, annotation: Any, fits: bool) -> None:
    assert (type_mismatch(value, annotation) is None) is fits


def test_allows_none() -> None:
    assert allows_none(Optional[str]) and allows_none(int | None) and allows_none(type(None))
    assert not allows_none(str) and not allows_none(list[str]) and not allows_none(Any)
