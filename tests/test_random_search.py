"""BootstrapFewShotWithRandomSearch against a scripted OpenAI-compatible server on 127.0.0.1.

The expected candidates are worked out here from DSPy's rules (random_search.py, bootstrap.py,
vanilla.py) with `random` directly, never by calling dspx's optimizer code.

The scripted model: a training question `qI` is answered right iff I is in GOOD (so bootstrapping
is known in advance); a validation question `vJ` is answered right iff J < VALUE[first demo shown],
so a candidate's valset score is a function of its first demo, and zero-shot scores 0.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example
from dspx_cli.errors import UsageError
from dspx_cli.optimizers.random_search import (
    RandomSearchReport,
    bootstrap_random_search,
)
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.test_optimizers import (
    QA,
    answer_reply,
    exact_match,
    with_runner,
    write_program,
)

GOOD = {0, 2, 3, 5, 6}
VALUE = {5: 4, 0: 3, 6: 2, 3: 1}  # first demo's question index -> how many of v0..v3 come out right
N_TRAIN, N_VAL = 8, 4
MAX_BOOTSTRAPPED, MAX_LABELED = 3, 4
Demos = list[dict[str, Any]]


def train() -> list[Example]:
    return [Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(N_TRAIN)]


def val() -> list[Example]:
    return [Example(question=f"v{j}", answer=f"b{j}").with_inputs("question") for j in range(N_VAL)]


def respond(body: dict[str, Any]) -> str:
    messages = body["messages"]
    asked = re.search(r"\[\[ ## question ## \]\]\n([qv])(\d+)", messages[-1]["content"])
    assert asked, messages[-1]["content"]
    kind, number = asked.groups()
    index = int(number)
    if kind == "q":
        return answer_reply(f"a{index}" if index in GOOD else "wrong")
    first = re.search(r"\[\[ ## question ## \]\]\nq(\d+)", messages[1]["content"]) if len(messages) > 2 else None
    right = first is not None and index < VALUE.get(int(first.group(1)), 0)
    return answer_reply(f"b{index}" if right else "wrong")


# ----- DSPy's rules, by hand --------------------------------------------------------------------


def raw(i: int) -> dict[str, Any]:
    return {"question": f"q{i}", "answer": f"a{i}"}


def augmented(i: int) -> dict[str, Any]:
    return {"augmented": True, "question": f"q{i}", "answer": f"a{i}"}


def expected_bootstrap(order: list[int], quota: int, seed: int = 0) -> Demos:
    """BootstrapFewShot with one predictor: the first `quota` successes in `order` (the teacher's
    answers do not depend on its demos here), then the rest of `order` shuffled and sampled."""
    chosen = [i for i in order if i in GOOD][:quota]
    pool = [i for i in order if i not in chosen]
    random.Random(seed).shuffle(pool)
    sample = random.Random(seed).sample(pool, min(MAX_LABELED - len(chosen), len(pool)))
    return [augmented(i) for i in chosen] + [raw(i) for i in sample]


def expected_candidates(num_candidate_programs: int) -> dict[int, Demos]:
    indexes = list(range(N_TRAIN))
    candidates: dict[int, Demos] = {
        -3: [],
        -2: [raw(i) for i in random.Random(0).sample(indexes, MAX_LABELED)],
        -1: expected_bootstrap(indexes, MAX_BOOTSTRAPPED),
    }
    for seed in range(num_candidate_programs):
        order = list(indexes)
        random.Random(seed).shuffle(order)
        size = random.Random(seed).randint(1, MAX_BOOTSTRAPPED)  # a fresh RNG, as DSPy does
        candidates[seed] = expected_bootstrap(order, size)
    return candidates


def expected_score(demos: Demos) -> float:
    if not demos:
        return 0.0
    first = int(demos[0]["question"][1:])
    return min(VALUE.get(first, 0), N_VAL) / N_VAL


# ----- runs -------------------------------------------------------------------------------------


def search(program: Program, tmp_path: Path, cache: str, **options: Any) -> tuple[ProgramRunner, RandomSearchReport]:
    settings: dict[str, Any] = {
        "max_bootstrapped_demos": MAX_BOOTSTRAPPED,
        "max_labeled_demos": MAX_LABELED,
        "num_threads": 4,
        **options,
    }
    return asyncio.run(
        with_runner(
            program, tmp_path, lambda r: bootstrap_random_search(r, train(), exact_match(program), **settings), cache
        )
    )


def demos_of(runner: ProgramRunner) -> Demos:
    ((_, predictor),) = named_predictors(runner)
    return predictor.demos


@pytest.fixture
def program(lm_server: LMServer, tmp_path: Path) -> Program:
    lm_server.responder = respond
    return write_program(tmp_path, lm_server, QA)


def test_candidates_follow_dspy_seeds_and_the_best_on_the_valset_wins(program: Program, tmp_path: Path) -> None:
    runner, report = search(program, tmp_path, "a", valset=val(), num_candidate_programs=3)

    expected = expected_candidates(3)
    assert [c.seed for c in report.candidates] == [-3, -2, -1, 0, 1, 2]
    assert {c.seed: c.demos["answer"] for c in report.candidates} == expected
    # Written out, so a wrong hand computation would show too: seed 0 shuffles to [4, 1, 5, 2, 0, 3, 7, 6]
    # and draws size 2; seeds 1 and 2 draw size 1.
    assert expected[-1][:3] == [augmented(0), augmented(2), augmented(3)]
    assert [d["question"] for d in expected[0]] == ["q5", "q2", "q4", "q3"] and expected[0][1]["augmented"]
    assert [c.max_bootstrapped_demos for c in report.candidates] == [None, None, 3, 2, 1, 1]
    assert [c.bootstrapped for c in report.candidates] == [[], [], [0, 2, 3], [5, 2], [3], [5]]

    scores = [c.score for c in report.candidates]
    assert scores == [expected_score(expected[seed]) for seed in range(-3, 3)] == [0.0, 0.5, 0.75, 1.0, 0.25, 1.0]
    # Seeds 0 and 2 tie at 1.0: DSPy keeps the earlier one (a strict `>`).
    assert (report.best_seed, report.best_score) == (0, 1.0)
    assert demos_of(runner) == expected[0]
    assert [c.seed for c in report.ranked()] == [0, 2, -1, -2, 1, -3]
    assert not report.stopped_early


def test_valset_defaults_to_the_trainset(program: Program, tmp_path: Path, lm_server: LMServer) -> None:
    # On the trainset every candidate scores |GOOD| / 8 (the model ignores demos for q questions),
    # so all tie and the first, zero-shot, is kept.
    for cache, valset in (("a", None), ("b", [])):
        runner, report = search(program, tmp_path, cache, valset=valset, num_candidate_programs=1)
        assert [c.score for c in report.candidates] == [len(GOOD) / N_TRAIN] * 4
        assert (report.best_seed, demos_of(runner)) == (-3, [])
    assert not any("\nv" in r.body["messages"][-1]["content"] for r in lm_server.requests)


def test_stop_at_score_ends_the_search(program: Program, tmp_path: Path) -> None:
    runner, report = search(program, tmp_path, "a", valset=val(), num_candidate_programs=3, stop_at_score=0.75)
    assert [c.seed for c in report.candidates] == [-3, -2, -1]
    assert (report.best_seed, report.stopped_early) == (-1, True)
    assert demos_of(runner) == expected_candidates(0)[-1]


def test_the_seed_is_honoured(program: Program, tmp_path: Path) -> None:
    _, first = search(program, tmp_path, "a", valset=val(), num_candidate_programs=3)
    _, again = search(program, tmp_path, "b", valset=val(), num_candidate_programs=3)
    assert [(c.seed, c.score, c.demos) for c in again.candidates] == [
        (c.seed, c.score, c.demos) for c in first.candidates
    ]

    _, other = search(program, tmp_path, "c", valset=val(), num_candidate_programs=3, seed=1)
    by_seed = {c.seed: c.demos["answer"] for c in other.candidates}
    before = {c.seed: c.demos["answer"] for c in first.candidates}
    # The labeled and bootstrap samplers take the seed (DSPy's fixed 0 is seed=0) ...
    assert by_seed[-2] == [raw(i) for i in random.Random(1).sample(range(N_TRAIN), MAX_LABELED)] != before[-2]
    assert by_seed[-1] == expected_bootstrap(list(range(N_TRAIN)), MAX_BOOTSTRAPPED, seed=1)
    # ... and the shuffled candidates use other shuffles: candidate s shuffles with s + seed * 2**32.
    assert [by_seed[s] for s in range(3)] != [before[s] for s in range(3)]
    order = list(range(N_TRAIN))
    random.Random(2**32).shuffle(order)
    size = random.Random(2**32).randint(1, MAX_BOOTSTRAPPED)
    assert by_seed[0] == expected_bootstrap(order, size, seed=1)


def test_invalid_settings_fail_before_any_call(program: Program, tmp_path: Path, lm_server: LMServer) -> None:
    with pytest.raises(UsageError, match="max_bootstrapped_demos"):
        search(program, tmp_path, "a", max_bootstrapped_demos=0, num_candidate_programs=1)
    with pytest.raises(UsageError, match="seed"):
        search(program, tmp_path, "a", seed=-1)
    assert lm_server.requests == []
    # Without shuffled candidates a zero quota is fine: seed -1 bootstraps nothing.
    _, report = search(program, tmp_path, "b", valset=val(), max_bootstrapped_demos=0, num_candidate_programs=0)
    assert [c.seed for c in report.candidates] == [-3, -2, -1]
    assert report.candidates[-1].bootstrapped == []


# ----- the command line -------------------------------------------------------------------------


def shout(body: dict[str, Any]) -> str:
    # Training texts are always answered right, dev texts only with demos: selection on the
    # trainset would keep zero-shot, selection on the dev split must not.
    messages = body["messages"]
    text = messages[-1]["content"].split("\n")[1]
    right = int(text[1:]) < 8 or len(messages) > 2
    return f"[[ ## answer ## ]]\n{text.upper() if right else text}\n\n[[ ## completed ## ]]"


def test_cli_compiles_with_random_search_on_the_dev_split(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    rows = [{"text": f"w{i}", "answer": f"W{i}"} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent("""\
        lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
        modules:
          shout: {signature: "text -> answer"}
        data: {train: train.jsonl, dev: dev.jsonl}
        metric: exact_match
        """)
    )
    state = tmp_path / "state.json"
    done = dspx(
        "compile",
        str(path),
        "--optimizer",
        "bootstrap_random_search",
        "--set",
        "num_candidate_programs=3",
        "--set",
        "max_labeled_demos=3",
        "-o",
        str(state),
        "--json",
        BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["settings"]["num_candidate_programs"] == 3
    report = summary["report"]
    assert [c["seed"] for c in report["candidates"]] == [-3, -2, -1, 0, 1, 2]
    assert [c["score"] for c in report["candidates"]] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert (report["best_seed"], report["best_score"]) == (-2, 1.0)  # labeled only: first to reach 1.0
    assert (summary["score_before"], summary["score_after"]) == (0.0, 1.0)
    assert summary["demos"] == {"shout": 3}
    demos = json.loads(state.read_text())["shout"]["demos"]
    assert not any(d.get("augmented") for d in demos)
