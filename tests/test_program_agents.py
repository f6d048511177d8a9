"""Tools, retrieval, ReAct and the sampling modules declared in program files, run through the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

TOOLS_PY = '''
import time


def exchange_rate(from_currency: str, to_currency: str) -> float:
    """Units of to_currency per unit of from_currency."""
    return {"USD": 1.0, "EUR": 0.5}[to_currency] / {"USD": 1.0, "EUR": 0.5}[from_currency]


def slow(x: int) -> int:
    """Sleeps too long."""
    time.sleep(5)
    return x


class Opaque:
    pass


def bad(thing: Opaque) -> str:
    """Takes something with no JSON schema."""
    return "x"
'''


def reply(**fields: Any) -> str:
    parts = [f"[[ ## {name} ## ]]\n{json.dumps(v) if isinstance(v, dict) else v}" for name, v in fields.items()]
    return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


def act(tool: str, args: dict[str, Any] | None = None) -> str:
    return reply(next_thought=f"use {tool}", next_tool_name=tool, next_tool_args=args or {})


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


AGENT = """\
    lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
    tools:
      calculator: {type: calculator}
      exchange_rate: {python: "tools.py:exchange_rate"}
      slow: {python: "tools.py:slow", timeout: 0.2}
    modules:
      agent:
        type: react
        signature: "question -> answer"
        tools: [exchange_rate, calculator, slow]
        max_iters: 5
    """


def agent_responder(body: dict[str, Any]) -> str:
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "`next_thought`" not in system:  # the extract step
        return reply(reasoning="rate then multiply", answer="125 EUR")
    if "observation_2" in user:
        return act("finish")
    if "observation_1" in user:
        return act("slow", {"x": 1})
    if "observation_0" in user:
        return act("calculator", {"expression": "250 * 0.5"})
    return act("exchange_rate", {"from_currency": "USD", "to_currency": "EUR"})


def test_react_program_calls_a_python_tool_and_the_calculator(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = agent_responder
    path = write(tmp_path, AGENT)
    done = dspx(
        "run", str(path), "-i", "question=How many euros is 250 dollars?", "--trace", "--json", BASE=lm_server.api_base
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"reasoning": "rate then multiply", "answer": "125 EUR"}
    # The trace shows every tool call with its arguments and what it returned.
    assert '[0] tool: exchange_rate({"from_currency": "USD", "to_currency": "EUR"})' in done.stderr
    assert "[0] observation: 0.5" in done.stderr
    assert '[1] tool: calculator({"expression": "250 * 0.5"})' in done.stderr
    assert "[1] observation: 125" in done.stderr
    assert "[2] observation: Execution error in slow" in done.stderr and "0.2 seconds" in done.stderr
    assert "[3] tool: finish({})" in done.stderr
    last_react = [r for r in lm_server.requests if "`next_thought`" in r.body["messages"][0]["content"]][-1]
    assert "[[ ## observation_1 ## ]]\n125" in last_react.body["messages"][-1]["content"]


def test_batch_rows_carry_their_own_trajectories(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = agent_responder
    path = write(tmp_path, AGENT)
    rows = "".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(6))
    done = dspx("run", str(path), "--batch", "-", "--trace", "-j", "6", input=rows, BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 6
    for record in records:
        trajectory = record["trace"]["agent"]["trajectory"]
        assert [trajectory[f"tool_name_{i}"] for i in range(4)] == ["exchange_rate", "calculator", "slow", "finish"]


@pytest.mark.parametrize(
    ("tools", "module_extra", "message", "line"),
    [
        ('x: {python: "missing.py:f"}', "", "file not found", 3),
        ('x: {python: "tools.py:nope"}', "", "defines no function 'nope'", 3),
        ('x: {python: "tools.py:bad"}', "", "tool 'x'", 3),
        ("x: {type: calculator, corpus: c.jsonl}", "", "applies to retrieve tools only", 3),
        ("x: {type: weather}", "", "expected 'calculator', 'retrieve', 'python' or 'sandbox'", 3),
        ("x: {type: calculator}", "tools: [y]", "unknown tool 'y'", 8),
    ],
)
def test_bad_tool_declarations_are_program_errors(
    tmp_path: Path, tools: str, module_extra: str, message: str, line: int
) -> None:
    path = write(
        tmp_path,
        f"""\
        lm: openai/m
        tools:
          {tools}
        modules:
          agent:
            type: react
            signature: "question -> answer"
            {module_extra or "tools: [x]"}
        """,
    )
    # A parameter type without a JSON schema shows only when the tool is built, which runs its file:
    # `validate` parses tool files and never runs them, `inspect` (and run) build the tools.
    command = "inspect" if "tools.py:bad" in tools else "validate"
    done = dspx(command, str(path), "-i", "question=q") if command == "inspect" else dspx(command, str(path))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"error: {path}:{line}:") and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_module_keys_of_another_type_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        lm: openai/m
        modules:
          answer: {signature: "question -> answer", tools: [calculator]}
        """,
    )
    done = dspx("validate", str(path))
    assert done.returncode == 2 and f"{path}:3:" in done.stderr and "applies to type code_act and react" in done.stderr


