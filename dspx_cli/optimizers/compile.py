"""Choose and run an optimizer from the program's `optimizer:` section and the command line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example
from dspx_cli.errors import ProgramError, UsageError
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.optimizers.bootstrap import bootstrap_few_shot
from dspx_cli.optimizers.labeled import labeled_few_shot
from dspx_cli.optimizers.random_search import bootstrap_random_search
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner

# DSPy's defaults for each optimizer's settings.
DEFAULTS: dict[str, dict[str, Any]] = {
    "labeled_few_shot": {"k": 16, "seed": 0},
    "bootstrap_few_shot": {
        "max_bootstrapped_demos": 4,
        "max_labeled_demos": 16,
        "max_rounds": 1,
        "metric_threshold": None,
        "max_errors": 10,
        "seed": 0,
    },
    "bootstrap_random_search": {
        "num_candidate_programs": 16,
        "max_bootstrapped_demos": 4,
        "max_labeled_demos": 16,
        "max_rounds": 1,
        "metric_threshold": None,
        "max_errors": 10,
        "num_threads": None,  # None: the command's --concurrency (DSPy: settings.num_threads)
        "stop_at_score": None,
        "seed": 0,
    },
}


@dataclass
class OptimizerChoice:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)


def choose_optimizer(program: Program, override: str | None, assignments: Sequence[str]) -> OptimizerChoice:
    """`optimizer:` in the file, `--optimizer` replacing its type, `--set key=value` its settings."""
    section = dict(program.spec.optimizer or {})
    written = section.pop("type", None)
    name = override or written
    if override and override != written:
        section = {}  # the file's settings belong to another optimizer
    if name is None:
        raise UsageError(f"{program.path} has no `optimizer:` section; pass --optimizer labeled_few_shot or ...")
    if name not in DEFAULTS:
        known = ", ".join(DEFAULTS)
        if override:
            raise UsageError(f"--optimizer {name}: unknown optimizer; expected one of: {known}")
        raise ProgramError(f"unknown optimizer {name!r}; expected one of: {known}",
                           program.positions.locate(("optimizer", "type")))
    settings = dict(DEFAULTS[name])
    for key, value in section.items():
        if key not in settings:
            raise ProgramError(
                f"optimizer {name} has no setting {key!r}; expected one of: {', '.join(settings)}",
                program.positions.locate(("optimizer", key)),
            )
        settings[key] = value
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or key not in settings:
            raise UsageError(f"--set {assignment}: expected KEY=VALUE with KEY one of: {', '.join(settings)}")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    return OptimizerChoice(name, settings)


async def optimize(
    runner: ProgramRunner,
    choice: OptimizerChoice,
    trainset: Sequence[Example],
    metric: Metric,
    *,
    concurrency: int,
    valset: Sequence[Example] | None = None,
) -> dict[str, Any]:
    """Sets the demos of `runner` in place; returns what the optimizer reports.

    `valset` is used by the optimizers that select among candidates (random search); the others
    see only the trainset, as in DSPy."""
    if choice.name == "labeled_few_shot":
        await labeled_few_shot(runner, trainset, **choice.settings)
        return {}
    if choice.name == "bootstrap_random_search":
        settings = dict(choice.settings)
        num_threads = settings.pop("num_threads", None) or concurrency
        search = await bootstrap_random_search(runner, trainset, metric, valset=valset, num_threads=num_threads,
                                               **settings)
        candidates = [
            {"seed": c.seed, "score": c.score, "demos": {name: len(demos) for name, demos in c.demos.items()}}
            for c in search.candidates
        ]
        return {
            "candidates": candidates,
            "best_seed": search.best_seed,
            "best_score": search.best_score,
        }
    report = await bootstrap_few_shot(runner, trainset, metric, concurrency=concurrency, **choice.settings)
    return {
        "bootstrapped_examples": report.bootstrapped,
        "examples_tried": report.examples_tried,
        "errors": len(report.errors),
    }
