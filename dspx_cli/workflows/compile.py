"""`compile` (alias `optimize`): improve a program on its training data and save the state."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.core.redact import redact, redact_text
from dspx_cli.core.telemetry import AttributeValue
from dspx_cli.evaluate.evaluator import Evaluation, evaluate
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.evaluate.spans import evaluation_attributes
from dspx_cli.lm.registry import anchor_model_path
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.optimizers.compile import (
    StudyJob,
    build_teacher,
    call_counts,
    choose_optimizer,
    optimize,
    prompt_lm_config,
)
from dspx_cli.optimizers.state import dump_state, named_predictors, save_state_file
from dspx_cli.program.batch import default_concurrency
from dspx_cli.program.loader import load_program
from dspx_cli.workflows.compile_run import check_study_flags, prepare_run_dir
from dspx_cli.workflows.context import CacheOptions, build_runner
from dspx_cli.workflows.hooks import Hooks
from dspx_cli.workflows.run_folder import program_hash, resolved_program
from dspx_cli.workflows.training_data import train_and_dev
from dspx_cli.workflows.validate import check_teacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompileOptions:
    optimizer: str | None = None
    assignments: tuple[str, ...] = ()
    output: Path | None = None
    concurrency: int | None = None  # None: what the program's LMs can serve (program/batch.py)
    limit: int | None = None
    as_json: bool = False
    teacher_lm: str | None = None
    teacher_state: Path | None = None
    prompt_lm: str | None = None  # --prompt-lm: the proposer's model (mipro_v2, copro)
    storage: str | None = None  # --storage URL (mipro_v2's optuna study)
    study: str | None = None  # --study NAME
    resume: Path | None = None  # --resume RUN_DIR: continue that killed run, in that folder


@dataclass(frozen=True)
class CompileResult:
    metadata: dict[str, Any]  # also the state file's metadata and the run folder's summary.json
    demos: dict[str, int]  # predictor name -> demos chosen
    state: Path
    meter: UsageMeter
    seconds: float


def compile_program(
    path: Path,
    lm_override: str | None,
    options: CompileOptions,
    cache: CacheOptions = CacheOptions(),
    hooks: Hooks = Hooks(),
) -> CompileResult:
    program = load_program(path, lm_override=lm_override)
    # A path in --teacher-lm is relative to the working directory, as in --lm.
    teacher_lm = anchor_model_path(options.teacher_lm, Path.cwd()) if options.teacher_lm else None
    choice = choose_optimizer(
        program, options.optimizer, options.assignments, teacher_lm=teacher_lm, teacher_state=options.teacher_state
    )
    check_teacher(program, choice.teacher, teacher_lm)
    check_study_flags(choice, options.storage, options.study, options.resume)
    prompt_config = prompt_lm_config(program, choice.name, options.prompt_lm)
    trainset, devset = train_and_dev(program, "compile", options.limit)
    concurrency = options.concurrency or default_concurrency(program)
    context = cache.context(program)
    metric = resolve_metric(program, context)
    runner = build_runner(program, context, None)
    # Built (and its state checked) before any LM call, so a teacher that does not fit costs nothing.
    teacher = build_teacher(program, choice.teacher, context)
    # Exists before the optimizer runs: mipro_v2 keeps its study there, and a resume needs program.json.
    run_dir = prepare_run_dir(program, choice, options.output, options.resume)
    output = options.output or run_dir / "state.json"
    own_folder = options.output is None or options.resume is not None

    def notice(line: str) -> None:
        hooks.notice(line if line.endswith("\n") else line + "\n")

    study = StudyJob(
        prompt_lm=context.lm(prompt_config) if prompt_config is not None else None,
        prompt_lm_config=prompt_config,
        program_text=redact_text(program.path.read_text(encoding="utf-8")),
        run_dir=run_dir.resolve(),  # absolute: the default storage URL is built from it
        storage=options.storage,
        study_name=options.study,
        resume=options.resume is not None,
        notice=notice,
        on_trial=hooks.trial,
    )

    # Phase spans (`dev before`, `optimize NAME`, `dev after`): a trace shows the compile's structure.
    telemetry = context.telemetry
    optimize_attributes: dict[str, AttributeValue] = {
        "dspx.optimizer.name": choice.name,
        "dspx.optimizer.trainset": len(trainset),
        "dspx.optimizer.valset": len(devset),
    }

    async def score(label: str) -> Evaluation | None:
        if not devset:
            return None
        with telemetry.span(label) as span, hooks.progress(context.meter, label, total=len(devset)) as progress:
            evaluation = await evaluate(
                runner,
                devset,
                metric,
                concurrency=concurrency,
                on_result=lambda r: progress.update(r.score, r.error is not None),
            )
            span.update(evaluation_attributes(evaluation))
            return evaluation

    async def go() -> tuple[Evaluation | None, dict[str, Any], Evaluation | None]:
        try:
            before = await score("dev before")
            hooks.notice(f"compiling with {choice.name} on {len(trainset)} training examples\n")
            # The optimizer reports no per-example progress; the calls it makes show it is alive.
            with (
                telemetry.span(f"optimize {choice.name}", optimize_attributes),
                hooks.progress(context.meter, f"compile ({choice.name})", unit="", scored=False),
            ):
                report = await optimize(
                    runner,
                    choice,
                    trainset,
                    metric,
                    concurrency=concurrency,
                    valset=devset or None,
                    teacher=teacher,
                    study=study,
                )
            after = await score("dev after")
            return before, report, after
        finally:
            await context.aclose()

    started = time.perf_counter()
    before, report, after = asyncio.run(go())
    seconds = time.perf_counter() - started
    usage = context.meter.to_dict()
    metadata = redact(
        {
            "optimizer": choice.name,
            "settings": choice.settings,
            # The model only: an LMConfig holds the API key, which never leaves.
            **({"prompt_lm": prompt_config.model} if prompt_config is not None else {}),
            "program": str(program.path),
            "program_sha256": program_hash(program),
            "trainset": len(trainset),
            "devset": len(devset),
            "score_before": before.score if before else None,
            "score_after": after.score if after else None,
            "report": report,
            "usage": usage,
            "lm_calls": call_counts(usage),
            "seconds": round(seconds, 3),
        }
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    save_state_file(output, dump_state(runner, metadata=metadata))
    if own_folder:  # a run folder of its own: keep what evaluate keeps there too
        (output.parent / "program.json").write_text(json.dumps(resolved_program(program), indent=2) + "\n")
        (output.parent / "summary.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    demos = {name: len(predictor.demos) for name, predictor in named_predictors(runner)}
    return CompileResult(metadata, demos, output, context.meter, seconds)
