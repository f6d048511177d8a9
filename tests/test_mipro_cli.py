"""`dspx compile` with `optimizer: {type: mipro_v2}` end to end, on the golden fixture's scripted server.

The program files are the fixture's (tests/fixtures/mipro/programs/), given the first `train`/`val`
rows of the support data as the golden cases were. Checked: DSPy's optuna trials and final state
through the real command (demo sets, proposer and search together), the run folder's records,
a kill-and-resume of the real process that repeats no finished trial's LM calls, and two
processes sharing one SQLite study.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli_inprocess import dspx
from tests.cli_process import ROOT
from tests.fixtures.mipro.cases import DEV_ROWS, TRAIN_ROWS, Script
from tests.lm_server import LMServer

pytest.importorskip("optuna")

FIXTURE = Path(__file__).parent / "fixtures" / "mipro"
GOLDEN = json.loads((FIXTURE / "golden.json").read_text())
CASES = {case["id"]: case for case in GOLDEN["mipro"]}
SETTING_KEYS = (
    "auto",
    "num_candidates",
    "num_trials",
    "minibatch",
    "minibatch_size",
    "minibatch_full_eval_steps",
    "max_bootstrapped_demos",
    "max_labeled_demos",
    "seed",
)


def write_case(tmp_path: Path, case_id: str, **overrides: Any) -> Path:
    """The case's program file with its train/dev rows beside it; `overrides` change settings."""
    case = CASES[case_id]
    folder = tmp_path / "program"
    folder.mkdir(exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS[: case["train"]]))
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in DEV_ROWS[: case["val"]]))
    text = (FIXTURE / "programs" / f"{case['program']}.yaml").read_text()
    text = text.replace("../../../../datasets/support/", "")
    settings = {key: case[key] for key in SETTING_KEYS if key in case} | overrides
    section = "optimizer:\n  type: mipro_v2\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())
    text = re.sub(r"optimizer:\n(?:  .*\n?)*", section, text)
    path = folder / f"{case['program']}.yaml"
    path.write_text(text)
    return path


def study_trials(run_dir: Path) -> list[Any]:
    import optuna

    storage = f"sqlite:///{run_dir / 'study.db'}"
    (summary,) = optuna.study.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def golden_view(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"number": t["number"], "params": t["params"], "value": t["value"]} for t in case["study_trials"]]


def view(trials: list[Any]) -> list[dict[str, Any]]:
    return [{"number": t.number, "params": dict(t.params), "value": t.value} for t in trials]


