"""LabeledFewShot: every predictor gets training examples, as they are, as its demos.

DSPy: `dspy/teleprompt/vanilla.py`, `LabeledFewShot.compile(student, trainset, sample=True)`. One
`random.Random(seed)` is shared by the predictors in program order, so each predictor draws its own
`rng.sample(trainset, min(k, len(trainset)))` and the result is a pure function of the seed. DSPy
always seeds with 0; `seed=0` reproduces its choice.

Also here: the runner cloning and raw demos that the other optimizers share.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

from dspx_cli.core import Example
from dspx_cli.optimizers.registry import CompileJob
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.runner import ProgramRunner, read_images

__all__ = ["clone_runner", "compile_labeled_few_shot", "example_demo", "labeled_few_shot"]


def example_demo(example: Example) -> dict[str, Any]:
    """A raw demo: every field of the example (the adapter picks the fields), an image file read
    into its data URI as the example's run would have it, so a saved program's demo is the image
    itself rather than a path relative to the data file. A file gone or changed since the data
    loaded is a UsageError naming the row."""
    return read_images(dict(example.items()))


def clone_runner(runner: ProgramRunner) -> ProgramRunner:
    """A runner whose predictors can be changed without touching `runner`'s.

    LMs, adapters and callbacks are shared (they hold connections, caches and meters); demos and
    sampling extras are copied. Cheaper and safer than a deepcopy, which would copy the LM stack.
    """
    clone = copy.copy(runner)
    clone.modules = {name: module.copy() for name, module in runner.modules.items()}
    return clone


async def labeled_few_shot(runner: ProgramRunner, trainset: Sequence[Example], *, k: int = 16, seed: int = 0) -> None:
    """Set `k` sampled training examples as the demos of every predictor of `runner`, in place.

    Existing demos are replaced; an empty trainset leaves none (DSPy returns `student.reset_copy()`).
    """
    examples = list(trainset)
    rng = random.Random(seed)
    for _, predictor in named_predictors(runner):
        if not examples:
            predictor.demos = []
            continue
        predictor.demos = [example_demo(example) for example in rng.sample(examples, min(k, len(examples)))]


async def compile_labeled_few_shot(runner: ProgramRunner, settings: dict[str, Any], job: CompileJob) -> dict[str, Any]:
    """The registry's entry point (optimizers/registry.py): nothing to report."""
    await labeled_few_shot(runner, job.trainset, **settings)
    return {}
