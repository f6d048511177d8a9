"""The math showcase: programs/math.yaml (ProgramOfThought, real sandbox), math_cot.yaml
(ChainOfThought) and math_agent.yaml (ReAct with the python tool) on datasets/math, scored by
numeric_match, with the loopback LM standing in for a model (DSPX_LM points every module at it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.modules.code_steps import parse_code
from dspx_cli.sandbox import SandboxLimits
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.sandbox_helpers import needs_deno, open_box

ROOT = Path(__file__).resolve().parent.parent
DEV = [json.loads(line) for line in (ROOT / "datasets" / "math" / "dev.jsonl").read_text().splitlines()]

# The code a model could write for the first four dev problems; the third is wrong (28, not 56).
CODE = {
    DEV[0]["question"]: "candies = 18 - 4 + 10",
    DEV[1]["question"]: "spaces = 6 * 25\nprint(spaces)",
    DEV[2]["question"]: "km = 4 * 7\nprint(km)",
    DEV[3]["question"]: "result = 63 / 7\nSUBMIT({'answer': result})",
}


def reply(**fields: Any) -> str:
    return "\n\n".join(f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items()) + "\n\n[[ ## completed ## ]]"


def field(text: str, name: str) -> str:
    found = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?:\n\n\[\[ ## |\n\nRespond with|$)", text, re.DOTALL)
    assert found, (name, text)
    return found.group(1)


def program_of_thought(body: dict[str, Any]) -> str:
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "`final_generated_code`" in system:  # the answer step reads what the sandbox gave back
        output = json.loads(field(user, "code_output"))
        value = output["output"]["answer"] if isinstance(output, dict) else output
        return reply(reasoning="The code computed it.", answer=str(value).strip())
    return reply(reasoning="Compute it.", generated_code=f"```python\n{CODE[field(user, 'question')]}\n```")


@needs_deno
def test_program_of_thought_scores_what_the_sandbox_computed(lm_server: LMServer) -> None:
    lm_server.responder = program_of_thought
    done = dspx(
        "evaluate", "programs/math.yaml", "--limit", "4", "--json", "--no-cache",
        cwd=ROOT, DSPX_LM=f"served@{lm_server.api_base}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["score"] == pytest.approx(0.75), summary
    answer_steps = [r for r in lm_server.requests if "`final_generated_code`" in r.body["messages"][0]["content"]]
    answers = [field(r.body["messages"][-1]["content"], "code_output") for r in answer_steps]
    # The last expression's value (an assignment gets its name appended, as in DSPy), printed text,
    # and SUBMIT's dict (63 / 7 is 9.0 in Python; it crosses to the host as JSON through JavaScript, as 9).
    assert sorted(answers) == sorted(["24", '"150\\n"', '"28\\n"', '{"output": {"answer": 9}}'])


def test_chain_of_thought_scores_the_last_number_of_its_answer(lm_server: LMServer) -> None:
    golds = {row["question"]: row["answer"] for row in DEV}

    def responder(body: dict[str, Any]) -> str:
        question = field(body["messages"][-1]["content"], "question")
        gold = golds[question]
        return reply(reasoning="Step by step.", answer=f"{gold} in all" if gold != "150" else "6 * 25 = 160")

    lm_server.responder = responder
    done = dspx(
        "evaluate", "programs/math_cot.yaml", "--limit", "4", "--json", "--no-cache",
        cwd=ROOT, DSPX_LM=f"served@{lm_server.api_base}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("math.yaml", "program_of_thought"),
        ("math_cot.yaml", "chain_of_thought"),
        ("math_agent.yaml", "react · 0 demos · tools calculator, python"),
    ],
)
def test_the_math_programs_validate(name: str, step: str) -> None:
    done = dspx("validate", f"programs/{name}", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"step solve: {step}" in done.stdout and "numeric_match" in done.stdout


def test_the_math_dataset_is_whole_numbers_and_no_problem_is_in_both_splits() -> None:
    train = [json.loads(line) for line in (ROOT / "datasets" / "math" / "train.jsonl").read_text().splitlines()]
    assert (len(train), len(DEV)) == (24, 30)
    assert all(row["answer"].isdigit() for row in train + DEV)
    assert not {row["question"] for row in train} & {row["question"] for row in DEV}


@needs_deno
def test_every_worked_program_of_the_train_split_submits_its_gold_answer() -> None:
    # The `generated_code` column is the labeled demo code_generate learns from (LabeledFewShot):
    # code that does not run, or SUBMITs a wrong number, would teach the model the wrong thing.
    train = [json.loads(line) for line in (ROOT / "datasets" / "math" / "train.jsonl").read_text().splitlines()]
    for box in open_box(SandboxLimits(pool_size=1)):
        for row in train:
            code, error = parse_code(row["generated_code"])
            assert error is None and "SUBMIT(" in code, row
            execution = box.execute(code)
            assert (execution.error, execution.final) == (None, True), row
            assert execution.output == {"output": {"answer": int(row["answer"])}}, row
