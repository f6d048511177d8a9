"""`dspx compile`'s plumbing for instruction optimizers (issue 14): mipro_v2/copro settings checked
across fields (exit 2 at file:line or the --set), `prompt_lm:` and --prompt-lm, --storage/--study/
--resume (only for study optimizers), the run folder made before the optimizer runs, and what a
CompileJob carries (prompt LM, program text without secrets, notices, trials).

The optimizers themselves are tested elsewhere; here a recording optimizer, registered for the
test, stands in for one that keeps a study.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.errors import DspxError
from dspx_cli.optimizers.registry import OPTIMIZERS, CompileJob, OptimizerType
from dspx_cli.optimizers.settings_checks import mipro_num_trials
from dspx_cli.workflows.compile import CompileOptions, compile_program
from dspx_cli.workflows.context import CacheOptions
from dspx_cli.workflows.hooks import Hooks
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.test_compile_cli import respond

SECRET = "sk-secret-4242"

# ----- settings checks ------------------------------------------------------------------------


def program_with(tmp_path: Path, optimizer: str, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent("""\
        modules:
          route: {signature: "message -> queue"}
          rate: {signature: "message, queue -> priority"}
        flow:
          - {id: route, module: route, with: {message: $input.message}}
          - {id: rate, module: rate, with: {message: $input.message, queue: $route.queue}}
        """)
        + extra
        + "optimizer:\n"
        + textwrap.indent(textwrap.dedent(optimizer), "  ")
    )
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    ("optimizer", "culprit", "expected"),
    [
        ("type: mipro_v2\nnum_trials: 12\n", "num_trials:", "auto: light chooses num_candidates and num_trials"),
        ("type: mipro_v2\nauto: medium\nnum_candidates: 5\n", "num_candidates:", "set auto: null to give them"),
        ("type: mipro_v2\nauto: extreme\n", "auto:", "expected one of light, medium, heavy or null, got 'extreme'"),
        ("type: mipro_v2\nauto: null\nnum_trials: 9\n", "optimizer:", "auto: null needs num_candidates"),
        ("type: mipro_v2\nminibatch_size: 0\n", "minibatch_size:", "expected a number >= 1, got 0"),
        ("type: mipro_v2\nminibatch_full_eval_steps: 0\n", "minibatch_full_eval_steps:", ">= 1, got 0"),
        ("type: mipro_v2\nmax_labeled_demos: -1\n", "max_labeled_demos:", ">= 0, got -1"),
        ("type: mipro_v2\ninit_temperature: -0.5\n", "init_temperature:", ">= 0, got -0.5"),
        ("type: copro\nbreadth: 1\n", "breadth:", "expected a number > 1"),
        ("type: copro\ndepth: 0\n", "depth:", "expected a number >= 1, got 0"),
        ("type: copro\ninit_temperature: -1\n", "init_temperature:", ">= 0, got -1"),
    ],
)
def test_bad_settings_exit_2_at_the_line_that_gave_them(
    optimizer: str, culprit: str, expected: str, tmp_path: Path
) -> None:
    path = program_with(tmp_path, optimizer)
    for command in ("validate", "compile"):
        done = dspx(command, str(path))
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert f"{path}:{line_of(path, culprit)}:" in done.stderr
        assert expected in done.stderr


def test_auto_null_without_num_trials_suggests_dspys_count(tmp_path: Path) -> None:
    path = program_with(tmp_path, "type: mipro_v2\nauto: null\nnum_candidates: 6\n")
    done = dspx("validate", str(path))
    assert done.returncode == 2
    # Two predictors, demos on: DSPy's formula gives int(max(2 * 4 * log2(6), 9)) = 20.
    assert mipro_num_trials(2, 6, zeroshot=False) == 20
    assert "auto: null needs num_trials; with 2 predictor(s) and 6 candidates, DSPy suggests num_trials: 20" in (
        done.stderr
    )
    zeroshot = program_with(
        tmp_path, "type: mipro_v2\nauto: null\nnum_candidates: 6\nmax_bootstrapped_demos: 0\nmax_labeled_demos: 0\n"
    )
    assert f"num_trials: {mipro_num_trials(2, 6, zeroshot=True)}" in dspx("validate", str(zeroshot)).stderr


def test_bad_set_values_name_the_set(tmp_path: Path) -> None:
    path = program_with(tmp_path, "type: mipro_v2\n")
    done = dspx("compile", str(path), "--set", "auto=null", "--set", "num_candidates=3", "--set", "num_trials=0")
    assert done.returncode == 2
    assert done.stderr == "error: --set num_trials=0: optimizer mipro_v2: num_trials: expected a number >= 1, got 0\n"
    copro = dspx("compile", str(path), "--optimizer", "copro", "--set", "breadth=1")
    assert copro.returncode == 2 and copro.stderr.startswith("error: --set breadth=1: optimizer copro: breadth:")
    fine = dspx(
        "validate", str(program_with(tmp_path, "type: mipro_v2\nauto: null\nnum_candidates: 3\nnum_trials: 4\n"))
    )
    assert fine.returncode == 0, fine.stderr


# ----- prompt_lm: -----------------------------------------------------------------------------


def test_prompt_lm_is_checked_where_it_is_written_and_shown_by_validate(tmp_path: Path) -> None:
    path = program_with(tmp_path, "type: copro\n", extra="prompt_lm: openai/gpt-4o-mini\n")
    done = dspx("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert "  prompt lm: openai/gpt-4o-mini\n" in done.stdout

    bad = program_with(tmp_path, "type: copro\n", extra="prompt_lm:\n  model: nosuch/model\n  temperature: 1.0\n")
    done = dspx("validate", str(bad))
    assert done.returncode == 2
    assert f"{bad}:{line_of(bad, 'model: nosuch')}:" in done.stderr and "unknown model 'nosuch/model'" in done.stderr

    typo = program_with(tmp_path, "type: copro\n", extra="prompt_lm: {model: openai/x, temprature: 1}\n")
    done = dspx("validate", str(typo))
    assert (
        done.returncode == 2 and "temprature" in done.stderr and f"{typo}:{line_of(typo, 'prompt_lm')}:" in done.stderr
    )


def test_study_and_prompt_flags_are_refused_by_optimizers_that_take_none(tmp_path: Path) -> None:
    path = program_with(tmp_path, "type: bootstrap_few_shot\n")
    for flags, message in [
        (["--storage", "sqlite:///x.db"], "--storage: bootstrap_few_shot keeps no study; only mipro_v2 takes them"),
        (["--study", "s"], "--study: bootstrap_few_shot keeps no study"),
        (["--resume", str(tmp_path)], "--resume: bootstrap_few_shot keeps no study"),
        (["--prompt-lm", "openai/x"], "--prompt-lm: bootstrap_few_shot uses no prompt LM"),
    ]:
        done = dspx("compile", str(path), *flags)
        assert done.returncode == 2, (flags, done.stderr)
        assert done.stderr.startswith(f"error: {message}") and done.stderr.count("\n") == 1
    # copro takes a prompt LM but keeps no study
    done = dspx("compile", str(path), "--optimizer", "copro", "--storage", "sqlite:///x.db")
    assert done.returncode == 2 and "copro keeps no study" in done.stderr
    done = dspx("compile", str(path), "--optimizer", "copro", "--prompt-lm", "nosuch/model")
    assert done.returncode == 2 and done.stderr.startswith("error: --prompt-lm nosuch/model: unknown model")


# ----- a recording study optimizer ------------------------------------------------------------


@dataclass
class RecordingSettings:
    seed: int = 0


JOBS: list[tuple[CompileJob, dict[str, Any]]] = []
KILL = {"on": False}  # the recording optimizer dies mid-search, as a killed run would


async def record_job(runner: Any, settings: dict[str, Any], job: CompileJob) -> dict[str, Any]:
    assert job.run_dir is not None
    seen = {"files": sorted(p.name for p in job.run_dir.iterdir()), "settings": settings}
    JOBS.append((job, seen))
    assert job.notice is not None and job.on_trial is not None
    job.notice("proposing instructions")
    job.on_trial({"number": 0, "kind": "baseline", "params": {}, "score": 0.5, "best_score": 0.5, "trial": 0, "of": 2})
    if KILL["on"]:
        raise DspxError("killed in the middle of the search")
    return {"trials": 1}


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[CompileJob, dict[str, Any]]]:
    record = OptimizerType(
        "recording_study",
        "records its CompileJob",
        RecordingSettings,
        f"{__name__}:record_job",
        takes_study=True,
        takes_prompt_lm=True,
    )
    monkeypatch.setitem(OPTIMIZERS, record.name, record)
    JOBS.clear()
    return JOBS


def study_program(tmp_path: Path, prompt_lm: str | None) -> Path:
    rows = [{"text": f"w{i}", "answer": f"w{i}"} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        lm: {{model: openai/m, api_base: "${{BASE}}", num_retries: 0, api_key: {SECRET}}}
        """)
        + (prompt_lm or "")
        + textwrap.dedent("""\
        modules:
          shout: {signature: "text -> answer"}
        data: {train: train.jsonl, dev: dev.jsonl}
        metric: exact_match
        optimizer: {type: recording_study}
        """)
    )
    return path


