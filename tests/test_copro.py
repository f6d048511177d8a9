"""COPRO replayed against DSPy 3.4.1's golden run (tests/fixtures/mipro/golden.json, `copro`).

The loopback server answers with the fixture's own `Script` (tests/fixtures/mipro/cases.py): the
task model is right on two messages in three (all of them when the instruction holds `MAGIC`), and
the prompt model numbers COPRO's replies by request. So dspx gets DSPy's replies only if it sends
DSPy's requests in DSPy's order, and the golden prompt requests are compared byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.lm.cache import CacheMode
from dspx_cli.lm.config import LMConfig
from dspx_cli.optimizers.copro import CoproReport, copro, report_dict
from dspx_cli.optimizers.state import dump_state, load_state, read_state_file
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner
from tests.cli_inprocess import dspx
from tests.fixtures.mipro.cases import COPRO_CASES, MAGIC, TRAIN_ROWS, Script, request_order, stage_of
from tests.lm_server import LMServer

GOLDEN = {
    case["id"]: case for case in json.loads((Path(__file__).parent / "fixtures/mipro/golden.json").read_text())["copro"]
}

LM_HEADER = """\
lm:
  model: openai/task-model
  api_base: ${BASE}
  api_key: sk-test
  num_retries: 0
"""

SIGNATURES = """\
signatures:
  route:
    instructions: Route the customer message to the support queue that should handle it.
    inputs: {message: str}
    outputs:
      queue: {type: str, desc: the name of one support queue}
metric: {name: exact_match, field: queue}
"""

# DSPy's bare `dspy.Predict(Route)` (generate.py): one predictor.
PREDICT = (
    LM_HEADER
    + SIGNATURES
    + """\
modules:
  route: {signature: route}
"""
)

# generate.py's RouteThenPrioritize: a ChainOfThought router, then a Predict rating the priority.
ROUTE_THEN_PRIORITIZE = (
    LM_HEADER
    + SIGNATURES
    + """\
modules:
  route: {type: chain_of_thought, signature: route}
  prioritize: {signature: "message, queue -> priority"}
flow:
  - {id: route, module: route, with: {message: $input.message}}
  - {id: prioritize, module: prioritize, with: {message: $input.message, queue: $route.queue}}
output: {queue: $route.queue, priority: $prioritize.priority}
"""
)

PROGRAMS = {"predict": PREDICT, "route_then_prioritize": ROUTE_THEN_PRIORITIZE}
CASES = {case["id"]: case for case in COPRO_CASES}


def trainset(size: int) -> list[Example]:
    return [Example(message=r["message"], queue=r["queue"]).with_inputs("message") for r in TRAIN_ROWS[:size]]


def run_case(
    case_id: str, server: LMServer, tmp_path: Path, *, cache_mode: CacheMode = CacheMode.OFF, cache: str = "cache"
) -> tuple[ProgramRunner, CoproReport, list[str]]:
    """COPRO on the case's program and trainset; the cache is off unless asked, as in the recording."""
    case = CASES[case_id]
    server.responder = Script(set(case.get("broken", [])))
    path = tmp_path / f"{case['program']}.yaml"
    path.write_text(PROGRAMS[case["program"]])
    program = load_program(path, env={"BASE": server.api_base})
    warnings: list[str] = []

    async def go() -> tuple[ProgramRunner, CoproReport]:
        context = RunContext(cache_dir=tmp_path / cache, cache_mode=cache_mode, history=False)
        try:
            runner = ProgramRunner(program, context)
            prompt_lm = context.lm(
                LMConfig(model="openai/prompt-model", api_base=server.api_base, api_key="sk-test", num_retries=0)
            )
            report = await copro(
                runner,
                trainset(case["train"]),
                resolve_metric(program, context),
                prompt_lm=prompt_lm,
                breadth=case["breadth"],
                depth=case["depth"],
                init_temperature=case["init_temperature"],
                num_threads=4,
                warn=warnings.append,
            )
            return runner, report
        finally:
            await context.aclose()

    runner, report = asyncio.run(go())
    return runner, report, warnings


def bodies(server: LMServer, model: str | None = None) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if model is None or r.body["model"] == model]


