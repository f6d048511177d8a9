"""`type: python` modules: a function of the program's own file as a flow step between LM steps.

Every test goes through the CLI; the LM steps talk to the real loopback server (tests/lm_server.py).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

PROGRAM = """\
lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
modules:
  summarize: {signature: "text -> summary"}
  count:
    type: python
    function: steps.py:%s
    signature: "summary: str -> words: list[str], count: int"
  judge: {signature: "summary, count: int -> verdict"}
flow:
  - {id: s, module: summarize, with: {text: $input.text}}
  - {id: c, module: count, with: {summary: $s.summary}}
  - {id: j, module: judge, with: {summary: $s.summary, count: $c.count}}
output: {verdict: $j.verdict, words: $c.words}
"""

STEPS = """\
import asyncio


def _count(summary):
    if summary.startswith("boom"):
        raise ValueError("cannot count " + summary)
    if summary.startswith("wrong"):
        return {"words": summary.split(), "count": "many"}
    if summary.startswith("extra"):
        return {"words": [], "count": 0, "colour": "red"}
    return {"words": summary.split(), "count": str(len(summary.split()))}


def count_sync(summary):
    return _count(summary)


async def count_async(summary):
    await asyncio.sleep(0)
    return _count(summary)
"""


def field(content: str, name: str) -> str | None:
    found = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)\n", content)
    return found.group(1) if found else None


def respond(body: dict) -> str:
    """summarize: the text as its summary; judge: says how many words it was told there were."""
    content = body["messages"][-1]["content"]
    count = field(content, "count")
    if count is not None:
        return f"[[ ## verdict ## ]]\n{count} words\n\n[[ ## completed ## ]]"
    return f"[[ ## summary ## ]]\n{field(content, 'text')}\n\n[[ ## completed ## ]]"


def setup(tmp_path: Path, function: str = "count_sync", program: str = PROGRAM) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    path = tmp_path / "p.yaml"
    path.write_text(program % function)
    return path


@pytest.mark.parametrize("function", ["count_sync", "count_async"])
def test_a_python_step_between_two_lm_steps(lm_server: LMServer, tmp_path: Path, function: str) -> None:
    lm_server.responder = respond
    path = setup(tmp_path, function)
    done = dspx("run", str(path), "-i", "text=three little words", "--json", "--no-cache", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    # The function returned count "3" (a string): checked as an int output, the judge sees 3.
    assert json.loads(done.stdout) == {"verdict": "3 words", "words": ["three", "little", "words"]}
    assert len(lm_server.requests) == 2
    assert field(lm_server.requests[1].body["messages"][-1]["content"], "count") == "3"


def test_batch_rows_that_fail_in_the_python_step_keep_the_others(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = respond
    path = setup(tmp_path)
    rows = ["one two", "boom here", "wrong type", "extra keys", "four"]
    done = dspx(
        "run",
        str(path),
        "--batch",
        "-",
        "--no-cache",
        input="".join(json.dumps({"text": row}) + "\n" for row in rows),
        BASE=lm_server.api_base,
    )
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0] == {"verdict": "2 words", "words": ["one", "two"]}
    assert records[4] == {"verdict": "1 words", "words": ["four"]}
    errors = [record["error"] for record in records[1:4]]
    assert [error["line"] for error in errors] == [2, 3, 4]
    assert {error["type"] for error in errors} == {"PythonStepError"}
    raised, wrong, extra = (error["message"] for error in errors)
    steps_file = tmp_path / "steps.py"
    assert raised == (
        f"python step 'count' (steps.py:count_sync) raised ValueError: cannot count boom here at {steps_file}:6"
    )
    assert wrong.startswith("python step 'count' (steps.py:count_sync) returned count='many', not a valid int")
    assert extra == (
        "python step 'count' (steps.py:count_sync) returned keys that do not fit its signature: unexpected colour"
    )


def test_evaluate_counts_a_python_step_error_as_a_failed_example(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = respond
    rows = [
        {"text": "a b", "verdict": "2 words"},
        {"text": "boom now", "verdict": "2 words"},
        {"text": "a b c", "verdict": "3 words"},
        {"text": "x", "verdict": "2 words"},
    ]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    program = PROGRAM + "data: {dev: dev.jsonl, inputs: [text]}\nmetric: exact_match\n"
    path = setup(tmp_path, "count_async", program)
    done = dspx("evaluate", str(path), "--json", "--output", str(tmp_path / "run"), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["examples"], summary["errors"], summary["score"]) == (4, 1, 0.5)
    examples = [json.loads(line) for line in (tmp_path / "run" / "examples.jsonl").read_text().splitlines()]
    failed = [example for example in examples if example.get("error")]
    assert len(failed) == 1 and "raised ValueError: cannot count boom now" in json.dumps(failed[0])

    stopped = dspx(
        "evaluate",
        str(path),
        "--max-errors",
        "0",
        "-j",
        "1",
        "--output",
        str(tmp_path / "run2"),
        BASE=lm_server.api_base,
    )
    assert stopped.returncode == 1
    assert "stopped after 1 failed examples (max_errors is 0)" in stopped.stderr


def test_sync_functions_run_in_threads_and_do_not_block_each_other(tmp_path: Path) -> None:
    """Two rows meet at a barrier inside the sync function: had they run one after the other in
    the event loop, the first would wait for the second forever (here: until the barrier's timeout)."""
    (tmp_path / "steps.py").write_text(
        textwrap.dedent("""\
        import threading
        barrier = threading.Barrier(2, timeout=30)

        def meet(text):
            barrier.wait()
            return {"shout": text.upper()}
        """)
    )
    path = tmp_path / "p.yaml"
    path.write_text('modules:\n  m: {type: python, function: "steps.py:meet", signature: "text -> shout"}\n')
    rows = '{"text": "a"}\n{"text": "b"}\n'
    done = dspx("run", str(path), "--batch", "-", "-j", "2", input=rows)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"shout": "A"}, {"shout": "B"}]


