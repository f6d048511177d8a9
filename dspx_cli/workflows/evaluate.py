"""`evaluate`: score a program on a dataset and write its run folder (and JUnit report).

What finished is never lost: results are appended to the run folder as they arrive, and when the
run fails or is interrupted (an interrupt cancels the loop's tasks, cli/interrupt.py) the partial
summary and JUnit file are written before the exception leaves `execute`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspx_cli.core.image_file import fingerprint_text
from dspx_cli.errors import LMError, ScoreBelowMinimum, UsageError
from dspx_cli.evaluate.datasets import BadRow, load_rows
from dspx_cli.evaluate.evaluator import Evaluation, ExampleResult, evaluate
from dspx_cli.evaluate.metrics import Metric, resolve_metric
from dspx_cli.program.batch import default_concurrency
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.workflows.compare import Comparison, compare_runs
from dspx_cli.workflows.context import CacheOptions, build_runner
from dspx_cli.workflows.hooks import Hooks
from dspx_cli.workflows.run_folder import RunFolder, default_run_dir, summary_dict, write_junit
from dspx_cli.workflows.run_records import RunRecords, load_run

if TYPE_CHECKING:
    from dspx_cli.core import Example
    from dspx_cli.program.runner import ProgramRunner


@dataclass(frozen=True)
class EvaluateOptions:
    split: str = "dev"
    dataset: Path | None = None
    limit: int | None = None
    concurrency: int | None = None  # None: what the program's LMs can serve (program/batch.py)
    output: Path | None = None
    junit: Path | None = None
    junit_pass: float = 1.0
    min_score: float | None = None
    failure_score: float = 0.0
    max_errors: int | None = 10
    as_json: bool = False
    state_file: Path | None = None
    baseline: Path | None = None  # an earlier run folder to compare this run with (workflows/compare.py)
    max_regressions: int | None = None


@dataclass
class Evaluating:
    """An evaluation ready to start; `finished` fills as examples finish (kept when interrupted)."""

    program: Program
    options: EvaluateOptions
    context: RunContext
    runner: ProgramRunner
    examples: list[Example | BadRow]
    metric: Metric
    concurrency: int
    folder: RunFolder
    baseline: RunRecords | None = None  # read before the run starts: a bad folder costs no LM call
    finished: dict[int, ExampleResult] = field(default_factory=dict)
    stopped: str | None = None  # why the run ended early ("interrupted", "failed: ..."), once it has

    @property
    def total(self) -> int:
        return len(self.examples)

    def settings(self) -> dict[str, Any]:
        options = self.options
        return {
            "concurrency": self.concurrency,
            "failure_score": options.failure_score,
            "max_errors": options.max_errors,
            "limit": options.limit,
            "dataset": str(options.dataset) if options.dataset else None,
            "metric": self.program.spec.metric,
            # What an example must score to pass (JUnit, and `dspx compare` by default).
            "pass_score": options.junit_pass,
        }

    def dataset_sha256(self) -> str:
        """Which examples were scored, in order (after --limit), whatever file they came from:
        `dspx compare` tells two runs over different data apart by it."""
        digest = hashlib.sha256()
        for example in self.examples:
            if isinstance(example, BadRow):
                row: Any = str(example)
            else:
                row = [dict(example.inputs().items()), dict(example.labels().items())]
            digest.update(
                json.dumps(row, sort_keys=True, ensure_ascii=False, default=fingerprint_text).encode() + b"\n"
            )
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class EvaluateResult:
    evaluation: Evaluation
    summary: dict[str, Any]
    directory: Path
    seconds: float
    min_score: float | None
    comparison: Comparison | None = None  # with --baseline
    max_regressions: int | None = None

    def check(self) -> None:
        """The run's verdict: aborted (exit 1), below --min-score (exit 3), then more regressions
        than --max-regressions against the baseline (exit 4): the run's own verdict comes first."""
        if self.evaluation.aborted:
            raise LMError(f"evaluation {self.evaluation.aborted}; partial results in {self.directory}")
        if self.min_score is not None and self.evaluation.score < self.min_score:
            raise ScoreBelowMinimum(f"score {self.evaluation.score:.4f} is below --min-score {self.min_score:g}")
        if self.comparison is not None:
            self.comparison.check(self.max_regressions)


