"""`finetune`: train the program's local model on its own traces and save a state that runs it.

runs/finetune-<program>-<key>/      (the same folder for the same command: a rerun resumes)
    run.json         what decided the folder: program hash, student, teacher, traces, settings
    program.json     the program as resolved, secrets redacted
    train.jsonl      the training records (OpenAI's chat fine-tuning format), reused by a rerun
    traces.json      where the records came from (labeled or bootstrap, counts per predictor)
    checkpoint-N/, model/, model.gguf, result.json    the trainer's (finetune/trainer.py)
    state.json       the program's state whose predictors run the fine-tuned model (--state)
    summary.json     dev scores before and after, records, steps, loss curve, times, settings

The folder's name is a hash of everything that changes the result, so running the same command
again finds it: the records are read back instead of collected again and the trainer resumes from
its last checkpoint. `-o DIR` names the folder; a folder made for other settings is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.core import Example
from dspx_cli.core.image_file import fingerprint_text
from dspx_cli.core.redact import redact
from dspx_cli.errors import DspxError, UsageError
from dspx_cli.evaluate.datasets import BadRow
from dspx_cli.evaluate.evaluator import Evaluation, evaluate
from dspx_cli.evaluate.metrics import Metric, resolve_metric
from dspx_cli.evaluate.spans import evaluation_attributes
from dspx_cli.finetune.section import FinetuneChoice, choose_finetune_settings
from dspx_cli.finetune.student import student_model
from dspx_cli.finetune.traces import TraceReport, bootstrap_records, choose_trace_mode, labeled_records
from dspx_cli.finetune.trainer import GGUF_FILE, MODEL_DIR
from dspx_cli.lm.cache import CacheMode
from dspx_cli.lm.registry import anchor_model_path
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.optimizers.compile import build_teacher
from dspx_cli.optimizers.state import dump_state, local_model_entry, save_state_file
from dspx_cli.program.batch import default_concurrency
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner
from dspx_cli.workflows.context import CacheOptions, build_runner
from dspx_cli.workflows.hooks import Hooks
from dspx_cli.workflows.run_folder import program_hash, resolved_program
from dspx_cli.workflows.training_data import train_and_dev
from dspx_cli.workflows.validate import check_teacher

logger = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"
TRACES_FILE = "traces.json"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class FinetuneOptions:
    assignments: tuple[str, ...] = ()
    output: Path | None = None  # the run folder
    concurrency: int | None = None
    limit: int | None = None
    traces: str | None = None  # auto | labeled | bootstrap; None: the file's (default auto)
    data_only: bool = False
    teacher_lm: str | None = None
    teacher_state: Path | None = None
    state: Path | None = None  # a compiled state for the student: its demos are in the prompts trained on
    as_json: bool = False


@dataclass(frozen=True)
class FinetuneResult:
    summary: dict[str, Any]
    folder: Path
    train_file: Path
    state: Path | None  # None with --data-only
    meter: UsageMeter
    seconds: float


def finetune_program(
    path: Path,
    lm_override: str | None,
    options: FinetuneOptions,
    cache: CacheOptions = CacheOptions(),
    hooks: Hooks = Hooks(),
) -> FinetuneResult:
    started = time.perf_counter()
    program = load_program(path, lm_override=lm_override)
    teacher_lm = anchor_model_path(options.teacher_lm, Path.cwd()) if options.teacher_lm else None
    choice = choose_finetune_settings(
        program,
        options.assignments,
        teacher_lm=teacher_lm,
        teacher_state=options.teacher_state,
        traces=options.traces,
    )
    check_teacher(program, choice.teacher, teacher_lm, section="finetune")
    student: tuple[str, Path] | None = None if options.data_only else student_model(program)
    trainset, devset = train_and_dev(program, "finetune", options.limit)

    concurrency = options.concurrency or default_concurrency(program)
    context = cache.context(program)
    # Without a metric every teacher run that did not fail gives records (DSPy's BootstrapFinetune
    # with metric=None) and the dev split is not scored.
    metric = resolve_metric(program, context) if program.spec.metric is not None else None
    runner = build_runner(program, context, options.state)
    teacher = build_teacher(program, choice.teacher, context) or runner
    # Everything was checked above: only now is the folder made.
    run = _run_record(program, lm_override, choice, student, options, trainset)
    folder = options.output or Path("runs") / f"finetune-{_slug(program)}-{run['hash'][:12]}"
    _claim(folder, run, program)

    telemetry = context.telemetry  # phase spans: collect traces, dev before, train (export), dev after

    async def collect() -> tuple[TraceReport, Evaluation | None]:
        try:
            with telemetry.span("collect traces", {"dspx.examples": len(trainset)}) as span:
                report = await _records(
                    folder, runner, teacher, trainset, metric, choice, concurrency, context.meter, hooks
                )
                span.update(
                    {
                        "dspx.traces.mode": report.mode,
                        "dspx.traces.records": len(report.records),
                        "dspx.traces.examples_used": report.examples_used,
                        "dspx.traces.failed_runs": report.failed_runs,
                    }
                )
            if options.data_only or not report.records:
                return report, None
            return report, await _score(runner, devset, metric, concurrency, context.meter, hooks, "dev before")
        finally:
            await context.aclose()

    report, before = asyncio.run(collect())
    train_file = folder / TRAIN_FILE
    summary: dict[str, Any] = {
        "program": str(program.path),
        "program_sha256": program_hash(program),
        "folder": str(folder),
        "train_file": str(train_file),
        "student": run["student"],
        "teacher": run["teacher"],
        "settings": choice.settings.record(),
        "traces": report.describe(),
        "trainset": len(trainset),
        "devset": len(devset),
        "score_before": before.score if before else None,
    }
    if not report.records:
        _finish(folder, summary, None, context.meter, started)
        raise NoRecords(f"no training records: {_why_empty(report)} (see {folder / TRACES_FILE})")
    if options.data_only:
        return _finish(folder, summary, None, context.meter, started)

    assert student is not None
    from dspx_cli.finetune.run_training import train_student

    hooks.notice(f"training {student[0]} on {len(report.records)} records in {folder}\n")
    written = _modified(folder)
    with (
        telemetry.span(
            "train", {"dspx.train.records": len(report.records), "dspx.train.epochs": choice.settings.epochs}
        ) as span,
        hooks.training("train") as tracker,
    ):
        trained = train_student(report.records, student[1], choice.settings, folder, tracker.step, telemetry)
        losses = trained.summary["loss_curve"]
        span.update(
            {
                "dspx.train.steps": trained.summary["steps"],
                "dspx.train.final_loss": losses[-1] if losses else None,
                "dspx.train.resumed_from_step": trained.summary["resumed_from_step"],
            }
        )

    summary.update({"model": str(trained.model_file), "checkpoint": str(trained.checkpoint), **trained.summary})
    summary["gguf"] = str(trained.gguf) if trained.gguf else None
    state = folder / "state.json"
    entry = local_model_entry(trained.model_file, state)

    def save_state() -> None:
        save_state_file(state, dump_state(runner, metadata={"finetune": redact(summary)}, lm=entry))

    save_state()
    after_context = cache.context(program)
    after_context.meter = context.meter  # one usage record for the whole command
    if _modified(folder) != written and after_context.cache_mode is CacheMode.ON:
        # New weights under the same file name: answers cached from an earlier model at this path
        # (a run folder deleted and trained again) must not stand in for this one's. Stored afresh,
        # they serve `evaluate --state` and a rerun of this command.
        after_context.cache_mode = CacheMode.REFRESH
    after_runner = build_runner(program, after_context, state)  # the student's demos, the trained model

    async def score_after() -> Evaluation | None:
        try:
            return await _score(after_runner, devset, metric, concurrency, context.meter, hooks, "dev after")
        finally:
            await after_context.aclose()

    after = asyncio.run(score_after())
    summary.update({"score_after": after.score if after else None, "state": str(state)})
    save_state()  # again, with the score after
    return _finish(folder, summary, state, context.meter, started)


# ----- records ---------------------------------------------------------------------------------


async def _records(
    folder: Path,
    runner: ProgramRunner,
    teacher: ProgramRunner,
    trainset: list[Example],
    metric: Metric | None,
    choice: FinetuneChoice,
    concurrency: int,
    meter: UsageMeter,
    hooks: Hooks,
) -> TraceReport:
    """The records of an earlier run of this command in `folder`, else collected now and written."""
    train_file, traces_file = folder / TRAIN_FILE, folder / TRACES_FILE
    if train_file.is_file() and traces_file.is_file():
        # The folder's files are untrusted (a committed run folder): a malformed one is an error
        # naming it; the trainer checks each record's shape before training.
        try:
            described = json.loads(traces_file.read_text(encoding="utf-8"))
            records = [json.loads(line) for line in train_file.read_text(encoding="utf-8").splitlines() if line]
            report = TraceReport(described["mode"], described["reason"], records, described["examples"])
            report.examples_used, report.failed_runs = described["examples_used"], described["failed_runs"]
            report.per_predictor = dict(described["per_predictor"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{folder}: its training records are unreadable ({type(exc).__name__}: {exc}); "
                "delete the folder (or pass another -o) to collect them again"
            ) from None
        hooks.notice(f"traces: reusing {len(records)} records from {train_file}\n")
        return report
    mode, reason = choose_trace_mode(choice.settings.traces, runner, trainset)
    hooks.notice(f"traces: {mode} ({reason})\n")
    if mode == "labeled":
        report = labeled_records(runner, trainset, reason)
    else:
        with hooks.progress(meter, "traces", total=len(trainset)) as progress:
            report = await bootstrap_records(
                teacher, trainset, metric, concurrency=concurrency, reason=reason, on_result=progress.update
            )
    per = ", ".join(f"{name} {count}" for name, count in report.per_predictor.items()) or "none"
    hooks.notice(
        f"traces: {len(report.records)} records from {report.examples_used} of {report.examples} examples ({per})\n"
    )
    if report.failed_runs:
        hooks.notice(f"traces: {report.failed_runs} teacher runs failed; the first: {report.first_error}\n")
    _write_atomic(traces_file, json.dumps(report.describe(), indent=2) + "\n")
    # No records: nothing for a rerun to reuse; it collects again (the cache replays what finished).
    if report.records:
        _write_atomic(train_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.records))
    else:
        train_file.unlink(missing_ok=True)
    return report


class NoRecords(DspxError):
    """Nothing to train on: every teacher run failed or missed the metric, or no example is labeled.
    Exit 1, a run that produced nothing, like an evaluation whose examples all failed."""


def _why_empty(report: TraceReport) -> str:
    if report.mode == "labeled":
        return f"none of the {report.examples} training examples labels every output of a predictor"
    if report.failed_runs:
        return (
            f"{report.failed_runs} of the teacher's {report.examples} runs failed (the first: {report.first_error}) "
            "and the metric accepted none of the others"
        )
    return f"the metric accepted none of the teacher's {report.examples} runs"


async def _score(
    runner: ProgramRunner,
    devset: list[Example],
    metric: Metric | None,
    concurrency: int,
    meter: UsageMeter,
    hooks: Hooks,
    label: str,
) -> Evaluation | None:
    if not devset or metric is None:
        return None
    rows: list[Example | BadRow] = list(devset)
    with runner.telemetry.span(label) as span, hooks.progress(meter, label, total=len(devset)) as progress:
        evaluation = await evaluate(
            runner,
            rows,
            metric,
            concurrency=concurrency,
            on_result=lambda r: progress.update(r.score, r.error is not None),
        )
        span.update(evaluation_attributes(evaluation))
        return evaluation


# ----- the run folder --------------------------------------------------------------------------


def _run_record(
    program: Program,
    lm_override: str | None,
    choice: FinetuneChoice,
    student: tuple[str, Path] | None,
    options: FinetuneOptions,
    trainset: list[Example],
) -> dict[str, Any]:
    """Everything that changes what this command produces; its hash names the run folder."""
    examples = json.dumps([example.to_dict() for example in trainset], sort_keys=True, default=fingerprint_text)
    record = {
        "program_sha256": program_hash(program),
        # The data files are not in the program's hash: edited examples are another run.
        "trainset_sha256": hashlib.sha256(examples.encode()).hexdigest()[:16],
        "lm": lm_override,
        "student": {"model": student[0], "path": str(student[1])} if student else None,
        "teacher": choice.teacher.describe() if choice.teacher else None,
        "traces": choice.settings.traces,
        "limit": options.limit,
        "state": _file_hash(options.state) if options.state else None,
        # Not checkpoint_every nor gguf: they change no trained number, so a rerun that changes them
        # resumes the same training.
        "settings": {k: v for k, v in choice.settings.record().items() if k not in ("checkpoint_every", "gguf")},
    }
    key = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
    return {**record, "hash": key}


def _claim(folder: Path, run: dict[str, Any], program: Program) -> None:
    """Use `folder` for this run: new, or made by the same command (then it resumes)."""
    recorded = folder / RUN_FILE
    if recorded.is_file():
        try:
            earlier = json.loads(recorded.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        # --data-only names no student: a training run with the same settings may take its records.
        students = (earlier.get("student") if isinstance(earlier, dict) else None, run["student"])
        student_fits = None in students or students[0] == students[1]
        if not (student_fits and _without(earlier, "student", "hash") == _without(run, "student", "hash")):
            raise UsageError(
                f"{folder} holds a finetune run of another program or other settings ({recorded}); "
                "pass another -o folder, or delete this one to start over"
            )
    elif folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} exists and is not a finetune run folder; pass another -o folder")
        if run["student"] is None:
            return  # --data-only after a training run: the record that names the student stays
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(recorded, json.dumps(redact(run), indent=2, default=str) + "\n")
    _write_atomic(folder / "program.json", json.dumps(resolved_program(program), indent=2) + "\n")


def _without(record: Any, *keys: str) -> Any:
    return {k: v for k, v in record.items() if k not in keys} if isinstance(record, dict) else record


def _finish(
    folder: Path, summary: dict[str, Any], state: Path | None, meter: UsageMeter, started: float
) -> FinetuneResult:
    seconds = time.perf_counter() - started
    summary = redact({**summary, "usage": meter.to_dict(), "seconds": round(seconds, 3)})
    _write_atomic(folder / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return FinetuneResult(summary, folder, folder / TRAIN_FILE, state, meter, seconds)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _modified(folder: Path) -> tuple[int, int] | None:
    """When the trained GGUF (else checkpoint weights) was last written, to tell new weights from a
    finished run the trainer only read back."""
    for path in (folder / GGUF_FILE, folder / MODEL_DIR / "config.json"):
        try:
            stat = path.stat()
        except OSError:
            continue
        return stat.st_mtime_ns, stat.st_ino
    return None


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "unreadable"  # build_runner reports it, naming the file


def _slug(program: Program) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", program.name).strip("-") or "program"