@pytest.mark.parametrize("case_id", ["copro_predict", "copro_two_predictors"])
def test_copro_replays_dspys_run(case_id: str, lm_server: LMServer, tmp_path: Path) -> None:
    golden = GOLDEN[case_id]
    runner, report, warnings = run_case(case_id, lm_server, tmp_path)
    assert warnings == []

    # Every prompt-model request, byte for byte: messages, temperature, no n, no max_tokens.
    sent = bodies(lm_server, "prompt-model")
    assert sent == [r["body"] for r in golden["prompt_requests"]]
    assert request_order(bodies(lm_server)) == golden["request_order"]
    assert len(bodies(lm_server, "task-model")) == golden["task_request_count"]

    assert [
        {"score": c.score, "instruction": c.instruction, "prefix": c.prefix, "depth": c.depth}
        for c in report.candidates
    ] == golden["candidates"]
    assert report.total_calls == golden["total_calls"]
    assert [s.to_dict() for s in report.results_best.values()] == golden["results_best"]
    assert [s.to_dict() for s in report.results_latest.values()] == golden["results_latest"]

    # The state dspx saves is DSPy's, predictor for predictor (DSPy's `metadata` differs by design).
    state = dump_state(runner)
    expected = golden["final_state"]
    if case_id == "copro_predict":  # DSPy saved a bare Predict: its keys at the top level
        expected = {"route": {key: value for key, value in expected.items() if key != "metadata"}}
    assert {name: entry for name, entry in state.items() if name != "metadata"} == {
        name: entry for name, entry in expected.items() if name != "metadata"
    }
    best = report.best
    assert MAGIC in best.instruction and best.score == 100.0


def test_copro_survives_a_proposer_that_answers_empty_json(lm_server: LMServer, tmp_path: Path) -> None:
    """DSPy dies at the first `{}` (AdapterParseError); dspx asks once more, drops it, goes on."""
    golden = GOLDEN["copro_proposer_replies_empty_json"]
    assert golden["error"]["type"] == "AdapterParseError"
    runner, report, warnings = run_case("copro_proposer_replies_empty_json", lm_server, tmp_path)

    sent = bodies(lm_server, "prompt-model")
    # DSPy's two requests (the chat one, then its JSON fallback) are dspx's first two...
    assert sent[:2] == [r["body"] for r in golden["prompt_requests"]]
    # ...then the retry asks the same again, and the sample is dropped: breadth 2 means one sample.
    assert sent[2:] == sent[:2] and len(sent) == 4
    assert len(warnings) == 1
    assert warnings[0].startswith("copro: predictor 'route': proposal 1 of 1 did not parse twice, dropped")
    assert report.dropped == 1

    # The original instruction was the only candidate: scored once, kept, the program unchanged.
    assert [(c.instruction, c.prefix, c.depth) for c in report.candidates] == [
        ("Route the customer message to the support queue that should handle it.", "Queue:", 0)
    ]
    assert report.total_calls == 1 and len(bodies(lm_server, "task-model")) == CASES[golden["id"]]["train"]
    signature = runner.modules["route"].signature
    assert signature.instructions == "Route the customer message to the support queue that should handle it."
    assert signature.fields["queue"].prefix == "Queue:"


def test_n_identical_requests_get_their_own_cache_entries(lm_server: LMServer, tmp_path: Path) -> None:
    """With the cache on, DSPy's n identical requests still reach the server n times (distinct
    rollout ids key them), and a second run reads every answer back: same candidates, no request."""
    golden = GOLDEN["copro_predict"]
    _, first, _ = run_case("copro_predict", lm_server, tmp_path, cache_mode=CacheMode.ON)
    assert bodies(lm_server, "prompt-model") == [r["body"] for r in golden["prompt_requests"]]
    given_attempts = [b for b in bodies(lm_server, "prompt-model") if "I've tried" in b["messages"][0]["content"]]
    assert len(given_attempts) == 3 and given_attempts[0] == given_attempts[1] == given_attempts[2]

    lm_server.requests.clear()
    _, again, _ = run_case("copro_predict", lm_server, tmp_path, cache_mode=CacheMode.ON)
    assert lm_server.requests == []
    assert [(c.instruction, c.prefix, c.score) for c in again.candidates] == [
        (c.instruction, c.prefix, c.score) for c in first.candidates
    ]


def test_the_report_lists_candidates_and_the_best(lm_server: LMServer, tmp_path: Path) -> None:
    _, report, _ = run_case("copro_predict", lm_server, tmp_path)
    summary = report_dict(report)
    assert summary["best"] == {
        "predictor": "route",
        "instruction": f"Route it (reply 3); use {MAGIC}",
        "prefix": "Queue 3:",
        "depth": 1,
        "score": 1.0,
        "score_percent": 100.0,
    }
    assert [c["score_percent"] for c in summary["candidates"]] == [100.0] + [62.5] * 5
    assert summary["candidates"][1]["score"] == 0.625
    assert summary["total_calls"] == 6 and summary["dropped_proposals"] == 0
    json.dumps(summary)  # it goes into the state's metadata


# ----- the command line ---------------------------------------------------------------------------


