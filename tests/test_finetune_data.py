"""`dspx finetune --data-only`: the training records a program's traces give, checked against DSPy's own.

tests/fixtures/finetune/golden.json was written by DSPy 3.4.1's BootstrapFinetune (see generate.py
there) for the same programs, train sets and scripted teacher replies; the records must be equal,
order included (DSPy shuffles them with Random(0)).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "finetune" / "golden.json").read_text())
CASES = {case["id"]: case for case in GOLDEN["cases"]}


def chat_reply(fields: dict[str, Any]) -> str:
    sections = "\n\n".join(
        f"[[ ## {name} ## ]]\n{value if isinstance(value, str) else json.dumps(value)}"
        for name, value in fields.items()
    )
    return f"{sections}\n\n[[ ## completed ## ]]"


def responder(case: dict[str, Any]):
    """The teacher the fixture's generator scripted: a reply per question (and True for the check step)."""

    def respond(body: dict[str, Any]) -> str:
        if "`verdict`" in body["messages"][0]["content"]:
            return chat_reply({"verdict": True})
        question = re.search(r"\[\[ ## question ## \]\]\n(.*)", body["messages"][-1]["content"]).group(1)
        fields = case["replies"][question]
        return json.dumps(fields) if case["adapter"] == "json" else chat_reply(fields)

    return respond


def write_program(case: dict[str, Any], folder: Path) -> Path:
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in case["train"]))
    module: dict[str, Any] = {
        "type": "chain_of_thought" if case["module"] == "chain_of_thought" else "predict",
        "signature": "main",
        "demos": case["demos"],
        "adapter": case["adapter"],
    }
    program: dict[str, Any] = {
        "lm": {"model": "openai/test-model", "api_base": "${BASE}", "num_retries": 0},
        "signatures": {"main": case["signature"]},
        "modules": {"draft": module},
        "data": {"train": "train.jsonl"},
        "metric": "exact_match",
    }
    if case["module"] == "two_steps":
        program["modules"]["check"] = {"signature": "question, answer -> verdict: bool", "demos": case["check_demos"]}
        program["flow"] = [
            {"id": "draft", "module": "draft", "with": {"question": "$input.question"}},
            {"id": "check", "module": "check", "with": {"question": "$input.question", "answer": "$draft.answer"}},
        ]
        program["output"] = {"answer": "$draft.answer", "verdict": "$check.verdict"}
    path = folder / "program.yaml"
    path.write_text(yaml.safe_dump(program, sort_keys=False))
    return path


