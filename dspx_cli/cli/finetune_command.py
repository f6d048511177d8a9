"""`dspx finetune`: call the finetune workflow and render what it did."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dspx_cli.cli import render
from dspx_cli.cli.progress import Progress
from dspx_cli.cli.train_progress import TrainingProgress
from dspx_cli.workflows.context import CacheOptions
from dspx_cli.workflows.finetune import FinetuneOptions, FinetuneResult, finetune_program
from dspx_cli.workflows.hooks import Hooks

__all__ = ["FinetuneOptions", "run"]


def run(path: Path, lm_override: str | None, options: FinetuneOptions, cache: CacheOptions) -> None:
    hooks = Hooks(progress=Progress, notice=sys.stderr.write, training=TrainingProgress)
    result = finetune_program(path, lm_override, options, cache, hooks)
    if options.as_json:
        sys.stdout.write(json.dumps(result.summary, default=str) + "\n")
    elif options.data_only:
        sys.stdout.write(f"{result.train_file}\n")
    else:
        sys.stdout.write(_table(result))
    render.usage_line(result.meter, result.seconds)


def _table(result: FinetuneResult) -> str:
    summary = result.summary

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f} ({value * 100:.1f}%)"

    traces = summary["traces"]
    losses: list[float] = summary.get("loss_curve") or []
    loss = f"{losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "-"
    used = f"{traces['records']} records from {traces['examples_used']} of {traces['examples']} train examples"
    rows = [
        ("student", summary["student"]["model"] if summary.get("student") else "-"),
        ("traces", f"{traces['mode']}: {used}"),
        ("dev before", pct(summary["score_before"])),
        ("dev after", pct(summary.get("score_after"))),
        ("steps", f"{summary.get('steps', '-')} (loss {loss})"),
        ("train time", f"{summary['train_seconds']:.1f} s" if summary.get("train_seconds") is not None else "-"),
        ("time", f"{summary['seconds']:.1f} s"),
        ("model", str(summary.get("model", "-"))),
        ("state", f"{result.state}  (use: --state {result.state})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)