def test_compile_with_copro_writes_the_new_instructions(lm_server: LMServer, tmp_path: Path) -> None:
    """No `prompt_lm:` in the file: the task LM proposes too (DSPy's default), so the script answers
    COPRO's requests to `task-model` as its prompt model."""
    script = Script()

    def respond(body: dict[str, Any]) -> str | list[str]:
        return script({**body, "model": "prompt-model"} if stage_of(body).startswith("copro") else body)

    lm_server.responder = respond
    rows = TRAIN_ROWS[:6]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    program = tmp_path / "prog.yaml"
    program.write_text(
        PREDICT.replace("${BASE}", lm_server.api_base)
        + textwrap.dedent(
            """\
            data:
              train: train.jsonl
              inputs: [message]
            """
        )
    )

    def compile_copro(breadth: int, state_path: Path) -> dict[str, Any]:
        done = dspx(
            "compile", str(program), "--optimizer", "copro", "--set", f"breadth={breadth}", "--set", "depth=1",
            "-o", str(state_path),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return read_state_file(state_path)

    # breadth 2: one proposal (reply 1) beside the original; both score 4/6. DSPy would take the
    # proposal (the first of the best); dspx keeps what the user wrote unless a proposal is better.
    tie = compile_copro(2, tmp_path / "tie.json")
    original = "Route the customer message to the support queue that should handle it."
    assert tie["route"]["signature"]["instructions"] == original
    assert tie["metadata"]["dspx"]["report"]["kept_original"] is True
    assert tie["metadata"]["dspx"]["report"]["best"]["instruction"] == "Route it (reply 1)"

    # breadth 4: replies 1 (cached from above), 2 and 3; the third names the queues and scores 6/6.
    state_path = tmp_path / "state.json"
    state = compile_copro(4, state_path)
    better = f"Route it (reply 3); use {MAGIC}"
    signature = state["route"]["signature"]
    assert signature["instructions"] == better
    assert signature["fields"][-1] == {"prefix": "Queue 3:", "description": "the name of one support queue"}
    report = state["metadata"]["dspx"]["report"]
    assert report["kept_original"] is False and len(report["candidates"]) == 4
    assert report["best"]["score"] == 1.0

    # The state loads back into the program: the system message now ends with the new instruction.
    runner = ProgramRunner(load_program(program, env={}), None)
    load_state(runner, state, source=str(state_path))
    (step,) = runner.preview({"message": "Where is my parcel?"})
    assert step[1][0]["content"].endswith(f"your objective is: \n        {better}")


@pytest.mark.parametrize("case_id", ["copro_predict", "copro_two_predictors"])
def test_compile_the_fixture_programs_with_their_prompt_lm_as_dspy_did(
    case_id: str, lm_server: LMServer, tmp_path: Path
) -> None:
    """The fixture's program files name `prompt_lm: openai/prompt-model`: `dspx compile --optimizer
    copro` on the case's first training rows sends DSPy's requests, byte for byte, and saves DSPy's
    state (the dev split is scored before and after, by the task model only; the cache is on)."""
    golden, case = GOLDEN[case_id], CASES[case_id]
    lm_server.responder = Script()
    state_path = tmp_path / "state.json"
    settings = [f"--set={key}={case[key]}" for key in ("breadth", "depth", "init_temperature")]
    program = Path(__file__).parent / "fixtures/mipro/programs" / f"{case['program']}.yaml"
    done = dspx(
        "compile",
        str(program),
        "--optimizer",
        "copro",
        *settings,
        "--limit",
        str(case["train"]),
        "-o",
        str(state_path),
        MIPRO_API_BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    assert bodies(lm_server, "prompt-model") == [r["body"] for r in golden["prompt_requests"]]
    state = read_state_file(state_path)
    expected = {key: value for key, value in golden["final_state"].items() if key != "metadata"}
    if case_id == "copro_predict":
        expected = {"route": expected}
    assert {name: entry for name, entry in state.items() if name != "metadata"} == expected
    assert state["metadata"]["dspx"]["report"]["total_calls"] == golden["total_calls"]


def test_compile_warns_about_a_dropped_proposal_and_keeps_the_instruction(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = Script({"*"})  # the prompt model answers `{}`, as the 135M model did
    state_path = tmp_path / "state.json"
    done = dspx(
        "compile",
        str(Path(__file__).parent / "fixtures/mipro/programs/predict.yaml"),
        "--optimizer",
        "copro",
        "--set",
        "breadth=2",
        "--set",
        "depth=1",
        "--limit",
        "4",
        "-o",
        str(state_path),
        MIPRO_API_BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    assert "copro: predictor 'route': proposal 1 of 1 did not parse twice, dropped" in done.stderr
    signature = read_state_file(state_path)["route"]["signature"]
    assert signature["instructions"] == "Route the customer message to the support queue that should handle it."
    assert signature["fields"][-1]["prefix"] == "Queue:"
    # The four `{}` replies (chat, JSON fallback, then both again) are counted apart from used ones.
    assert read_state_file(state_path)["metadata"]["dspx"]["lm_calls"]["unusable_replies"] == 4
