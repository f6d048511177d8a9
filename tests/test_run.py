"""`dspx run` end to end: a real CLI process talking to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from pathlib import Path

import pytest

from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner, RunResult
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, Reply, error_body

ROOT = Path(__file__).resolve().parent.parent


def program_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "program.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm:
              model: openai/test-model
              api_base: ${BASE}
              api_key: ${KEY:-}
              max_tokens: 64
            """
        )
        + textwrap.dedent(body)
    )
    return path


QA = """\
signatures:
  qa:
    inputs: {question: str}
    outputs: {answer: str, confidence: float}
modules:
  answer:
    signature: qa
"""


def test_run_prints_fields_and_usage(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: (
        "[[ ## answer ## ]]\nParis\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]"
    )
    path = program_file(tmp_path, QA)
    done = dspx("run", str(path), "-i", "question=Capital of France?", BASE=lm_server.api_base, KEY="sk-secret-123")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answer: Paris\nconfidence: 0.9\n"
    assert "openai/test-model · 1 call" in done.stderr and "completion tokens" in done.stderr
    assert "sk-secret-123" not in done.stdout + done.stderr

    (request,) = lm_server.requests
    assert request.headers["authorization"] == "Bearer sk-secret-123"
    assert request.body["model"] == "test-model"
    assert request.body["max_tokens"] == 64
    assert request.body["messages"][-1]["content"].startswith("[[ ## question ## ]]\nCapital of France?\n\n")

    done = dspx("run", str(path), "-i", "question=Capital of France?", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "Paris", "confidence": 0.9}


def test_unparseable_reply_exits_1_and_shows_the_reply(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: "I think it is Paris."
    done = dspx("run", str(program_file(tmp_path, QA)), "-i", "question=q", BASE=lm_server.api_base)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "answer" in lines[0] and "I think it is Paris." in lines[0]
    assert done.stdout == ""


def test_http_errors_exit_1_with_a_hint(lm_server: LMServer, tmp_path: Path) -> None:
    path = program_file(tmp_path, QA)
    lm_server.push(Reply(status=401, json=error_body("Incorrect API key provided")))
    done = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base, KEY="sk-wrong-456")
    assert done.returncode == 1
    assert "401" in done.stderr and "API key" in done.stderr and "sk-wrong-456" not in done.stderr

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    done = dspx("run", str(path), "-i", "question=q", BASE=closed)
    assert done.returncode == 1
    assert "cannot connect" in done.stderr and "Traceback" not in done.stderr


def test_flow_passes_values_between_steps_and_chain_of_thought(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict) -> str:
        last = body["messages"][-1]["content"]
        if "[[ ## reasoning ## ]]" in body["messages"][0]["content"]:
            return "[[ ## reasoning ## ]]\nIt is well known.\n\n[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
        assert "[[ ## answer ## ]]\nParis" in last  # the second step received the first step's output
        return "[[ ## ok ## ]]\nTrue\n\n[[ ## completed ## ]]"

    lm_server.responder = respond
    path = program_file(
        tmp_path,
        """\
        modules:
          answer: {type: chain_of_thought, signature: "question -> answer"}
          verify: {signature: "question, answer -> ok: bool"}
        flow:
          - {id: draft, module: answer, with: {question: $input.question}}
          - {id: check, module: verify, with: {question: $input.question, answer: $draft.answer}}
        output: {answer: $draft.answer, why: $draft.reasoning, ok: $check.ok}
        """,
    )
    done = dspx("run", str(path), "-i", "question=Capital of France?", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "Paris", "why": "It is well known.", "ok": True}
    assert len(lm_server.requests) == 2


def test_n_completions(lm_server: LMServer, tmp_path: Path) -> None:
    answers = iter(["yes", "no", "maybe"])
    lm_server.responder = lambda body: [
        f"[[ ## answer ## ]]\n{next(answers)}\n\n[[ ## completed ## ]]" for _ in range(body["n"])
    ]
    path = program_file(tmp_path, 'modules:\n  m: {signature: "question -> answer", n: 3, temperature: 0.7}\n')
    program = load_program(path, env={"BASE": lm_server.api_base})

    async def run() -> RunResult:
        context = RunContext(base_dir=program.base_dir)
        try:
            return await ProgramRunner(program, context).run({"question": "?"})
        finally:
            await context.aclose()

    result = asyncio.run(run())
    prediction = result.steps["m"]
    assert prediction.answer == "yes"
    assert prediction.completions.answer == ["yes", "no", "maybe"]
    assert lm_server.requests[0].body["n"] == 3 and lm_server.requests[0].body["temperature"] == 0.7


def test_every_completion_reaches_run_output(lm_server: LMServer, tmp_path: Path) -> None:
    """DSPy's `completions`: `--json` lists every completion's outputs (the first at top level too),
    text shows each under a header, and each `--batch` line carries them."""

    def respond(body: dict) -> list[str]:
        if "[[ ## reasoning ## ]]" in body["messages"][0]["content"]:
            return [
                f"[[ ## reasoning ## ]]\nr{i}\n\n[[ ## answer ## ]]\na{i}\n\n[[ ## completed ## ]]" for i in range(3)
            ]
        return ["[[ ## ok ## ]]\nTrue\n\n[[ ## completed ## ]]"]

    lm_server.responder = respond
    path = program_file(
        tmp_path,
        """\
        modules:
          answer: {type: chain_of_thought, signature: "question -> answer", n: 3, temperature: 0.7}
          verify: {signature: "question, answer -> ok: bool"}
        flow:
          - {id: draft, module: answer, with: {question: $input.question}}
          - {id: check, module: verify, with: {question: $input.question, answer: $draft.answer}}
        output: {answer: $draft.answer, why: $draft.reasoning, ok: $check.ok}
        """,
    )
    done = dspx("run", str(path), "-i", "question=q", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "answer": "a0",
        "why": "r0",
        "ok": True,
        "completions": [
            {"answer": "a0", "why": "r0", "ok": True},
            {"answer": "a1", "why": "r1", "ok": True},
            {"answer": "a2", "why": "r2", "ok": True},
        ],
    }
    text = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base)
    assert text.returncode == 0, text.stderr
    assert text.stdout == "".join(
        f"--- completion {i + 1} of 3 ---\nanswer: a{i}\nwhy: r{i}\nok: true\n" for i in range(3)
    )
    batch = dspx("run", str(path), "--batch", "-", input='{"question": "q"}\n', BASE=lm_server.api_base)
    assert batch.returncode == 0, batch.stderr
    assert [c["answer"] for c in json.loads(batch.stdout)["completions"]] == ["a0", "a1", "a2"]