INVALID = [
    ('{type: python, function: "missing.py:f", signature: "a -> b"}', "function:", "function: file not found: "),
    ('{type: python, function: "steps.py:nope", signature: "a -> b"}', "function:", "defines no function 'nope'"),
    ('{type: python, function: "steps.py:f", signature: "a -> b", temperature: 0.5}', "temperature:", "takes no"),
    ('{type: python, function: "steps.py:f", signature: "a -> b", lm: openai/x}', "lm:", "calls no LM"),
    ('{type: python, signature: "a -> b"}', "m:", "needs `function: file.py:function`"),
    ('{type: python, function: "steps.py:f"}', "m:", "missing required key 'signature'"),
    ('{type: python, function: "steps.py:f", signature: "x -> b"}', "function:", "takes no parameter x"),
    ('{type: python, function: "steps.py:g", signature: "a -> b"}', "function:", "requires c, which"),
    ('{type: python, function: "steps.py", signature: "a -> b"}', "function:", 'expected "file.py:function"'),
]


@pytest.mark.parametrize(("module", "key", "message"), INVALID)
def test_validate_locates_python_step_mistakes(tmp_path: Path, module: str, key: str, message: str) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "steps.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef f(a):\n    return {{'b': a}}\n\ndef g(a, c):\n    return {{}}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(f"# a python step\nmodules:\n  m: {module}\n")
    done = dspx("validate", str(path))
    assert done.returncode == 2, done.stdout
    column = f"  m: {module}".index(key) + 1
    assert done.stderr.startswith(f"error: {path}:3:{column}: "), done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not marker.exists()  # validate parsed the file, never ran it


