"""The `python` tool: react agents run LM-written code in the sandbox; its declaration in program files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.modules.sandbox_tool import SandboxPythonTool
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.sandbox_helpers import needs_deno

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tools.py").write_text('def f(x: int) -> int:\n    "Doubles."\n    return 2 * x\n')
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


DECLARED = """\
    lm: {model: openai/m, api_base: "${BASE:-http://127.0.0.1:9/v1}", num_retries: 0}
    tools:
      python: {}
      code: {type: sandbox, timeout: 5, desc: Runs code.}
      calculator: {type: calculator}
    modules:
      agent:
        type: react
        signature: "question -> answer"
        tools: [calculator, python, code]
        max_iters: 4
    """


def test_validate_accepts_sandbox_tools_without_importing_the_sandbox(tmp_path: Path) -> None:
    path = write(tmp_path, DECLARED)
    script = (
        "import sys, json, atexit\n"
        f"sys.argv = ['dspx', 'validate', {str(path)!r}]\n"
        "atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules if 'sandbox' in m)), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "react · 0 demos · tools calculator, python, code" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_inspect_describes_the_python_tool_without_starting_a_sandbox(tmp_path: Path) -> None:
    path = write(tmp_path, DECLARED)
    done = dspx("inspect", str(path), "-i", "question=q")
    assert done.returncode == 0, done.stderr
    assert "(2) python, whose description is <desc>Run Python code in a sandboxed interpreter" in done.stdout
    assert "It takes arguments {'code': {'type': 'string'}}." in done.stdout
    assert "(3) code, whose description is <desc>Runs code.</desc>." in done.stdout


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ("x: {type: python}", "a python tool needs `python: file.py:function` (a function on the host); for a tool"),
        ('x: {type: sandbox, python: "tools.py:f"}', "`python` goes with type python, not sandbox"),
        ("x: {type: sandbox, corpus: c.jsonl}", "'corpus' applies to retrieve tools only"),
        ("x: {type: sandbox, timeout: 0}", "greater than 0"),
        # A tool named python with a `python:` key is a host function like any other.
        ('x: {python: "missing.py:f"}', "file not found"),
    ],
)
def test_bad_sandbox_tool_declarations_are_located(tmp_path: Path, tool: str, message: str) -> None:
    path = write(
        tmp_path,
        f"""\
        lm: openai/m
        tools:
          {tool}
        modules:
          agent: {{type: react, signature: "question -> answer", tools: [x]}}
        """,
    )
    done = dspx("validate", str(path))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"error: {path}:3:") and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_code_act_refuses_the_sandbox_tool(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        lm: openai/m
        tools:
          python: {}
        modules:
          agent:
            type: code_act
            signature: "question -> answer"
            tools: [python]
        """,
    )
    done = dspx("validate", str(path))
    assert done.returncode == 2 and done.stderr.startswith(f"error: {path}:8:"), done.stderr
    assert "tool 'python' runs code in the sandbox, where code_act's code already runs" in done.stderr


def test_a_run_has_one_sandbox_whose_timeout_is_the_largest_declared(tmp_path: Path) -> None:
    from dspx_cli.program.code_module_types import sandbox_limits
    from dspx_cli.program.loader import load_program

    two = DECLARED + (
        "  solve: {type: program_of_thought, signature: question -> answer, timeout: 4}\n"
        "    flow:\n"
        "      - {id: agent, module: agent, with: {question: $input.question}}\n"
        "      - {id: solve, module: solve, with: {question: $agent.answer}}\n"
        "    output: {answer: $solve.answer}\n"
    )
    path = write(tmp_path, two)
    assert sandbox_limits(load_program(path, env={})).timeout == 5  # the `code` tool's, over the module's 4
    path = write(tmp_path, DECLARED.replace("timeout: 5, ", ""))
    assert sandbox_limits(load_program(path, env={})).timeout == 30  # none declared: the default


def reply(**fields: Any) -> str:
    parts = [f"[[ ## {name} ## ]]\n{json.dumps(v) if isinstance(v, dict) else v}" for name, v in fields.items()]
    return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


