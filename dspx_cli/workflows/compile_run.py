"""The folder a compile run keeps, and continuing a killed one (`dspx compile --resume RUN_DIR`).

runs/<timestamp>-<program>/
    compile.json   written before the optimizer starts: the optimizer, its settings, the program
    program.json   the program as resolved, secrets redacted (also written before the optimizer starts)
    state.json     the compiled state (at the end; `-o` puts it elsewhere)
    summary.json   scores, usage and timing (at the end)
    study.db ...   what the optimizer keeps there itself (mipro_v2: its optuna study, trials.jsonl,
                   candidates.json)

A resume needs compile.json and program.json, so both are written first: a run killed in the
middle of its search can be continued.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dspx_cli.core.redact import redact
from dspx_cli.errors import UsageError
from dspx_cli.optimizers.compile import OptimizerChoice
from dspx_cli.optimizers.registry import OPTIMIZERS, study_optimizers
from dspx_cli.program.model import Program
from dspx_cli.workflows.run_folder import default_run_dir, resolved_program

__all__ = ["COMPILE_RECORD", "check_study_flags", "prepare_run_dir"]

COMPILE_RECORD = "compile.json"


def check_study_flags(choice: OptimizerChoice, storage: str | None, study: str | None, resume: Path | None) -> None:
    """--storage, --study and --resume belong to the optimizers that keep a study."""
    given = [flag for flag, value in (("--storage", storage), ("--study", study), ("--resume", resume)) if value]
    if given and not OPTIMIZERS[choice.name].takes_study:
        takers = ", ".join(study_optimizers())
        raise UsageError(f"{'/'.join(given)}: {choice.name} keeps no study; only {takers} takes them")


def prepare_run_dir(program: Program, choice: OptimizerChoice, output: Path | None, resume: Path | None) -> Path:
    """The run folder, existing when this returns, with compile.json and program.json in it when the
    folder is the run's own (no -o) or the optimizer keeps a study there (a resume needs them).

    With `resume`, the folder of an earlier compile of this program with these settings."""
    record = _record(program, choice)
    if resume is not None:
        _check_resumable(resume, program, record)
        return resume
    run_dir = output.parent if output is not None else default_run_dir(program)
    run_dir.mkdir(parents=True, exist_ok=True)
    if output is None or OPTIMIZERS[choice.name].takes_study:
        (run_dir / "program.json").write_text(json.dumps(resolved_program(program), indent=2) + "\n")
        stamped = {**record, "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        (run_dir / COMPILE_RECORD).write_text(json.dumps(stamped, indent=2, default=str) + "\n")
    return run_dir


def _record(program: Program, choice: OptimizerChoice) -> dict[str, Any]:
    return redact({"program": str(program.path), "optimizer": choice.name, "settings": choice.settings})


def _identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its resume: everything but the LMs (a resumed run may
    reach the same model at another address; the cache and the study do not depend on it)."""
    kept = {key: value for key, value in resolved.items() if key not in ("lm", "prompt_lm")}
    modules = kept.get("modules")
    if isinstance(modules, dict):
        kept["modules"] = {
            name: {k: v for k, v in spec.items() if k != "lm"} if isinstance(spec, dict) else spec
            for name, spec in modules.items()
        }
    return kept


def _check_resumable(run_dir: Path, program: Program, record: dict[str, Any]) -> None:
    where = f"--resume {run_dir}"
    if not run_dir.is_dir():
        raise UsageError(f"{where}: no such folder")
    earlier_record = _read_json(run_dir / COMPILE_RECORD)
    earlier_program = _read_json(run_dir / "program.json")
    if earlier_record is None or earlier_program is None:
        raise UsageError(
            f"{where}: not a compile run folder (expected {COMPILE_RECORD} and program.json, "
            "as `dspx compile` writes them when it starts)"
        )
    if earlier_record.get("optimizer") != record["optimizer"]:
        raise UsageError(
            f"{where}: that run used optimizer {earlier_record.get('optimizer')!r}, not {record['optimizer']!r}"
        )
    if _identity(earlier_program) != _identity(resolved_program(program)):
        raise UsageError(f"{where}: that run compiled another program (its program.json differs from {program.path})")
    if json.loads(json.dumps(record["settings"], default=str)) != earlier_record.get("settings"):
        raise UsageError(
            f"{where}: that run used other {record['optimizer']} settings: {earlier_record.get('settings')}"
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