def prepare(
    path: Path, lm_override: str | None, options: EvaluateOptions, cache: CacheOptions = CacheOptions()
) -> Evaluating:
    if options.min_score is not None and not 0 <= options.min_score <= 1:
        raise UsageError(f"--min-score {options.min_score}: expected a fraction from 0 to 1 (0.8 means 80%)")
    if options.max_regressions is not None and options.baseline is None:
        raise UsageError("--max-regressions needs --baseline RUN_DIR (the run to count regressions against)")
    program = load_program(path, lm_override=lm_override)
    context = cache.context(program)
    runner = build_runner(program, context, options.state_file)  # a misfit state fails before any work
    # A row that cannot be read is a failed example naming its file and line, not the end of the run.
    examples = load_rows(program, options.split, dataset=options.dataset, limit=options.limit)
    metric = resolve_metric(program, context)
    concurrency = options.concurrency or default_concurrency(program)
    output = options.output or default_run_dir(program)
    # Read before the run folder is made: --output may name the baseline's folder, which it empties.
    baseline = _baseline(options.baseline, output)
    # Predictor names as a state file gives them (optimizers/state.named_predictors, not imported
    # here: evaluate's start-up does without the optimizers), for calls.jsonl.
    callers = {
        id(predictor): f"{module_name}.{suffix}" if suffix else module_name
        for module_name, module in runner.modules.items()
        for suffix, predictor in module.named_predictors()
    }
    folder = RunFolder(output, program, callers)
    return Evaluating(program, options, context, runner, examples, metric, concurrency, folder, baseline)


def _baseline(directory: Path | None, output: Path) -> RunRecords | None:
    if directory is None:
        return None
    if output.exists() and directory.resolve() == output.resolve():
        raise UsageError(f"--baseline {directory} is the --output folder; the run would write over it")
    return load_run(directory)


def execute(job: Evaluating, hooks: Hooks = Hooks()) -> EvaluateResult:
    """Run the evaluation; on failure or interruption the partial report is written, then the
    exception goes on."""
    options = job.options

    async def go(on_result: Any) -> Evaluation:
        try:
            return await evaluate(
                job.runner,
                job.examples,
                job.metric,
                concurrency=job.concurrency,
                failure_score=options.failure_score,
                max_errors=options.max_errors,
                on_result=on_result,
                finished=job.finished,
                keep_calls=True,  # the run folder's calls.jsonl
            )
        finally:
            await job.context.aclose()

    started = time.perf_counter()
    try:
        with hooks.progress(job.context.meter, "evaluate", total=job.total) as progress:

            def on_result(result: ExampleResult) -> None:
                job.folder.add(result)
                progress.update(result.score, result.error is not None)

            evaluation = asyncio.run(go(on_result))
    except BaseException as exc:
        # Interrupted (SIGINT, SIGTERM) or failed: the summary and JUnit file still say what finished.
        stopped = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else f"failed: {exc}"
        job.stopped = stopped
        write_report(job, Evaluation.partial(job.finished, job.total, stopped), time.perf_counter() - started)
        raise
    seconds = time.perf_counter() - started
    summary = write_report(job, evaluation, seconds)
    comparison = None
    if job.baseline is not None:  # the run folder as written, read back as `dspx compare` reads it
        comparison = compare_runs(job.baseline, load_run(job.folder.directory), options.junit_pass)
    return EvaluateResult(
        evaluation, summary, job.folder.directory, seconds, options.min_score, comparison, options.max_regressions
    )


def write_report(job: Evaluating, evaluation: Evaluation, seconds: float) -> dict[str, Any]:
    """summary.json (and the JUnit file when asked for); returns the summary."""
    options = job.options
    summary = summary_dict(
        job.program,
        evaluation,
        split=options.split,
        seconds=seconds,
        usage=job.context.meter.to_dict(),
        min_score=options.min_score,
        settings=job.settings(),
    )
    summary["dataset_sha256"] = job.dataset_sha256()
    job.folder.finish(summary, evaluation)
    if options.junit is not None:
        write_junit(options.junit, job.program, evaluation, pass_score=options.junit_pass, seconds=seconds)
    return summary