def act(tool: str, args: dict[str, Any] | None = None) -> str:
    return reply(next_thought=f"use {tool}", next_tool_name=tool, next_tool_args=args or {})


# Each step's code, by how many observations the agent has seen. Step 0 prints what a previous run
# would have left behind; step 1 reads the variable step 0 set; then an error, a syntax error.
STEPS = [
    act("python", {"code": "print(globals().get('total'))\ntotal = 6 * 7"}),
    act("python", {"code": "print(total + 1)"}),
    act("python", {"code": "print('before')\n1 / 0"}),
    act("python", {"code": "def f(:"}),
    act("python", {"code": "total * 2"}),
    act("finish"),
]


def scripted(steps: list[str]) -> Any:
    def responder(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "`next_thought`" not in system:  # the extract step
            return reply(reasoning="ran code", answer="43")
        return steps[sum(f"[[ ## observation_{i} ## ]]" in user for i in range(len(steps)))]

    return responder


@needs_deno
def test_react_agent_runs_code_in_one_session_per_run(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = scripted(STEPS)
    path = write(tmp_path, DECLARED.replace("max_iters: 4", "max_iters: 8"))
    rows = "".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(3))
    # Three runs, two at a time: a session is neither shared by concurrent runs nor handed to the next.
    done = dspx("run", str(path), "--batch", "-", "--trace", "-j", "2", input=rows, BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 3
    for record in records:
        assert record["answer"] == "43"
        trajectory = record["trace"]["agent"]["trajectory"]
        observations = [trajectory[f"observation_{i}"] for i in range(len(STEPS) - 1)]
        assert observations[0] == "None"  # no run sees another run's `total`
        assert observations[1] == "43"  # ... and each run keeps its own from step to step
        # A failing piece of code is an observation (what it printed, then its error), not a tool failure.
        assert observations[2] == "before\nZeroDivisionError: ['division by zero']"
        assert observations[3].startswith("Invalid Python syntax.")
        assert observations[4] == "84"  # the value of the last expression, when nothing is printed
        assert trajectory["tool_name_5"] == "finish"
    # The agent read each observation in its next step's prompt.
    last_react = [r for r in lm_server.requests if "`next_thought`" in r.body["messages"][0]["content"]][-1]
    assert "[[ ## observation_1 ## ]]\n43" in last_react.body["messages"][-1]["content"]


@needs_deno
def test_a_hung_step_times_out_and_the_next_step_runs(lm_server: LMServer, tmp_path: Path) -> None:
    steps = [
        act("python", {"code": "total = 1\nwhile True:\n    pass"}),
        act("python", {"code": "print(globals().get('total', 'gone'))"}),
        act("finish"),
    ]
    lm_server.responder = scripted(steps)
    # The run's one sandbox takes the largest timeout declared: here 1 s, the `code` tool's removed.
    path = write(tmp_path, DECLARED.replace("python: {}", "python: {timeout: 1}").replace("timeout: 5, ", ""))
    done = dspx("run", str(path), "-i", "question=q", "--trace", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert "[0] observation: TimeoutError: the code ran longer than 1 s and was stopped" in done.stderr
    assert "[1] observation: gone" in done.stderr  # a fresh interpreter: the run's variables are lost
    assert "[2] tool: finish({})" in done.stderr


def test_a_missing_sandbox_stops_the_run_with_one_line(
    lm_server: LMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "deno", None)  # the PyPI package absent: its import fails
    monkeypatch.setenv("PATH", "")  # and no deno on PATH
    lm_server.responder = scripted(STEPS)
    done = dspx("run", str(write(tmp_path, DECLARED)), "-i", "question=q", BASE=lm_server.api_base)
    assert done.returncode == 1, done.stderr
    assert "the code sandbox needs Deno, which is not installed: pip install 'dspx_cli[sandbox]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_tool_outside_a_run_context_says_so() -> None:
    tool = SandboxPythonTool(None)
    assert str(tool).startswith("python, whose description is <desc>Run Python code")

    async def call() -> str:
        async with tool.per_run() as bound:
            result: str = await bound.acall(code="print(1)")
            return result

    with pytest.raises(RuntimeError, match="built without a run context"):
        asyncio.run(call())
