"""`dspx evaluate`: score a program on a dataset, write the run folder, gate CI on the score."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dspx_cli.cli import render
from dspx_cli.cli.commands import CacheOptions, build_runner
from dspx_cli.cli.progress import Progress
from dspx_cli.errors import LMError, ScoreBelowMinimum, UsageError
from dspx_cli.evaluate.datasets import load_rows
from dspx_cli.evaluate.evaluator import Evaluation, ExampleResult, evaluate
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.evaluate.report import RunFolder, default_run_dir, summary_dict, write_junit
from dspx_cli.program.batch import default_concurrency
from dspx_cli.program.loader import load_program


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


def run(path: Path, lm_override: str | None, options: EvaluateOptions, cache: CacheOptions) -> None:
    if options.min_score is not None and not 0 <= options.min_score <= 1:
        raise UsageError(f"--min-score {options.min_score}: expected a fraction from 0 to 1 (0.8 means 80%)")
    program = load_program(path, lm_override=lm_override)
    context = cache.context(program)
    runner = build_runner(program, context, options.state_file)  # a misfit state fails before any work
    # A row that cannot be read is a failed example naming its file and line, not the end of the run.
    examples = load_rows(program, options.split, dataset=options.dataset, limit=options.limit)
    metric = resolve_metric(program, context)
    concurrency = options.concurrency or default_concurrency(program)
    folder = RunFolder(options.output or default_run_dir(program), program)
    finished: dict[int, ExampleResult] = {}  # filled as examples finish: kept when interrupted

    async def go(progress: Progress) -> Evaluation:
        def on_result(result: ExampleResult) -> None:
            folder.add(result)
            progress.update(result.score, result.error is not None)

        try:
            return await evaluate(
                runner, examples, metric, concurrency=concurrency, failure_score=options.failure_score,
                max_errors=options.max_errors, on_result=on_result, finished=finished,
            )
        finally:
            await context.aclose()

    settings = {
        "concurrency": concurrency, "failure_score": options.failure_score,
        "max_errors": options.max_errors, "limit": options.limit,
        "dataset": str(options.dataset) if options.dataset else None, "metric": program.spec.metric,
    }

    def report(evaluation: Evaluation, seconds: float) -> dict:
        summary = summary_dict(program, evaluation, split=options.split, seconds=seconds,
                               usage=context.meter.to_dict(), min_score=options.min_score, settings=settings)
        folder.finish(summary, evaluation)
        if options.junit is not None:
            write_junit(options.junit, program, evaluation, pass_score=options.junit_pass, seconds=seconds)
        return summary

    started = time.perf_counter()
    try:
        with Progress(context.meter, "evaluate", total=len(examples)) as progress:
            evaluation = asyncio.run(go(progress))
    except BaseException as exc:
        # Interrupted (SIGINT, SIGTERM) or failed: the summary and JUnit file still say what finished.
        stopped = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else f"failed: {exc}"
        report(Evaluation.partial(finished, len(examples), stopped), time.perf_counter() - started)
        sys.stderr.write(f"{len(finished)} of {len(examples)} examples finished; results in {folder.directory}\n")
        raise
    seconds = time.perf_counter() - started
    summary = report(evaluation, seconds)

    if options.as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        sys.stdout.write(_table(summary, folder.directory))
    render.usage_line(context.meter, seconds)
    if evaluation.aborted:
        raise LMError(f"evaluation {evaluation.aborted}; partial results in {folder.directory}")
    if options.min_score is not None and evaluation.score < options.min_score:
        raise ScoreBelowMinimum(f"score {evaluation.score:.4f} is below --min-score {options.min_score:g}")


def _table(summary: dict, directory: Path) -> str:
    score = summary["score"]
    rows = [
        ("program", f"{summary['program_name']} ({summary['program']})"),
        ("split", summary["split"]),
        ("examples", f"{summary['finished']} of {summary['examples']}"),
        ("errors", str(summary["errors"])),
        ("score", f"{score:.4f} ({score * 100:.1f}%)"),
    ]
    if summary["min_score"] is not None:
        rows.append(("min score", f"{summary['min_score']:g} → {'passed' if summary['passed'] else 'FAILED'}"))
    rows += [("time", f"{summary['seconds']:.2f} s"), ("results", str(directory))]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)
