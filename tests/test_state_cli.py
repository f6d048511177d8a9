"""`--state`: a compiled state changes what run, inspect and evaluate send; a misfit is exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from dspx_cli.optimizers.state import dump_state, save_state_file
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner
from tests.cli_inprocess import ROOT, dspx
from tests.lm_server import LMServer

PROGRAM = ROOT / "programs" / "qa.yaml"


def compiled_state(tmp_path: Path) -> Path:
    runner = ProgramRunner(load_program(PROGRAM, env={}), context=None)
    predictor = runner.modules["answer"]
    predictor.demos = [{"question": "Largest planet?", "answer": "Jupiter", "augmented": True}]
    predictor.signature = predictor.signature.with_instructions("Answer in one word.")
    path = tmp_path / "state.json"
    save_state_file(path, dump_state(runner, metadata={"optimizer": "test"}))
    return path


def test_inspect_and_run_use_the_state(tmp_path: Path, lm_server: LMServer) -> None:
    state = compiled_state(tmp_path)
    plain = json.loads(dspx("inspect", str(PROGRAM), "-i", "question=Q?", "--json").stdout)[0]["messages"]
    done = dspx("inspect", str(PROGRAM), "-i", "question=Q?", "--json", "--state", str(state))
    assert done.returncode == 0, done.stderr
    messages = json.loads(done.stdout)[0]["messages"]
    assert messages != plain and len(messages) == 4  # system, one demo pair, the question
    assert messages[0]["content"].endswith("your objective is: \n        Answer in one word.")
    assert messages[1]["content"] == "[[ ## question ## ]]\nLargest planet?"

    lm_server.responder = lambda body: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    run = dspx("run", str(PROGRAM), "-i", "question=Q?", "--state", str(state), "--lm", f"m@{lm_server.api_base}")
    assert run.returncode == 0, run.stderr
    assert lm_server.requests[0].body["messages"] == messages


def test_a_state_that_does_not_fit_is_exit_2(tmp_path: Path) -> None:
    state = compiled_state(tmp_path)
    data = json.loads(state.read_text())
    data["other"] = data.pop("answer")
    state.write_text(json.dumps(data))
    for command in (["inspect", str(PROGRAM), "-i", "question=Q?"], ["run", str(PROGRAM), "-i", "question=Q?"]):
        done = dspx(*command, "--state", str(state))
        assert done.returncode == 2, done.stderr
        assert str(state) in done.stderr and len(done.stderr.strip().splitlines()) == 1