RAG = """\
    lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
    modules:
      search: {type: retrieve, corpus: corpus.jsonl, k: 2}
      answer: {signature: "context: list[str], question -> answer"}
    flow:
      - {id: search, module: search, with: {query: $input.question}}
      - {id: answer, module: answer, with: {context: $search.passages, question: $input.question}}
    output: {answer: $answer.answer}
    """

CORPUS = [
    {"id": 1, "text": "The Mona Lisa was painted by Leonardo da Vinci."},
    {"id": 2, "text": "Penicillin was discovered by Alexander Fleming in 1928."},
    {"id": 3, "text": "The Eiffel Tower stands in Paris and was completed in 1889."},
]


def test_retrieve_step_feeds_the_answer_step(lm_server: LMServer, tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    lm_server.responder = lambda body: reply(answer="Fleming")
    path = write(tmp_path, RAG)
    done = dspx("run", str(path), "-i", "question=Who discovered penicillin?", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "Fleming"}
    (request,) = lm_server.requests
    user = request.body["messages"][-1]["content"]
    # BM25 put the penicillin passage first; k=2 passages, as JSON (DSPy's rendering of a list[str]).
    assert user.startswith('[[ ## context ## ]]\n["Penicillin was discovered by Alexander Fleming in 1928.", "')
    assert user.count("Penicillin") == 1 and user.count('", "') == 1
    assert dspx("validate", str(path)).stdout.count("bm25 over corpus.jsonl · k 2") == 1


def test_retrieve_with_embeddings_against_the_loopback_server(lm_server: LMServer, tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    lm_server.responder = lambda body: reply(answer="Paris")
    path = write(
        tmp_path, RAG.replace("k: 2}", 'k: 1, embeddings: {model: openai/emb, api_base: "${BASE}", api_key: "${KEY}"}}')
    )
    done = dspx(
        "run",
        str(path),
        "-i",
        "question=Where is the Eiffel Tower?",
        "--json",
        BASE=lm_server.api_base,
        KEY="sk-embed-secret",
    )
    assert done.returncode == 0, done.stderr
    embedded = [r for r in lm_server.requests if r.path.endswith("/embeddings")]
    assert [len(r.body["input"]) for r in embedded] == [3, 1]
    assert embedded[0].headers["authorization"] == "Bearer sk-embed-secret"
    (chat,) = [r for r in lm_server.requests if r.path.endswith("/chat/completions")]
    assert '[[ ## context ## ]]\n["The Eiffel Tower stands in Paris' in chat.body["messages"][-1]["content"]


def test_corpus_errors_stop_before_any_lm_call(lm_server: LMServer, tmp_path: Path) -> None:
    path = write(tmp_path, RAG)
    missing = dspx("validate", str(path))
    assert missing.returncode == 2 and f"{path}:3:" in missing.stderr and "corpus file not found" in missing.stderr
    (tmp_path / "corpus.jsonl").write_text('{"id": 1, "text": "ok"}\nnot json\n')
    broken = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base)
    assert broken.returncode == 2 and "corpus.jsonl:2" in broken.stderr and lm_server.requests == []


REWARD_PY = """
def is_good(example, prediction):
    return 1.0 if prediction.answer == "good" else 0.0
"""


def test_best_of_n_picks_by_reward(lm_server: LMServer, tmp_path: Path) -> None:
    (tmp_path / "reward.py").write_text(REWARD_PY)
    answers = iter(["bad", "good", "never"])
    lm_server.responder = lambda body: reply(answer=next(answers))
    path = write(
        tmp_path,
        """\
        lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
        modules:
          answer: {signature: "question -> answer"}
          best: {type: best_of_n, module: answer, N: 3, reward: {python: "reward.py:is_good"}, threshold: 1.0}
        """,
    )
    done = dspx("run", str(path), "-i", "question=q", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "good"}
    assert [r.body["temperature"] for r in lm_server.requests] == [1.0, 1.0]  # stopped at the threshold


def test_refine_passes_feedback_to_the_next_attempt(lm_server: LMServer, tmp_path: Path) -> None:
    (tmp_path / "reward.py").write_text(REWARD_PY)

    def respond(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        if "`program_code`" in system:  # DSPy's OfferFeedback signature
            return reply(discussion="it said bad", advice=json.dumps({"self": "Say good."}))
        return reply(answer="good" if "Say good." in body["messages"][-1]["content"] else "bad")

    lm_server.responder = respond
    path = write(
        tmp_path,
        """\
        lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
        modules:
          answer: {signature: "question -> answer"}
          refine: {type: refine, module: answer, N: 3, reward: {python: "reward.py:is_good"}, threshold: 1.0}
        """,
    )
    done = dspx("run", str(path), "-i", "question=q", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "good"}
    assert len(lm_server.requests) == 3  # attempt, feedback, attempt with the hint
    hinted = lm_server.requests[2].body["messages"][-1]["content"]
    assert "[[ ## hint_ ## ]]\nSay good." in hinted
    feedback = lm_server.requests[1].body["messages"][-1]["content"]
    assert "refine: {type: refine" in feedback and "def is_good(example, prediction):" in feedback  # the user's files


def test_reward_errors_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        lm: openai/m
        modules:
          answer: {signature: "question -> answer"}
          best:
            type: best_of_n
            module: answer
            N: 2
            reward: nonsense
        """,
    )
    done = dspx("validate", str(path))
    assert done.returncode == 2 and f"{path}:8:" in done.stderr and "unknown metric" in done.stderr
    wrapped = write(
        tmp_path,
        """\
        lm: openai/m
        modules:
          best: {type: best_of_n, module: ghost, N: 2, reward: exact_match}
        """,
    )
    done = dspx("validate", str(wrapped))
    assert done.returncode == 2 and "wraps unknown module 'ghost'" in done.stderr


def test_multi_chain_comparison_samples_then_compares(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> Any:
        if "reasoning_attempt_1" in body["messages"][0]["content"]:
            return reply(rationale="two of three say 4", answer="4")
        return [reply(reasoning=f"try {i}", answer=str(a)) for i, a in enumerate([4, 4, 5])]

    lm_server.responder = respond
    path = write(
        tmp_path,
        """\
        lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
        modules:
          compare: {type: multi_chain_comparison, signature: "question -> answer", M: 3}
        """,
    )
    done = dspx("run", str(path), "-i", "question=2+2?", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"rationale": "two of three say 4", "answer": "4"}
    sample, compare = lm_server.requests
    assert sample.body["n"] == 3 and sample.body["temperature"] == 0.7
    shown = compare.body["messages"][-1]["content"]
    assert "[[ ## reasoning_attempt_3 ## ]]\n«I'm trying to try 2 I'm not sure but my prediction is 5»" in shown


def test_inspect_shows_the_react_prompt_without_calls(tmp_path: Path) -> None:
    path = write(tmp_path, AGENT)
    done = dspx("inspect", str(path), "-i", "question=q", BASE="http://127.0.0.1:9/v1")
    assert done.returncode == 0, done.stderr
    assert (
        "(1) exchange_rate, whose description is <desc>Units of to_currency per unit of from_currency.</desc>"
        in done.stdout
    )
    assert "(4) finish, whose description is" in done.stdout


def test_compiling_a_react_program_gives_both_predictors_demos(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = agent_responder
    rows = [{"question": f"q{i}", "answer": "125 EUR"} for i in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = write(
        tmp_path,
        AGENT + "data: {train: train.jsonl}\n    metric: exact_match\n"
        "    optimizer: {type: bootstrap_few_shot, max_bootstrapped_demos: 1, max_labeled_demos: 1}\n",
    )
    state = tmp_path / "state.json"
    done = dspx("compile", str(path), "-o", str(state), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    saved = json.loads(state.read_text())
    # A successful trace gives one demo per predictor: a react step (with its trajectory) and the extraction.
    (react_demo,) = saved["agent.react"]["demos"]
    assert react_demo["augmented"] is True and react_demo["question"] == "q0"
    assert react_demo["next_tool_name"] in ("exchange_rate", "calculator", "slow", "finish")
    (extract_demo,) = saved["agent.extract.predict"]["demos"]
    assert extract_demo["answer"] == "125 EUR" and "observation_0" in extract_demo["trajectory"]
    shown = dspx("inspect", str(path), "-i", "question=new", "--state", str(state), "--json", BASE=lm_server.api_base)
    assert shown.returncode == 0, shown.stderr
    assert "q0" in json.dumps(json.loads(shown.stdout))


def test_an_agent_that_picks_no_valid_tool_still_answers_with_one_warning(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> str:
        if "`next_thought`" not in body["messages"][0]["content"]:
            return reply(reasoning="no tools used", answer="unknown")
        return act("teleport" * 80, {"to": "Mars"})  # not a tool, and a long reply

    lm_server.responder = respond
    path = write(tmp_path, AGENT)
    done = dspx("run", str(path), "-i", "question=q", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "unknown"
    (warning,) = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert "Ending the trajectory" in warning and len(warning) <= 309