def compile_case(tmp_path: Path, case_id: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    program = write_case(tmp_path, case_id)
    run_dir = tmp_path / "run"
    with LMServer() as server:
        server.responder = Script(set(CASES[case_id].get("broken", [])))
        result = dspx(
            "compile",
            str(program),
            "-o",
            str(run_dir / "state.json"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-j",
            "1",
            MIPRO_API_BASE=server.api_base,
        )
    assert result.returncode == 0, result.stderr
    return result, run_dir


@pytest.mark.parametrize(
    "case_id",
    ["light_predict", "explicit_cot_two_predictors_minibatch", "zeroshot_predict", "summary_and_description_fail"],
)
def test_compile_reproduces_dspys_trials_and_final_state(case_id: str, tmp_path: Path) -> None:
    case = CASES[case_id]
    result, run_dir = compile_case(tmp_path, case_id)
    assert view(study_trials(run_dir)) == golden_view(case)

    # The state file carries DSPy's chosen instructions and demos, in DSPy's layout.
    state = json.loads((run_dir / "state.json").read_text())
    golden_state = case["final_state"]
    golden_predictors = (
        [golden_state]
        if "signature" in golden_state
        else [value for key, value in golden_state.items() if key != "metadata"]
    )
    ours = [value for key, value in state.items() if key != "metadata"]
    assert [p["signature"]["instructions"] for p in ours] == [p["signature"]["instructions"] for p in golden_predictors]
    assert [p["demos"] for p in ours] == [p["demos"] for p in golden_predictors]
    assert state["metadata"]["dspx"]["report"]["best_score"] == case["best_score"]

    # The run folder: the candidates DSPy proposed, and one record per trial in DSPy's log order.
    candidates = json.loads((run_dir / "candidates.json").read_text())
    assert list(candidates["instructions"].values()) == list(case["instruction_candidates"].values())
    log = records(run_dir)
    assert [r["number"] for r in log] == [t["number"] for t in case["study_trials"]]
    assert [r["score"] for r in log] == [t["value"] for t in case["study_trials"]]
    assert all(r["instructions"] and "best_score" in r for r in log)
    # Plain trial lines on stderr (not a terminal): one per trial, the choices and the scores.
    lines = [line for line in result.stderr.splitlines() if line.startswith("trial ")]
    assert len(lines) == len(case["study_trials"])
    assert lines[0].startswith("trial base #0")


def test_a_proposer_that_only_answers_empty_json_does_not_end_the_run(tmp_path: Path) -> None:
    # DSPy dies here (AdapterParseError, the 135M model's `{}`); dspx keeps the original instruction.
    result, run_dir = compile_case(tmp_path, "proposer_replies_empty_json")
    assert "this candidate is dropped" in result.stderr
    candidates = json.loads((run_dir / "candidates.json").read_text())
    assert candidates["instructions"] == {
        "route": ["Route the customer message to the support queue that should handle it."]
    }
    assert len(objective(study_trials(run_dir))) == 3
    assert all(r["params"]["route"]["instruction"] == 0 for r in records(run_dir))


def test_zero_shot_trials_choose_instructions_only(tmp_path: Path) -> None:
    _, run_dir = compile_case(tmp_path, "zeroshot_predict")
    assert all(set(t.params) == {"0_predictor_instruction"} for t in study_trials(run_dir))
    state = json.loads((run_dir / "state.json").read_text())
    assert state["route"]["demos"] == []
    assert all(choice["demos"] is None for r in records(run_dir) for choice in r["params"].values())


# ----- the real process: kill and resume, two workers ------------------------------------------------


def start(program: Path, run_dir: Path, cache: Path, api_base: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DSPX_LM"}
    env.update({"NO_COLOR": "1", "MIPRO_API_BASE": api_base})
    command = [sys.executable, "-m", "dspx_cli", "compile", str(program), "--cache-dir", str(cache), "-j", "1"]
    return subprocess.Popen(
        [*command, "-o", str(run_dir / "state.json"), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Any, process: subprocess.Popen[str], what: str, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} within {limit_s} s")
        time.sleep(0.02)


def objective(trials: list[Any]) -> list[Any]:
    return [t for t in trials if t.state.name == "COMPLETE" and not t.user_attrs.get("added")]


def test_a_killed_compile_resumes_without_repeating_a_finished_trial(tmp_path: Path) -> None:
    program = write_case(tmp_path, "light_predict")
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    with LMServer() as server:
        server.responder = Script()
        server.default_delay = 0.02  # trials take long enough to be killed in the middle of the search
        first = start(program, run_dir, cache, server.api_base)
        wait_for(lambda: len(records(run_dir)) >= 4, first, "the baseline and three trials")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        first_requests = [json.dumps(r.body, sort_keys=True) for r in server.requests]
        finished_before = [r["number"] for r in records(run_dir)]
        assert 4 <= len(finished_before) < 11

        second = dspx(
            "compile", str(program), "--resume", str(run_dir), "--cache-dir", str(cache), "-j", "1",
            MIPRO_API_BASE=server.api_base,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        second_requests = [json.dumps(r.body, sort_keys=True) for r in server.requests[len(first_requests) :]]

    assert re.search(rf"resuming: {len(finished_before) - 1} of 10 trials finished", second.stderr)
    # The study holds exactly num_trials finished objective trials, and no trial number twice.
    trials = study_trials(run_dir)
    assert len(objective(trials)) == 10
    numbers = [r["number"] for r in records(run_dir)]
    assert numbers[: len(finished_before)] == finished_before and len(numbers) == len(set(numbers))
    # No finished trial ran again: the setup, the baseline and the finished trials asked the server
    # nothing more (their calls were cached); at most the one request in flight at the kill repeats.
    assert second_requests, "the resumed run had trials left to run"
    repeated = set(second_requests) & set(first_requests)
    assert len(repeated) <= 1
    assert not any("prompt-model" in body for body in second_requests)  # the proposer did not run again
    state = json.loads((run_dir / "state.json").read_text())
    assert state["metadata"]["dspx"]["report"]["objective_trials"] == 10


def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    program = write_case(tmp_path, "light_predict")
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    flags = ("--storage", storage, "--study", "shared")
    # One server per process, so the first can be held back: once its setup is done (the baseline
    # is in its trials.jsonl) its calls wait until the second has finished a trial, however the
    # machine schedules them; otherwise a fast first process could take every trial before the
    # second has even scored its dev set.
    script = Script()
    deadline: list[float] = []  # one wait of at most 120 s in all, so a broken second fails fast

    def first_replies(body: dict[str, Any]) -> str | list[str]:
        if records(tmp_path / "a"):
            deadline.append(deadline[0] if deadline else time.monotonic() + 120)
            while not records(tmp_path / "b") and time.monotonic() < deadline[0]:
                time.sleep(0.02)
        return script(body)

    with LMServer() as server_a, LMServer() as server_b:
        server_a.responder, server_b.responder = first_replies, script
        first = start(program, tmp_path / "a", tmp_path / "cache-a", server_a.api_base, *flags)
        # The second joins once the study exists: it waits for the first to set it up, then takes trials.
        wait_for(lambda: (tmp_path / "a" / "study.json").exists(), first, "the study")
        second = start(program, tmp_path / "b", tmp_path / "cache-b", server_b.api_base, *flags)
        outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs

    import optuna

    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(objective(trials)) == 10
    mine = {name: [r["number"] for r in records(tmp_path / name)] for name in ("a", "b")}
    # Each trial ran in one process only; the second process did trials of its own.
    assert not set(mine["a"]) & set(mine["b"])
    assert mine["b"]
    assert sorted(set(mine["a"]) | set(mine["b"])) == [t.number for t in trials if t.state.name == "COMPLETE"]
    # The second process proposed nothing (no prompt-model call in its usage line): it read the
    # first one's candidates from the study.
    assert "prompt-model" in outputs[0][1] and "prompt-model" not in outputs[1][1]
    assert json.loads((tmp_path / "b" / "candidates.json").read_text()) == json.loads(
        (tmp_path / "a" / "candidates.json").read_text()
    )


def test_two_compiles_with_one_seed_choose_the_same(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        _, run_dir = compile_case(folder, "explicit_cot_two_predictors_minibatch")  # each its own cache
        state = json.loads((run_dir / "state.json").read_text())
        runs.append(
            (view(study_trials(run_dir)), records(run_dir), {k: v for k, v in state.items() if k != "metadata"})
        )
    assert runs[0] == runs[1]


@pytest.mark.parametrize("damage", ["candidates", "rng"])
def test_a_damaged_study_in_a_run_folder_is_a_one_line_error(damage: str, tmp_path: Path) -> None:
    """The study a --resume reads may come with a folder from someone else: what it holds is
    checked before the search uses it."""
    import optuna

    program = write_case(tmp_path, "light_predict")
    _, run_dir = compile_case(tmp_path, "light_predict")
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run_dir / 'study.db'}")
    if damage == "candidates":
        study.set_user_attr("candidates", {"predictors": ["route"], "instructions": {"route": [1, 2]}})
    else:  # finished trials cannot be changed through optuna: change the file, as anyone could
        with sqlite3.connect(run_dir / "study.db") as db:
            db.execute("UPDATE trial_user_attributes SET value_json = '[1]' WHERE key = 'rng_state'")
    with LMServer() as server:
        server.responder = Script()
        done = dspx(
            "compile", str(program), "--resume", str(run_dir), "-o", str(run_dir / "state.json"),
            "--cache-dir", str(tmp_path / "cache"), MIPRO_API_BASE=server.api_base,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: study ") and "not" in line and "Traceback" not in done.stderr
