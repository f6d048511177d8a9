"""`dspx evaluate`: call the evaluate workflow, render its summary, gate CI on the score."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from dspx_cli.cli import render
from dspx_cli.cli.progress import Progress
from dspx_cli.workflows import evaluate as workflow
from dspx_cli.workflows.context import CacheOptions
from dspx_cli.workflows.evaluate import EvaluateOptions
from dspx_cli.workflows.hooks import Hooks

__all__ = ["EvaluateOptions", "run"]


def run(path: Path, lm_override: str | None, options: EvaluateOptions, cache: CacheOptions) -> None:
    job = workflow.prepare(path, lm_override, options, cache)
    gc.enable()  # start-up is over (the entry point may have paused the collector, cli/app.py)
    try:
        result = workflow.execute(job, Hooks(progress=Progress))
    except BaseException:
        if job.stopped is not None:  # the workflow has written the partial summary (and JUnit file)
            sys.stderr.write(
                f"{len(job.finished)} of {job.total} examples finished; results in {job.folder.directory}\n"
            )
        raise
    if options.as_json:  # one document: the summary, and with --baseline the comparison under its own key
        document = result.summary
        if result.comparison is not None:
            document = {**document, "comparison": result.comparison.document(result.max_regressions)}
        sys.stdout.write(json.dumps(document, default=str) + "\n")
    else:
        sys.stdout.write(_table(result.summary, result.directory))
        if result.comparison is not None:
            from dspx_cli.cli import compare_command

            sys.stdout.write("\n")
            sys.stdout.flush()
            compare_command.print_text(result.comparison)
    render.usage_line(job.context.meter, result.seconds)
    result.check()


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