def test_validate_runs_no_user_code_and_run_reports_a_failing_import(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "steps.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('no config')\n\ndef f(a):\n    return {{'b': a}}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text('modules:\n  m:\n    type: python\n    function: "steps.py:f"\n    signature: "a -> b"\n')
    checked = dspx("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "python · steps.py:f" in checked.stdout and not marker.exists()
    ran = dspx("run", str(path), "-i", "a=1")
    assert ran.returncode == 2 and marker.exists()
    assert ran.stderr.startswith(f"error: {path}:4:5: module 'm': function: importing "), ran.stderr
    assert "RuntimeError: no config" in ran.stderr


def test_compile_tunes_the_lm_steps_and_leaves_the_python_step_alone(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = respond
    rows = [{"text": " ".join(["w"] * (i % 3 + 1)), "verdict": f"{i % 3 + 1} words"} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:6]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[6:]))
    program = PROGRAM + (
        "data: {train: train.jsonl, dev: dev.jsonl, inputs: [text]}\nmetric: exact_match\n"
        "optimizer: {type: bootstrap_few_shot, max_bootstrapped_demos: 2, max_labeled_demos: 0}\n"
    )
    path, state = setup(tmp_path, "count_sync", program), tmp_path / "state.json"
    done = dspx("compile", str(path), "-o", str(state), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["score_after"] == 1.0
    saved = json.loads(state.read_text())
    assert "count" not in saved and set(saved) >= {"summarize", "judge"}
    assert len(saved["summarize"]["demos"]) == 2 and len(saved["judge"]["demos"]) == 2
    # The judge's bootstrapped demos carry the count the python step computed, as an int.
    assert {demo["count"] for demo in saved["judge"]["demos"]} <= {1, 2, 3}
    used = dspx("run", str(path), "--state", str(state), "-i", "text=a b", "--json", BASE=lm_server.api_base)
    assert used.returncode == 0, used.stderr
    assert json.loads(used.stdout)["verdict"] == "2 words"


SHAPES = """\
import sys
from dspx_cli.core import Prediction


def prediction(text):
    return Prediction(n=len(text))


def nothing(text):
    return None


def missing(**inputs):
    return {"m": 1}


def leaves(text):
    sys.exit(3)
"""


@pytest.mark.parametrize(
    ("function", "outcome"),
    [
        ("prediction", '{"n": 3}'),
        ("nothing", "returned NoneType; expected a dict with n"),
        ("missing", "returned keys that do not fit its signature: missing n; unexpected m"),
        ("leaves", "raised SystemExit: 3"),
    ],
)
def test_what_a_python_step_may_return(tmp_path: Path, function: str, outcome: str) -> None:
    (tmp_path / "shapes.py").write_text(SHAPES)
    path = tmp_path / "p.yaml"
    path.write_text(f'modules:\n  m: {{type: python, function: "shapes.py:{function}", signature: "text -> n: int"}}\n')
    done = dspx("run", str(path), "-i", "text=abc", "--json")
    if outcome.startswith("{"):
        assert done.returncode == 0 and json.loads(done.stdout) == json.loads(outcome), done.stderr
    else:
        assert done.returncode == 1
        assert done.stderr.startswith(f"error: python step 'm' (shapes.py:{function}) {outcome}"), done.stderr


def test_parameters_are_checked_for_named_and_structured_signatures(tmp_path: Path) -> None:
    """validate checks a `def` against any signature; a name bound otherwise (a lambda here) is
    checked when the file is imported to run."""
    (tmp_path / "steps.py").write_text("def f(a):\n    return {'b': a}\n\ng = lambda a: {'b': a}\n")
    path = tmp_path / "p.yaml"
    structured = "modules:\n  m:\n    type: python\n    function: steps.py:f\n    signature: {inputs: {x: str}, outputs: {b: str}}\n"
    path.write_text(structured)
    checked = dspx("validate", str(path))
    assert checked.returncode == 2 and f"{path}:4:5: " in checked.stderr and "takes no parameter x" in checked.stderr
    path.write_text(
        'signatures: {s: "x -> b"}\nmodules:\n  m:\n    type: python\n    function: steps.py:g\n    signature: s\n'
    )
    assert dspx("validate", str(path)).returncode == 0  # cannot tell without running the file
    ran = dspx("run", str(path), "-i", "x=1")
    assert ran.returncode == 2 and ran.stderr.startswith(
        f"error: {path}:5:5: module 'm': steps.py:g takes no parameter x"
    ), ran.stderr


@pytest.mark.parametrize(
    "signature",
    [
        '"x: Item -> b"',  # names a declared type: the plain parse does not know Item
        '"x: list[Item], y -> b: Item"',
        "{inputs: {x: Item}, outputs: {b: str}}",
    ],
)
def test_validate_checks_parameters_of_signatures_naming_declared_types(tmp_path: Path, signature: str) -> None:
    (tmp_path / "steps.py").write_text("def f(a):\n    return {'b': a}\n")
    path = tmp_path / "p.yaml"
    path.write_text(
        "types:\n  Item: {name: str}\n"
        f"modules:\n  m:\n    type: python\n    function: steps.py:f\n    signature: {signature}\n"
    )
    checked = dspx("validate", str(path))
    assert checked.returncode == 2, checked.stdout
    assert checked.stderr.startswith(f"error: {path}:6:5: module 'm': steps.py:1 f() takes no parameter x"), (
        checked.stderr
    )


def test_validate_checks_parameters_of_a_named_signature(tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text("def f(a):\n    return {'b': a}\n")
    path = tmp_path / "p.yaml"
    path.write_text('signatures: {s: "x -> b"}\nmodules:\n  m: {type: python, function: steps.py:f, signature: s}\n')
    checked = dspx("validate", str(path))
    assert checked.returncode == 2, checked.stdout
    assert "f() takes no parameter x" in checked.stderr and f"{path}:3:" in checked.stderr, checked.stderr