PROMPT_LM = f"prompt_lm:\n  model: openai/prompt-model\n  temperature: 0.7\n  api_key: {SECRET}\n"


def test_a_study_optimizer_gets_its_job_filled(
    recording: list[tuple[CompileJob, dict[str, Any]]], lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = respond
    path = study_program(tmp_path, PROMPT_LM)
    done = dspx(
        "compile",
        str(path),
        "--json",
        "--storage",
        "sqlite:///s.db",
        "--study",
        "mine",
        cwd=tmp_path,
        BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    ((job, seen),) = recording
    summary = json.loads(done.stdout)
    run_dir = (tmp_path / summary["state"]).parent
    assert job.run_dir is not None and job.run_dir.is_absolute() and job.run_dir == run_dir.resolve()
    assert seen["files"] == ["compile.json", "program.json"]  # written before the optimizer ran
    assert (job.storage, job.study_name, job.resume) == ("sqlite:///s.db", "mine", False)
    assert job.prompt_lm is not None and job.prompt_lm_config is not None
    assert (job.prompt_lm_config.model, job.prompt_lm_config.temperature) == ("openai/prompt-model", 0.7)
    assert "prompt_lm:\n  model: openai/prompt-model" in job.program_text and SECRET not in job.program_text
    assert "api_key: <redacted>" in job.program_text
    assert job.valset is not None and len(job.valset) == 2
    assert "proposing instructions\n" in done.stderr
    assert summary["prompt_lm"] == "openai/prompt-model"
    for written in run_dir.iterdir():
        assert SECRET not in written.read_text(), written.name
    assert SECRET not in done.stdout


def test_prompt_lm_defaults_to_the_program_lm_and_the_flag_wins(
    recording: list[tuple[CompileJob, dict[str, Any]]], lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = respond
    path = study_program(tmp_path, None)
    assert dspx("compile", str(path), "-o", "a/s.json", cwd=tmp_path, BASE=lm_server.api_base).returncode == 0
    assert recording[-1][0].prompt_lm_config is not None
    assert recording[-1][0].prompt_lm_config.model == "openai/m"  # DSPy: the task model
    path = study_program(tmp_path, PROMPT_LM)
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF")
    done = dspx(
        "compile", str(path), "-o", "b/s.json", "--prompt-lm", "tiny.gguf", cwd=tmp_path, BASE=lm_server.api_base
    )
    assert done.returncode == 0, done.stderr
    config = recording[-1][0].prompt_lm_config
    assert config is not None and config.model == str((tmp_path / "tiny.gguf").resolve())  # relative to the cwd
    assert recording[-1][0].run_dir == (tmp_path / "b").resolve()  # -o's folder


def test_trials_reach_the_hooks(
    recording: list[tuple[CompileJob, dict[str, Any]]],
    lm_server: LMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lm_server.responder = respond
    path = study_program(tmp_path, None)
    monkeypatch.setenv("BASE", lm_server.api_base)
    trials: list[dict[str, Any]] = []
    notices: list[str] = []
    compile_program(
        path,
        None,
        CompileOptions(output=tmp_path / "out" / "state.json"),
        CacheOptions(directory=tmp_path / "cache"),
        Hooks(notice=notices.append, trial=trials.append),
    )
    assert trials == [
        {"number": 0, "kind": "baseline", "params": {}, "score": 0.5, "best_score": 0.5, "trial": 0, "of": 2}
    ]
    assert "proposing instructions\n" in notices  # the job's notice adds the newline Hooks.notice expects


def test_resume_continues_in_the_killed_runs_folder(
    recording: list[tuple[CompileJob, dict[str, Any]]], lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = respond
    path = study_program(tmp_path, PROMPT_LM)
    KILL["on"] = True
    try:
        killed = dspx("compile", str(path), "--set", "seed=3", cwd=tmp_path, BASE=lm_server.api_base)
    finally:
        KILL["on"] = False
    assert killed.returncode != 0 and "killed in the middle of the search" in killed.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["compile.json", "program.json"]

    # Other settings than the killed run's: refused, since the study would not match.
    other = dspx("compile", str(path), "--resume", str(run_dir), cwd=tmp_path, BASE=lm_server.api_base)
    assert other.returncode == 2 and "that run used other recording_study settings" in other.stderr

    # The same LMs at another address (a restarted server): the same program, so it resumes.
    with LMServer() as moved:
        moved.responder = respond
        done = dspx(
            "compile",
            str(path),
            "--set",
            "seed=3",
            "--resume",
            str(run_dir),
            "--json",
            cwd=tmp_path,
            BASE=moved.api_base,
        )
    assert done.returncode == 0, done.stderr
    job = recording[-1][0]
    assert job.resume is True and job.run_dir == run_dir.resolve()
    assert {"state.json", "summary.json"} <= {p.name for p in run_dir.iterdir()}
    assert Path(json.loads(done.stdout)["state"]) == run_dir / "state.json"


def test_resume_refuses_a_folder_that_is_not_this_programs_compile_run(
    recording: list[tuple[CompileJob, dict[str, Any]]], lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = respond
    path = study_program(tmp_path, None)
    cases = {
        "missing": "no such folder",
        "empty": "not a compile run folder (expected compile.json and program.json",
    }
    (tmp_path / "empty").mkdir()
    for name, message in cases.items():
        done = dspx("compile", str(path), "--resume", str(tmp_path / name), cwd=tmp_path, BASE=lm_server.api_base)
        assert done.returncode == 2
        assert done.stderr.startswith(f"error: --resume {tmp_path / name}: {message}")
        assert done.stderr.count("\n") == 1
    evaluated = dspx("evaluate", str(path), "--output", str(tmp_path / "ev"), cwd=tmp_path, BASE=lm_server.api_base)
    assert evaluated.returncode == 0, evaluated.stderr
    done = dspx("compile", str(path), "--resume", str(tmp_path / "ev"), cwd=tmp_path, BASE=lm_server.api_base)
    assert done.returncode == 2 and "not a compile run folder" in done.stderr

    assert dspx("compile", str(path), "-o", "run/state.json", cwd=tmp_path, BASE=lm_server.api_base).returncode == 0
    path.write_text(path.read_text().replace('"text -> answer"', '"text -> answer, note"'))
    done = dspx("compile", str(path), "--resume", str(tmp_path / "run"), cwd=tmp_path, BASE=lm_server.api_base)
    assert done.returncode == 2 and "that run compiled another program (its program.json differs" in done.stderr


# ----- a run folder's study.json is not trusted with a storage URL ------------------------------


def test_resume_takes_no_storage_outside_the_run_folder_from_study_json(tmp_path: Path) -> None:
    """A run folder can come from someone else (a pull request, an archive): its study.json must not
    make dspx open or create a database elsewhere."""
    pytest.importorskip("optuna")
    from dspx_cli.errors import UsageError
    from dspx_cli.optimizers.study import STUDY_FILE, open_study

    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere.db"
    run_dir.mkdir()
    (run_dir / STUDY_FILE).write_text(json.dumps({"study": "s", "storage": f"sqlite:///{elsewhere}"}))
    with pytest.raises(UsageError, match=r"outside the run folder.*pass --storage"):
        open_study(run_dir=run_dir, storage=None, name="s", seed=9, resume=True)
    assert not elsewhere.exists()


def test_a_moved_run_folder_resumes_from_its_own_study_db(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from dspx_cli.optimizers.study import STUDY_FILE, open_study

    run_dir = tmp_path / "moved"
    run_dir.mkdir()
    old = tmp_path / "where-it-was" / "study.db"
    (run_dir / STUDY_FILE).write_text(json.dumps({"study": "s", "storage": f"sqlite:///{old}"}))
    open_study(run_dir=run_dir, storage=None, name="s", seed=9, resume=True)
    assert (run_dir / "study.db").exists() and not old.exists()