@pytest.mark.parametrize("steps", [1, 2], ids=["one step", "two steps"])
def test_a_failing_step_raises_its_own_error(lm_server: LMServer, tmp_path: Path, steps: int) -> None:
    # One step is awaited in place, several run in a task group: either way the caller gets the
    # step's error itself, with no group around it and no chained context.
    from dspx_cli.errors import AdapterParseError

    lm_server.responder = lambda body: "no sections here"
    body = 'modules:\n  a: {signature: "question -> answer", adapter: json}\n'
    if steps == 2:
        body += (
            '  b: {signature: "question -> answer", adapter: json}\n'
            "flow:\n  - {id: a, module: a, with: {question: $input.question}}\n"
            "  - {id: b, module: b, with: {question: $input.question}}\n"
            "output: {answer: $a.answer, other: $b.answer}\n"
        )
    program = load_program(program_file(tmp_path, body), env={"BASE": lm_server.api_base})

    async def run() -> RunResult:
        context = RunContext(base_dir=program.base_dir, cache_dir=tmp_path / "cache", history=False)
        try:
            return await ProgramRunner(program, context).run({"question": "?"})
        finally:
            await context.aclose()

    with pytest.raises(AdapterParseError) as caught:
        asyncio.run(run())
    assert "no sections here" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_dspx_lm_env_and_flag_override_the_model(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nok\n\n[[ ## confidence ## ]]\n1\n\n[[ ## completed ## ]]"
    path = program_file(tmp_path, QA)
    assert dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base, DSPX_LM="vllm/from-env").returncode == 0
    assert dspx("run", str(path), "-i", "question=q", "--lm", "vllm/from-flag", BASE=lm_server.api_base).returncode == 0
    assert [r.body["model"] for r in lm_server.requests] == ["from-env", "from-flag"]


@pytest.fixture(scope="module")
def embedded_model() -> Path:
    pytest.importorskip("llama_cpp", reason="the embedded model needs the local extra: pip install -e '.[local]'")
    from dspx_cli.lm.local_gguf import embedded_model_path

    return embedded_model_path()


def test_embedded_model_answers_the_sentiment_program(embedded_model: Path) -> None:
    done = dspx(
        "run", "programs/sentiment.yaml", "-i", "review=A beautiful, moving film. I loved every minute.", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sentiment": "positive"}
    assert "local/smollm2 · 1 call" in done.stderr


def test_model_paths_are_relative_to_the_program(embedded_model: Path, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.gguf").symlink_to(embedded_model)
    program = tmp_path / "p.yaml"
    program.write_text((ROOT / "programs" / "sentiment.yaml").read_text() + "lm: {model: local/models/tiny.gguf}\n")
    done = dspx("run", "p.yaml", "-i", "review=Dreadful. A boring waste of time.", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sentiment"] in ("positive", "negative")
    assert "local/models/tiny.gguf" in done.stderr
