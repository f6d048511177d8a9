"""program_of_thought and code_act declared in program files, run through the CLI against the
scripted loopback LM, with the code run in the real sandbox (Deno + Pyodide)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.sandbox_helpers import needs_deno

ROOT = Path(__file__).resolve().parent.parent


def reply(**fields: Any) -> str:
    parts = [f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items()]
    return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def section(text: str, name: str) -> str:
    """A `[[ ## name ## ]]` section of a user message."""
    match = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with)", text, re.DOTALL)
    assert match, f"no {name} in {text!r}"
    return match.group(1)


def write(tmp_path: Path, text: str, **files: str) -> Path:
    for name, content in files.items():
        (tmp_path / name).write_text(textwrap.dedent(content))
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


POT = """\
    lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
    modules:
      solve: {type: program_of_thought, signature: "question -> answer", max_iters: 2, timeout: 20}
    """


def pot_responder(generate: str, regenerate: str | None = None) -> Any:
    """Writes `generate`, then `regenerate` after an error; the answer step repeats the code's output."""

    def respond(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "due to an error in previous code" in system:
            return reply(reasoning="Fix it.", generated_code=fenced(regenerate or generate))
        if "Given the final code" in system:
            return reply(reasoning="Read the output.", answer=section(user, "code_output"))
        return reply(reasoning="Compute.", generated_code=fenced(generate))

    return respond


@needs_deno
def test_program_of_thought_submits_and_traces_its_code(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = pot_responder('total = sum(range(10))\nSUBMIT({"answer": total})')
    path = write(tmp_path, POT)
    done = dspx("run", str(path), "-i", "question=Sum 0..9?", "--trace", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == '{"output": {"answer": 45}}'
    assert len(lm_server.requests) == 2  # generate, answer: no regenerate
    assert "[0] code:\n    total = sum(range(10))\n    SUBMIT(" in done.stderr
    assert '[0] output: {"output": {"answer": 45}}' in done.stderr


@needs_deno
def test_program_of_thought_regenerates_after_an_error(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = pot_responder("x = undefined_name + 1", regenerate="x = 40 + 2")
    path = write(tmp_path, POT)
    done = dspx("run", str(path), "-i", "question=q", "--trace", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "42"
    regenerate = lm_server.requests[1].body["messages"][-1]["content"]
    assert section(regenerate, "previous_code") == "x = undefined_name + 1\nx"
    assert section(regenerate, "error").startswith("NameError")
    assert "[0] error: NameError" in done.stderr and "[1] output: 42" in done.stderr


@needs_deno
def test_program_of_thought_fails_after_max_iters(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = pot_responder("print(1 / 0)")
    path = write(tmp_path, POT)
    done = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base)
    assert done.returncode == 1
    assert "Max hops reached. Failed to run ProgramOfThought: ZeroDivisionError" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(lm_server.requests) == 2  # generate, one regenerate (max_iters 2), no answer step


@needs_deno
def test_a_failed_program_of_thought_example_reports_the_tokens_its_calls_used(
    lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = pot_responder("print(1 / 0)")
    program = POT.rstrip() + "\n    data: {dev: dev.jsonl}\n    metric: exact_match\n"
    path = write(tmp_path, program, **{"dev.jsonl": '{"question": "q", "answer": "1"}\n'})
    out = tmp_path / "out"
    done = dspx("evaluate", str(path), "--json", "--output", str(out), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    [example] = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert example["error"].startswith("Max hops reached") and example["lm_calls"] == 2
    [logged] = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    spent = {key: sum(call["usage"][key] for call in logged["calls"]) for key in ("prompt_tokens", "completion_tokens")}
    assert spent["prompt_tokens"] > 0 and example["usage"] == spent
    assert json.loads(done.stdout)["usage"]["total"]["prompt_tokens"] == spent["prompt_tokens"]


def test_the_modules_limits_reach_the_sandbox(tmp_path: Path) -> None:
    """Built to run, a code module gets the run context's sandbox with its own limits (nothing starts yet)."""
    from dspx_cli.program.context import RunContext
    from dspx_cli.program.loader import load_program
    from dspx_cli.program.runner import ProgramRunner

    path = write(tmp_path, POT.replace("timeout: 20", "timeout: 1.5, memory_mb: 256"))
    context = RunContext(history=False)
    runner = ProgramRunner(load_program(path, env={"BASE": "http://127.0.0.1:9/v1"}), context)
    sandbox = runner.modules["solve"].sandbox  # type: ignore[attr-defined]
    assert sandbox is context.sandbox()
    assert (sandbox.limits.timeout, sandbox.limits.memory_mb) == (1.5, 256)
    # One sandbox per run: with two code modules, each limit is the larger one declared.
    two = POT.replace("timeout: 20", "timeout: 1.5, memory_mb: 256").rstrip(" ") + (
        "      act: {type: code_act, signature: 'question -> answer', timeout: 9}\n"
        "    flow:\n"
        "      - {id: solve, module: solve, with: {question: $input.question}}\n"
        "      - {id: act, module: act, with: {question: $solve.answer}}\n"
        "    output: {answer: $act.answer}\n"
    )
    path = write(tmp_path, two)
    context = RunContext(history=False)
    runner = ProgramRunner(load_program(path, env={"BASE": "b"}), context)
    limits = context.sandbox().limits
    assert (limits.timeout, limits.memory_mb) == (9, 256)
    assert runner.modules["act"].sandbox is runner.modules["solve"].sandbox  # type: ignore[attr-defined]
    assert ProgramRunner(load_program(path, env={"BASE": "b"}), None).modules["solve"].sandbox is None  # type: ignore[attr-defined]


TOOLS = '''
import json
from pathlib import Path


def population(city: str) -> int:
    """Population of a city, in thousands."""
    # A file next to the program: the host can read it, the sandbox could not.
    return json.loads(Path(__file__).with_name("cities.json").read_text())[city]
'''

ACT = """\
    lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
    tools:
      population: {python: "tools.py:population"}
    modules:
      agent: {type: code_act, signature: "question -> answer", tools: [population], max_iters: %d}
    """


def act_responder(steps: list[tuple[str, bool]]) -> Any:
    """Iteration i writes steps[i]; the extractor answers with the last code output it reads."""

    def respond(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "You are an intelligent agent" in system:
            done = section(user, "trajectory").count("generated_code_") + section(user, "trajectory").count(
                "observation_"
            )
            code, finished = steps[min(done, len(steps) - 1)]
            return reply(generated_code=fenced(code), finished=finished)
        outputs = re.findall(r"\[\[ ## code_output_\d+ ## \]\]\n(.*?)\n", user)
        return reply(reasoning="From the trajectory.", answer=outputs[-1] if outputs else "none")

    return respond


@needs_deno
def test_code_act_calls_a_host_tool_keeps_variables_and_stops_when_finished(
    lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = act_responder(
        [("p = population('Paris')\nprint(p)", False), ("print(p * 2)", True), ("print('never')", True)]
    )
    path = write(tmp_path, ACT % 5, **{"tools.py": TOOLS, "cities.json": '{"Paris": 2100}'})
    done = dspx("run", str(path), "-i", "question=Twice Paris?", "--trace", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == '"4200\\n"'
    assert len(lm_server.requests) == 3  # two iterations (the second says finished), the extractor
    first = lm_server.requests[0].body["messages"][0]["content"]
    assert "(1) population, whose description is <desc>Population of a city, in thousands.</desc>" in first
    assert "[0] code:\n    p = population('Paris')\n    print(p)" in done.stderr
    assert '[0] output: "2100\\n"' in done.stderr and '[1] output: "4200\\n"' in done.stderr


@needs_deno
def test_code_act_reports_errors_and_stops_at_max_iters(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = act_responder([("population('Atlantis')", False), ("print(undefined)", False)])
    path = write(tmp_path, ACT % 2, **{"tools.py": TOOLS, "cities.json": '{"Paris": 2100}'})
    done = dspx("run", str(path), "-i", "question=q", "--trace", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert len(lm_server.requests) == 3  # max_iters 2, then the extractor
    assert "[0] error: Failed to execute the generated code: " in done.stderr
    assert "KeyError" in done.stderr.split("[0] error:")[1].split("\n")[0]  # the host tool's failure
    assert "[1] error: Failed to execute the generated code: NameError" in done.stderr


ISOLATION = """\
    lm: {model: openai/m, api_base: "${BASE}", num_retries: 0, max_concurrency: 32}
    modules:
      agent: {type: code_act, signature: "question -> answer", tools: [], max_iters: 3}
    data: {dev: dev.jsonl}
    metric: exact_match
    """


def isolation_responder(body: dict[str, Any]) -> str:
    """Each example stores its own number, then reads it back; it also lists any other example's."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    n = int(section(user, "question"))
    if "You are an intelligent agent" in system:
        if section(user, "trajectory") == "{}":
            code = f"others = sorted(k for k in globals() if k.startswith('mine_'))\nmine_{n} = {n}\nprint(others)"
            return reply(generated_code=fenced(code), finished=False)
        return reply(generated_code=fenced(f"print(mine_{n} * 2)"), finished=True)
    outputs = re.findall(r"\[\[ ## code_output_\d+ ## \]\]\n(.*?)\n", user)
    clean = outputs and outputs[0] == '"[]\\n"'
    return reply(reasoning="Read back.", answer=json.loads(outputs[-1]).strip() if clean else "leaked")


@needs_deno
def test_sixteen_concurrent_examples_never_see_each_others_variables(lm_server: LMServer, tmp_path: Path) -> None:
    rows = [{"question": str(n), "answer": str(n * 2)} for n in range(16)]
    dev = "".join(json.dumps(row) + "\n" for row in rows)
    path = write(tmp_path, ISOLATION, **{"dev.jsonl": dev})
    lm_server.responder = isolation_responder
    done = dspx("evaluate", str(path), "-j", "16", "--json", "--output", str(tmp_path / "out"), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["examples"] == 16 and summary["errors"] == 0 and summary["score"] == 1.0, summary


def test_validate_neither_imports_the_sandbox_nor_the_code_modules(tmp_path: Path) -> None:
    flow = """\
    flow:
      - {id: agent, module: agent, with: {question: $input.question}}
      - {id: solve, module: solve, with: {question: $agent.answer}}
    output: {answer: $solve.answer}
    """
    program = (ACT % 3).rstrip(" ") + POT.split("modules:\n", 1)[1].rstrip(" ") + flow
    path = write(tmp_path, program, **{"tools.py": TOOLS})
    script = (
        "import sys, json, atexit\n"
        f"sys.argv = ['dspx', 'validate', {str(path)!r}]\n"
        "names = ('dspx_cli.sandbox', 'dspx_cli.modules.code_act', 'dspx_cli.modules.program_of_thought')\n"
        "atexit.register(lambda: print(json.dumps([m for m in names if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    env = {"BASE": "http://127.0.0.1:9/v1", "PATH": "/nonexistent"}  # no deno on the PATH either
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "step agent: code_act · 0 demos · tools population" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("reply_text", "code", "error"),
    [
        ("```python\nx = 1\nprint(x)\n```", "x = 1\nprint(x)", None),
        ("```python\ny = 2 * 3\n```", "y = 2 * 3\ny", None),  # a last assignment's name is appended
        ("print(1)\n---\nexplanation", "print(1)\n", None),  # cut at ---
        ("print(1)\n\n\nprint(2)", "print(1)", None),  # cut at two blank lines
        ("a = b = 1", "a = b = 1", "Error: Code format is not correct."),
        ("", "", "Error: Empty code after parsing."),
        ("```python\n```", "```python\n```", None),  # DSPy's regex needs a body: the text is the code
        (None, "", "Error: Empty code after parsing."),
    ],
)
def test_code_is_taken_from_the_reply_by_dspys_rules(reply_text: str | None, code: str, error: str | None) -> None:
    """The expected pairs are what DSPy 3.4.1's `ProgramOfThought._parse_code` returns for the same text."""
    from dspx_cli.modules.code_steps import parse_code

    assert parse_code(reply_text) == (code, error)


@needs_deno
def test_compile_bootstraps_demos_into_dspys_predictor_names(lm_server: LMServer, tmp_path: Path) -> None:
    """A successful run's code and answer steps become demos; the state keys are DSPy's names."""

    def respond(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "Given the final code" in system:
            return reply(reasoning="Read it.", answer=json.loads(section(user, "code_output")).strip())
        return reply(reasoning="Add.", generated_code=fenced(f"print({section(user, 'question')})"))

    rows = [{"question": f"{n} + {n}", "answer": str(2 * n)} for n in range(6)]
    files = {
        "train.jsonl": "".join(json.dumps(row) + "\n" for row in rows[:4]),
        "dev.jsonl": "".join(json.dumps(row) + "\n" for row in rows[4:]),
    }
    program = POT + (
        "data: {train: train.jsonl, dev: dev.jsonl}\n    metric: exact_match\n"
        "    optimizer: {type: bootstrap_few_shot, max_bootstrapped_demos: 2, max_labeled_demos: 0}\n"
    )
    path = write(tmp_path, program, **files)
    lm_server.responder = respond
    state = tmp_path / "state.json"
    done = dspx("compile", str(path), "-o", str(state), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score_after"] == 1.0
    saved = json.loads(state.read_text())
    generate, regenerate, answer = (
        saved[f"solve.{name}"]
        for name in ("code_generate.predict", "code_regenerate.predict", "generate_output.predict")
    )
    assert [demo["generated_code"] for demo in generate["demos"]] == [
        "```python\nprint(0 + 0)\n```",
        "```python\nprint(1 + 1)\n```",
    ]
    assert regenerate["demos"] == []  # no run needed a second attempt
    assert [demo["code_output"] for demo in answer["demos"]] == ['"0\\n"', '"2\\n"']
