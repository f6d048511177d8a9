"""MIPROv2's demo-set candidates (optimizers/demo_sets.py) against DSPy 3.4.1's, recorded in
tests/fixtures/mipro/golden.json (`mipro[].demo_sets`).

dspx runs the fixture's programs (tests/fixtures/mipro/programs/*.yaml) against the loopback server
answering with the fixture's `Script`, with one `random.Random(seed)` consumed as MIPROv2 consumes
it: with `auto` set, the valset draw comes first (docs/mipro-design.md 1.1-1.2), then the sets.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.lm.cache import CacheMode
from dspx_cli.optimizers.demo_sets import DemoSets, create_demo_sets
from dspx_cli.optimizers.settings_checks import AUTO_RUNS
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner
from tests.fixtures.mipro.cases import DEV_ROWS, TRAIN_ROWS, Script
from tests.lm_server import LMServer

FIXTURE = Path(__file__).parent / "fixtures" / "mipro"
GOLDEN: dict[str, Any] = json.loads((FIXTURE / "golden.json").read_text())
CASES = [case for case in GOLDEN["mipro"] if "demo_sets" in case]


def examples(rows: list[dict[str, str]]) -> list[Example]:
    return [Example(message=r["message"], queue=r["queue"]).with_inputs("message") for r in rows]


def fixture_program(name: str, server: LMServer) -> Program:
    return load_program(FIXTURE / "programs" / f"{name}.yaml", env={"MIPRO_API_BASE": server.api_base})


async def build_sets(program: Program, case: dict[str, Any], tmp_path: Path, concurrency: int) -> DemoSets:
    """What MIPROv2.compile does up to the demo sets, with DSPy's numbers for this case."""
    rng = random.Random(case["seed"])
    valset = DEV_ROWS[: case["val"]]
    if case.get("auto"):
        num_sets, val_size = AUTO_RUNS[case["auto"]]
        rng.sample(range(len(valset)), min(val_size, len(valset)))  # the valset draw comes first
    else:
        num_sets = case["num_candidates"]
    bootstrapped, labeled = case.get("max_bootstrapped_demos", 4), case.get("max_labeled_demos", 4)
    if bootstrapped == 0 and labeled == 0:
        bootstrapped, labeled = 3, 0  # zero-shot: sets still bootstrapped (to show the proposer)
    context = RunContext(cache_dir=tmp_path / "cache", cache_mode=CacheMode.OFF, history=False)
    try:
        runner = ProgramRunner(program, context)
        before = {name: list(p.demos) for name, p in named_predictors(runner)}
        sets = await create_demo_sets(
            runner,
            examples(TRAIN_ROWS[: case["train"]]),
            resolve_metric(program, context),
            rng,
            num_sets=num_sets,
            max_bootstrapped_demos=bootstrapped,
            max_labeled_demos=labeled,
            concurrency=concurrency,
        )
        assert {name: list(p.demos) for name, p in named_predictors(runner)} == before  # the student is untouched
        return sets
    finally:
        await context.aclose()


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case["id"])
def test_demo_sets_are_dspys(case: dict[str, Any], concurrency: int, lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = Script(set(case.get("broken", [])))
    program = fixture_program(case["program"], lm_server)
    sets = asyncio.run(build_sets(program, case, tmp_path, concurrency))

    golden = case["demo_sets"]
    names = list(sets.sets)
    assert len(names) == len(golden)  # predictor i of DSPy's predictors() is dspx's i-th named predictor
    for i, name in enumerate(names):
        assert sets.seeds == [entry["seed"] for entry in golden[str(i)]]
        assert sets.sets[name] == [entry["demos"] for entry in golden[str(i)]], name
    task_requests = [r for r in lm_server.requests if r.body["model"] == "task-model"]
    label, count = case["request_order"][0]
    assert label == "task"
    if concurrency == 1:
        assert len(task_requests) == count  # the same calls DSPy made while bootstrapping, no more
    else:
        assert len(task_requests) >= count  # examples past a quota may have been started


def test_zero_shot_mode_still_bootstraps_every_shuffled_set_from_the_shared_stream(
    lm_server: LMServer, tmp_path: Path
) -> None:
    """-2 falls through to the shuffled branch when max_labeled_demos is 0: it draws from the RNG."""
    (case,) = [c for c in CASES if c["id"] == "zeroshot_predict"]
    lm_server.responder = Script()
    program = fixture_program("predict", lm_server)
    sets = asyncio.run(build_sets(program, case, tmp_path, 1))
    expected = random.Random(case["seed"])
    order = list(range(case["train"]))
    expected.shuffle(order)
    quota = expected.randint(1, 3)
    (demos,) = sets.sets.values()
    assert sets.seeds == [-3, -2, -1]
    assert demos[0] == []
    assert len(demos[1]) == quota and all(d.get("augmented") for d in demos[1])  # no raw demos: k is 0
    # Bootstrapped in the shuffled order: the first `quota` messages the scripted LM gets right
    # (every message but each third one of the dataset).
    right = [i for i in order if i % 3 != 0][:quota]
    assert [d["message"] for d in demos[1]] == [TRAIN_ROWS[i]["message"] for i in right]
