"""`dspx compile` (alias `optimize`): improve a program on its training data, save the state."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.cli import render
from dspx_cli.cli.commands import CacheOptions, build_runner, check_teacher
from dspx_cli.cli.progress import Progress
from dspx_cli.core import Example
from dspx_cli.core.redact import redact
from dspx_cli.evaluate.datasets import BadRow, configured_splits, load_rows
from dspx_cli.errors import UsageError
from dspx_cli.evaluate.evaluator import Evaluation, evaluate
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.evaluate.report import default_run_dir, program_hash, resolved_program
from dspx_cli.lm.registry import anchor_model_path
from dspx_cli.optimizers.compile import build_teacher, call_counts, choose_optimizer, describe_calls, optimize
from dspx_cli.optimizers.state import dump_state, named_predictors, save_state_file
from dspx_cli.program.batch import default_concurrency
from dspx_cli.program.loader import load_program

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


def run(path: Path, lm_override: str | None, options: CompileOptions, cache: CacheOptions) -> None:
    program = load_program(path, lm_override=lm_override)
    # A path in --teacher-lm is relative to the working directory, as in --lm.
    teacher_lm = anchor_model_path(options.teacher_lm, Path.cwd()) if options.teacher_lm else None
    choice = choose_optimizer(program, options.optimizer, options.assignments,
                              teacher_lm=teacher_lm, teacher_state=options.teacher_state)
    check_teacher(program, choice.teacher, teacher_lm)
    splits = configured_splits(program)
    if "train" not in splits:
        # load_examples' own hint names evaluate's --split/--dataset, which compile does not take.
        raise UsageError(
            f"{program.path} configures no 'train' split (configured splits: {', '.join(splits) or 'none'}); "
            "compile trains on it: add data.train (a file) or data.path with data.split to the program"
        )
    trainset = _readable(load_rows(program, "train", limit=options.limit))
    devset = _readable(load_rows(program, "dev", limit=options.limit)) if "dev" in splits else []
    if not trainset:
        raise UsageError(f"{program.path}: no training example could be read (see the warnings above)")
    concurrency = options.concurrency or default_concurrency(program)
    context = cache.context(program)
    metric = resolve_metric(program, context)
    runner = build_runner(program, context, None)
    # Built (and its state checked) before any LM call, so a teacher that does not fit costs nothing.
    teacher = build_teacher(program, choice.teacher, context)
    output = options.output or default_run_dir(program) / "state.json"

    async def score(label: str) -> Evaluation | None:
        if not devset:
            return None
        with Progress(context.meter, label, total=len(devset)) as progress:
            return await evaluate(runner, devset, metric, concurrency=concurrency,
                                  on_result=lambda r: progress.update(r.score, r.error is not None))

    async def go() -> tuple[Evaluation | None, dict[str, Any], Evaluation | None]:
        try:
            before = await score("dev before")
            sys.stderr.write(f"compiling with {choice.name} on {len(trainset)} training examples\n")
            # The optimizer reports no per-example progress; the calls it makes show it is alive.
            with Progress(context.meter, f"compile ({choice.name})", unit="", scored=False):
                report = await optimize(runner, choice, trainset, metric, concurrency=concurrency,
                                        valset=devset or None, teacher=teacher)
            after = await score("dev after")
            return before, report, after
        finally:
            await context.aclose()

    started = time.perf_counter()
    before, report, after = asyncio.run(go())
    seconds = time.perf_counter() - started
    usage = context.meter.to_dict()
    metadata = redact({
        "optimizer": choice.name,
        "settings": choice.settings,
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
    })
    output.parent.mkdir(parents=True, exist_ok=True)
    save_state_file(output, dump_state(runner, metadata=metadata))
    if options.output is None:  # a run folder of its own: keep what evaluate keeps there too
        (output.parent / "program.json").write_text(json.dumps(resolved_program(program), indent=2) + "\n")
        (output.parent / "summary.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    demos = {name: len(predictor.demos) for name, predictor in named_predictors(runner)}
    if options.as_json:
        sys.stdout.write(json.dumps({**metadata, "state": str(output), "demos": demos}, default=str) + "\n")
    else:
        sys.stdout.write(_table(metadata, demos, output))
    render.usage_line(context.meter, seconds)


def _readable(rows: list[Example | BadRow]) -> list[Example]:
    """The rows that are examples; each bad one is skipped with a warning naming its file and line."""
    for row in rows:
        if isinstance(row, BadRow):
            logger.warning("skipping %s", row)
    return [row for row in rows if not isinstance(row, BadRow)]


def _table(metadata: dict[str, Any], demos: dict[str, int], output: Path) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f} ({value * 100:.1f}%)"

    total = metadata["usage"]["total"]
    cost = f" · ${total['cost']:.4f}" if total.get("cost") is not None else ""
    rows = [
        ("optimizer", f"{metadata['optimizer']} {json.dumps(metadata['settings'])}"),
        ("train / dev", f"{metadata['trainset']} / {metadata['devset']} examples"),
        ("dev before", pct(metadata["score_before"])),
        ("dev after", pct(metadata["score_after"])),
        *((f"demos {name}", str(count)) for name, count in demos.items()),
        ("LM calls", describe_calls(metadata["lm_calls"])),
        ("tokens", f"{total['prompt_tokens']} prompt + {total['completion_tokens']} completion{cost}"),
        ("time", f"{metadata['seconds']:.2f} s"),
        ("state", f"{output}  (use: --state {output})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)