def data_only(lm_server: LMServer, path: Path, out: Path, *args: str) -> list[dict[str, Any]]:
    done = dspx("finetune", str(path), "--data-only", "-o", str(out), *args, BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "train.jsonl")
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("case_id", list(CASES))
def test_bootstrap_records_equal_dspys(case_id: str, lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES[case_id]
    lm_server.responder = responder(case)
    records = data_only(lm_server, write_program(case, tmp_path), tmp_path / "run", "--traces", "bootstrap")
    assert records == case["records"]


def test_auto_picks_labeled_when_the_examples_label_every_output(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["predict_demos"]
    lm_server.responder = responder(case)
    path = write_program(case, tmp_path)
    done = dspx("finetune", str(path), "--data-only", "-o", str(tmp_path / "run"), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert "traces: labeled (every training example labels every output of every step)" in done.stderr
    assert lm_server.requests == []  # the examples are the calls: no teacher runs
    records = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    # Every example, Chile's too (the teacher got it wrong; its label is right), in DSPy's shuffled order.
    replies = sorted(r["messages"][-1]["content"] for r in records)
    assert replies == sorted(f"[[ ## answer ## ]]\n{row['answer']}\n\n[[ ## completed ## ]]\n" for row in case["train"])
    # The prompt is the one the program sends: system, the demo, the question.
    assert [m["role"] for m in records[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_labeled_leaves_an_example_out_of_its_own_demos(lm_server: LMServer, tmp_path: Path) -> None:
    case = {**CASES["predict_demos"], "demos": CASES["predict_demos"]["train"][:1]}
    path = write_program(case, tmp_path)
    records = data_only(lm_server, path, tmp_path / "run", "--traces", "labeled")
    belgium = next(r for r in records if "Belgium" in r["messages"][-2]["content"])
    assert len(belgium["messages"]) == 3  # its own demo is left out: system, user, assistant
    peru = next(r for r in records if "Peru" in r["messages"][-2]["content"])
    assert len(peru["messages"]) == 5


def test_auto_bootstraps_a_chain_of_thought_whose_reasoning_is_unlabeled(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["chain_of_thought_typed"]
    lm_server.responder = responder(case)
    path = write_program(case, tmp_path)
    done = dspx("finetune", str(path), "--data-only", "-o", str(tmp_path / "run"), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert "traces: bootstrap (the examples do not label every output of draft (3 of 3 unlabeled))" in done.stderr
    assert "traces: 2 records from 2 of 3 examples (draft.predict 2)" in done.stderr
    traces = json.loads((tmp_path / "run" / "traces.json").read_text())
    assert (traces["mode"], traces["records"], traces["examples_used"]) == ("bootstrap", 2, 2)


def test_labeled_with_a_step_left_unlabeled_trains_the_labeled_one(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["two_steps"]
    path = write_program(case, tmp_path)
    records = data_only(lm_server, path, tmp_path / "run", "--traces", "labeled")
    assert len(records) == 3  # the draft step, once per example; `verdict` is labeled nowhere
    assert all("`answer`" in r["messages"][0]["content"] for r in records)
    assert lm_server.requests == []


def test_a_failed_teacher_run_gives_no_records(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["predict_demos"]

    def respond(body: dict[str, Any]) -> str:
        if "Peru" in body["messages"][-1]["content"]:
            return "no sections at all"  # fails to parse, and so does its JSON fallback
        return responder(case)(body)

    lm_server.responder = respond
    path = write_program(case, tmp_path)
    records = data_only(lm_server, path, tmp_path / "run", "--traces", "bootstrap")
    assert len(records) == 2  # Belgium and Spain: Chile is wrong, Peru failed
    traces = json.loads((tmp_path / "run" / "traces.json").read_text())
    assert traces["failed_runs"] == 1


def test_the_same_command_reuses_its_records(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["predict_demos"]
    lm_server.responder = responder(case)
    path = write_program(case, tmp_path)
    first = data_only(lm_server, path, tmp_path / "run", "--traces", "bootstrap")
    calls = len(lm_server.requests)
    done = dspx(
        "finetune", str(path), "--data-only", "-o", str(tmp_path / "run"), "--traces", "bootstrap",
        BASE=lm_server.api_base,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "traces: reusing 3 records" in done.stderr
    assert len(lm_server.requests) == calls
    assert [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()] == first
    other = dspx(
        "finetune", str(path), "--data-only", "-o", str(tmp_path / "run"), "--traces", "labeled",
        BASE=lm_server.api_base,
    )  # fmt: skip
    assert other.returncode == 2
    assert "holds a finetune run of another program or other settings" in other.stderr


def test_the_default_run_folder_is_the_same_for_the_same_command(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["predict_demos"]
    path = write_program(case, tmp_path)
    first = dspx("finetune", str(path), "--data-only", "--json", cwd=tmp_path, BASE=lm_server.api_base)
    again = dspx("finetune", str(path), "--data-only", "--json", cwd=tmp_path, BASE=lm_server.api_base)
    other = dspx("finetune", str(path), "--data-only", "--json", "--set", "epochs=7", cwd=tmp_path, BASE="x")
    folders = [json.loads(done.stdout)["folder"] for done in (first, again, other)]
    assert folders[0] == folders[1] != folders[2]
    assert folders[0].startswith("runs/finetune-program-")


def test_a_teacher_lm_writes_the_traces_of_a_local_student(lm_server: LMServer, tmp_path: Path) -> None:
    """The program runs on the embedded model; --teacher-lm (the loopback server) answers instead."""
    case = CASES["predict_demos"]
    lm_server.responder = responder(case)
    path = write_program(case, tmp_path)
    program = yaml.safe_load(path.read_text())
    program["lm"] = "local/smollm2"
    path.write_text(yaml.safe_dump(program, sort_keys=False))
    records = data_only(
        lm_server, path, tmp_path / "run", "--traces", "bootstrap", "--teacher-lm", f"test-model@{lm_server.api_base}"
    )
    assert records == case["records"]  # the same prompts: the teacher's LM changes, not the program
    assert {r.body["model"] for r in lm_server.requests} == {"test-model"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["teacher"] == {"lm": "test-model", "state": None}
    assert summary["traces"]["mode"] == "bootstrap" and summary["student"] is None


def test_a_compiled_state_gives_the_student_its_demos(lm_server: LMServer, tmp_path: Path) -> None:
    case = {**CASES["predict_demos"], "demos": []}
    path = write_program(case, tmp_path)
    demo = {"question": "What is the capital of Italy?", "answer": "Rome"}
    state = {
        "draft": {
            "traces": [],
            "train": [],
            "demos": [demo, case["train"][0]],  # a train example among the demos is left out of its own record
            "signature": {
                "instructions": "Answer with the capital only.",
                "fields": [
                    {"prefix": "Q:", "description": "${question}"},
                    {"prefix": "A:", "description": "${answer}"},
                ],
            },
            "lm": None,
        }
    }
    (tmp_path / "compiled.json").write_text(json.dumps(state))
    records = data_only(lm_server, path, tmp_path / "run", "--state", str(tmp_path / "compiled.json"))
    assert all("Answer with the capital only." in r["messages"][0]["content"] for r in records)
    belgium = next(r for r in records if "Belgium" in r["messages"][-2]["content"])
    assert "Italy" in belgium["messages"][1]["content"] and len(belgium["messages"]) == 5
    peru = next(r for r in records if "Peru" in r["messages"][-2]["content"])
    assert len(peru["messages"]) == 7  # both demos
    assert lm_server.requests == []


def test_without_a_metric_every_teacher_run_gives_records(lm_server: LMServer, tmp_path: Path) -> None:
    case = CASES["predict_demos"]
    lm_server.responder = responder(case)
    path = write_program(case, tmp_path)
    program = yaml.safe_load(path.read_text())
    del program["metric"]
    path.write_text(yaml.safe_dump(program, sort_keys=False))
    records = data_only(lm_server, path, tmp_path / "run", "--traces", "bootstrap")
    assert len(records) == 4  # Chile's wrong answer too: nothing judges it, as in DSPy with metric=None


def test_bad_input_leaves_no_run_folder(lm_server: LMServer, tmp_path: Path) -> None:
    path = write_program(CASES["predict_demos"], tmp_path)
    (tmp_path / "bad.json").write_text("{")
    done = dspx("finetune", str(path), "--data-only", "--state", str(tmp_path / "bad.json"), cwd=tmp_path)
    assert done.returncode == 2 and "bad.json:1:2: the state file is not valid JSON" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_no_records_is_exit_1_naming_the_first_failure_and_a_rerun_collects_again(
    lm_server: LMServer, tmp_path: Path
) -> None:
    case = CASES["predict_demos"]
    lm_server.responder = lambda body: "no sections at all"
    path = write_program(case, tmp_path)
    args = ("finetune", str(path), "--data-only", "-o", str(tmp_path / "run"), "--traces", "bootstrap")
    done = dspx(*args, BASE=lm_server.api_base)
    assert done.returncode == 1
    assert "error: no training records: 4 of the teacher's 4 runs failed (the first: expected " in done.stderr
    assert not (tmp_path / "run" / "train.jsonl").exists()
    lm_server.responder = responder(case)
    again = dspx(*args, BASE=lm_server.api_base)
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "run" / "train.jsonl").read_text().splitlines()) == 3
