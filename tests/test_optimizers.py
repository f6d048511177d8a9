"""LabeledFewShot and BootstrapFewShot against a scripted OpenAI-compatible server on 127.0.0.1.

The server's answers are a function of the request (the question asked and the temperature), so
which training examples bootstrap is known in advance, whatever order concurrent requests arrive in.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example, Prediction
from dspx_cli.errors import AdapterParseError, UsageError
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.modules.trace import TraceStep
from dspx_cli.optimizers.bootstrap import BootstrapReport, bootstrap_few_shot
from dspx_cli.optimizers.labeled import labeled_few_shot
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner
from tests.fixtures.bootstrap import cases as bootstrap_cases
from tests.lm_server import LMServer, RecordedRequest, Reply

BOOTSTRAP_GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "bootstrap" / "golden.json").read_text())

QA = """\
signatures:
  qa:
    inputs: {question: str}
    outputs: {answer: str}
modules:
  answer:
    signature: qa
"""

FLOW = """\
modules:
  draft: {type: chain_of_thought, signature: "question -> answer"}
  verify: {signature: "question, answer -> ok: bool"}
flow:
  - {id: first, module: draft, with: {question: $input.question}}
  - {id: check, module: verify, with: {question: $input.question, answer: $first.answer}}
output: {answer: $first.answer, ok: $check.ok}
"""


def write_program(
    tmp_path: Path, server: LMServer, body: str, *, temperature: float = 0.0, model: str = "test-model"
) -> Program:
    path = tmp_path / "program.yaml"
    header = f"""\
        lm:
          model: openai/{model}
          api_base: ${{BASE}}
          temperature: {temperature}
          num_retries: 0
        """
    path.write_text(textwrap.dedent(header) + textwrap.dedent(body))
    return load_program(path, env={"BASE": server.api_base})


def trainset(n: int) -> list[Example]:
    return [Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(n)]


def asked(body: dict[str, Any]) -> int:
    """The index of the question in the request's final user message (demos come before it)."""
    match = re.search(r"\[\[ ## question ## \]\]\nq(\d+)", body["messages"][-1]["content"])
    assert match, body["messages"][-1]["content"]
    return int(match.group(1))


def answer_reply(answer: str) -> str:
    return f"[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"


def qa_responder(correct: Callable[[int, float | None], bool]) -> Callable[[dict[str, Any]], str]:
    def respond(body: dict[str, Any]) -> str:
        i = asked(body)
        return answer_reply(f"a{i}" if correct(i, body.get("temperature")) else "wrong")

    return respond


def exact_match(program: Program) -> Any:
    return resolve_metric(program, None, "exact_match")


async def with_runner(
    program: Program, tmp_path: Path, work: Callable[[ProgramRunner], Any], name: str = "cache"
) -> Any:
    context = RunContext(cache_dir=tmp_path / name, history=False)
    try:
        runner = ProgramRunner(program, context)
        return runner, await work(runner)
    finally:
        await context.aclose()


def final_questions(request: RecordedRequest) -> tuple[int, list[str]]:
    """The asked question, and the contents of the demo messages sent before it."""
    messages = request.body["messages"]
    return asked(request.body), [m["content"] for m in messages[1:-1]]


# ----- LabeledFewShot ---------------------------------------------------------------------------


def test_labeled_few_shot_samples_with_the_seed_per_predictor(lm_server: LMServer, tmp_path: Path) -> None:
    program = write_program(tmp_path, lm_server, FLOW)
    train = trainset(10)

    def demos_for(seed: int, k: int = 3) -> dict[str, list[dict[str, Any]]]:
        runner = ProgramRunner(program, None)  # demos need no LM
        asyncio.run(labeled_few_shot(runner, train, k=k, seed=seed))
        return {name: predictor.demos for name, predictor in named_predictors(runner)}

    first = demos_for(seed=0)
    assert list(first) == ["draft.predict", "verify"]
    # One RNG, drawn by the predictors in program order (DSPy's LabeledFewShot with sample=True).
    rng = random.Random(0)
    expected = [[dict(x.items()) for x in rng.sample(train, 3)] for _ in range(2)]
    assert list(first.values()) == expected
    assert first["draft.predict"] != first["verify"]
    assert demos_for(seed=0) == first  # reproducible
    other = demos_for(seed=1)
    assert other != first
    rng = random.Random(1)
    assert other["draft.predict"] == [dict(x.items()) for x in rng.sample(train, 3)]
    # k larger than the trainset takes every example, in a sampled order.
    everything = demos_for(seed=0, k=50)["verify"]
    assert sorted(d["question"] for d in everything) == sorted(f"q{i}" for i in range(10))

    runner = ProgramRunner(program, None)
    named_predictors(runner)[0][1].demos = [{"question": "old", "answer": "old"}]
    asyncio.run(labeled_few_shot(runner, [], k=3))
    assert all(p.demos == [] for _, p in named_predictors(runner))  # DSPy: reset_copy()


# ----- BootstrapFewShot -------------------------------------------------------------------------


def test_bootstrap_picks_successful_examples_in_trainset_order(lm_server: LMServer, tmp_path: Path) -> None:
    good = {1, 2, 4, 6, 7, 9}
    lm_server.responder = qa_responder(lambda i, temperature: i in good)
    program = write_program(tmp_path, lm_server, QA)
    train = trainset(10)

    runner, report = asyncio.run(
        with_runner(
            program,
            tmp_path,
            lambda r: bootstrap_few_shot(r, train, exact_match(program), max_bootstrapped_demos=3, max_labeled_demos=5),
        )
    )
    assert report.bootstrapped == [1, 2, 4]
    assert (report.examples_tried, report.attempts, report.errors) == (5, 5, [])

    ((name, predictor),) = named_predictors(runner)
    augmented = [{"augmented": True, "question": f"q{i}", "answer": f"a{i}"} for i in (1, 2, 4)]
    # The rest of the trainset (examples 5..9 were never tried) fills up to max_labeled_demos.
    pool = [train[i] for i in (0, 3, 5, 6, 7, 8, 9)]
    random.Random(0).shuffle(pool)
    raw = [dict(x.items()) for x in random.Random(0).sample(pool, 2)]
    assert predictor.demos == augmented + raw
    assert report.demos == {name: (3, 2)}

    # The teacher carried labeled demos (k=5 from the trainset), never the example being asked.
    labeled = {d["question"] for d in (dict(x.items()) for x in random.Random(0).sample(train, 5))}
    for request in lm_server.requests:
        question, demo_messages = final_questions(request)
        shown = {q for m in demo_messages for q in re.findall(r"\[\[ ## question ## \]\]\n(q\d+)\b", m)}
        assert shown == labeled - {f"q{question}"}
        assert "rollout_id" not in request.body


def test_metric_threshold_is_respected(lm_server: LMServer, tmp_path: Path) -> None:
    # Even questions get a half-right answer: token F1 of "aN extra" against "aN" is 2/3.
    lm_server.responder = lambda body: answer_reply(f"a{asked(body)}" + (" extra" if asked(body) % 2 == 0 else ""))
    program = write_program(tmp_path, lm_server, QA)
    f1 = resolve_metric(program, None, "f1")
    train = trainset(6)

    def run(threshold: float | None, name: str) -> BootstrapReport:
        return asyncio.run(
            with_runner(
                program,
                tmp_path,
                lambda r: bootstrap_few_shot(
                    r, train, f1, max_bootstrapped_demos=3, max_labeled_demos=0, metric_threshold=threshold
                ),
                name,
            )
        )[1]

    assert run(None, "a").bootstrapped == [0, 1, 2]  # 2/3 is truthy
    assert run(0.6, "b").bootstrapped == [0, 1, 2]
    strict = run(1.0, "c")
    assert strict.bootstrapped == [1, 3, 5]
    assert strict.examples_tried == 6


def test_later_rounds_resample_at_temperature_one_with_new_rollout_ids(lm_server: LMServer, tmp_path: Path) -> None:
    # At the program's temperature 0 only odd questions are right; at 1.0 only multiples of 3.
    def correct(i: int, temperature: float | None) -> bool:
        return i % 3 == 0 if temperature == 1.0 else i % 2 == 1

    lm_server.responder = qa_responder(correct)
    program = write_program(tmp_path, lm_server, QA)
    train = trainset(8)

    runner, report = asyncio.run(
        with_runner(
            program,
            tmp_path,
            lambda r: bootstrap_few_shot(
                r,
                train,
                exact_match(program),
                max_bootstrapped_demos=4,
                max_labeled_demos=0,
                max_rounds=3,
                concurrency=1,
            ),
        )
    )
    # 0 (round 1), 1 (round 0), 3 (round 0), 5 (round 0); 2 and 4 fail all three rounds.
    assert report.bootstrapped == [0, 1, 3, 5]
    assert report.attempts == 2 + 1 + 3 + 1 + 3 + 1
    assert [d["question"] for d in named_predictors(runner)[0][1].demos] == ["q0", "q1", "q3", "q5"]

    temperatures: dict[int, list[float | None]] = {}
    for request in lm_server.requests:
        temperatures.setdefault(asked(request.body), []).append(request.body.get("temperature"))
    assert temperatures == {0: [0.0, 1.0], 1: [0.0], 2: [0.0, 1.0, 1.0], 3: [0.0], 4: [0.0, 1.0, 1.0], 5: [0.0]}
    # Rounds 1 and 2 send identical bodies: only the rollout id (never sent) kept round 2 from
    # being served by the cache.
    bodies = [r.body for r in lm_server.requests if asked(r.body) == 2 and r.body.get("temperature") == 1.0]
    assert bodies[0] == bodies[1] and "rollout_id" not in bodies[0]


def test_each_predictor_of_a_flow_gets_demos_from_the_same_traces(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> str:
        i = asked(body)
        if "reasoning" in body["messages"][0]["content"]:
            answer = f"a{i}" if i != 1 else "wrong"
            return f"[[ ## reasoning ## ]]\nbecause {i}\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        # The verifier rejects question 2 although its answer is right.
        return f"[[ ## ok ## ]]\n{i != 2}\n\n[[ ## completed ## ]]"

    class AnswerAndOk:
        name = "answer_and_ok"

        def __init__(self) -> None:
            self.seen: list[list[TraceStep]] = []

        async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
            self.seen.append(trace)
            return float(prediction.answer == example.answer and prediction.ok is True)

    lm_server.responder = respond
    program = write_program(tmp_path, lm_server, FLOW)
    metric = AnswerAndOk()
    runner, report = asyncio.run(
        with_runner(
            program,
            tmp_path,
            lambda r: bootstrap_few_shot(r, trainset(6), metric, max_bootstrapped_demos=3, max_labeled_demos=0),
        )
    )
    assert report.bootstrapped == [0, 3, 4]
    demos = {name: predictor.demos for name, predictor in named_predictors(runner)}
    assert demos == {
        "draft.predict": [
            {"augmented": True, "question": f"q{i}", "reasoning": f"because {i}", "answer": f"a{i}"} for i in (0, 3, 4)
        ],
        "verify": [{"augmented": True, "question": f"q{i}", "answer": f"a{i}", "ok": True} for i in (0, 3, 4)],
    }
    # The metric saw each run's trace: both predictors, with their inputs.
    assert all(len(trace) == 2 for trace in metric.seen)
    assert {type(step.predictor).__name__ for trace in metric.seen for step in trace} == {"Predict"}


def test_concurrent_bootstrap_selects_the_same_demos_as_a_sequential_one(lm_server: LMServer, tmp_path: Path) -> None:
    n = 40
    pattern = random.Random(7)
    right_at_0 = {i for i in range(n) if pattern.random() < 0.25}
    right_at_1 = {i for i in range(n) if pattern.random() < 0.3}
    lm_server.responder = qa_responder(lambda i, t: i in (right_at_1 if t == 1.0 else right_at_0))

    # Later questions answer sooner, so concurrent runs finish in roughly reverse trainset order.
    def rule(request: RecordedRequest, attempt: int) -> Reply:
        return Reply(delay=0.002 * (n - asked(request.body)))

    lm_server.rule = rule
    program = write_program(tmp_path, lm_server, QA)
    train = trainset(n)

    def run(concurrency: int) -> tuple[BootstrapReport, list[dict[str, Any]]]:
        runner, report = asyncio.run(
            with_runner(
                program,
                tmp_path,
                lambda r: bootstrap_few_shot(
                    r,
                    train,
                    exact_match(program),
                    max_bootstrapped_demos=5,
                    max_labeled_demos=8,
                    max_rounds=2,
                    concurrency=concurrency,
                ),
                f"cache-{concurrency}",
            )
        )
        return report, named_predictors(runner)[0][1].demos

    sequential = run(1)
    assert lm_server.max_in_flight == 1
    lm_server.max_in_flight = 0
    concurrent = run(16)
    assert lm_server.max_in_flight > 4  # it really overlapped
    assert concurrent == sequential
    report, demos = sequential
    assert len(report.bootstrapped) == 5
    assert report.bootstrapped == sorted(report.bootstrapped)
    assert all(i in right_at_0 | right_at_1 for i in report.bootstrapped)
    assert [d["question"] for d in demos[:5]] == [f"q{i}" for i in report.bootstrapped]
    assert len(demos) == 8


def test_errors_fail_rounds_and_the_max_errors_th_is_raised(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> str:
        i = asked(body)
        return "no sections here" if i in (1, 3) else answer_reply(f"a{i}")

    lm_server.responder = respond
    program = write_program(tmp_path, lm_server, QA)
    train = trainset(6)

    _, report = asyncio.run(
        with_runner(
            program,
            tmp_path,
            lambda r: bootstrap_few_shot(r, train, exact_match(program), max_bootstrapped_demos=3, max_labeled_demos=0),
            "a",
        )
    )
    assert report.bootstrapped == [0, 2, 4]
    assert [(index, round_index) for index, round_index, _ in report.errors] == [(1, 0), (3, 0)]

    with pytest.raises(AdapterParseError):
        asyncio.run(
            with_runner(
                program,
                tmp_path,
                lambda r: bootstrap_few_shot(
                    r, train, exact_match(program), max_bootstrapped_demos=3, max_labeled_demos=0, max_errors=2
                ),
                "b",
            )
        )


def test_a_teacher_runs_the_examples_and_a_compiled_one_keeps_its_demos(lm_server: LMServer, tmp_path: Path) -> None:
    # Only the teacher's model answers right; the student's LM is never called.
    def respond(body: dict[str, Any]) -> str:
        return answer_reply(f"a{asked(body)}" if body["model"] == "teacher-model" else "wrong")

    lm_server.responder = respond
    student_dir, teacher_dir = tmp_path / "student", tmp_path / "teacher"
    student_dir.mkdir()
    teacher_dir.mkdir()
    student_program = write_program(student_dir, lm_server, QA)
    teacher_program = write_program(teacher_dir, lm_server, QA, model="teacher-model")
    train = trainset(4)
    fixed = [{"question": "fixed question", "answer": "fixed answer"}]

    async def work(student: ProgramRunner) -> BootstrapReport:
        context = RunContext(cache_dir=tmp_path / "teacher-cache", history=False)
        try:
            teacher = ProgramRunner(teacher_program, context)
            named_predictors(teacher)[0][1].demos = list(fixed)
            return await bootstrap_few_shot(
                student,
                train,
                exact_match(student_program),
                max_bootstrapped_demos=2,
                max_labeled_demos=2,
                teacher=teacher,
                teacher_compiled=True,
            )
        finally:
            await context.aclose()

    runner, report = asyncio.run(with_runner(student_program, tmp_path, work))
    assert report.bootstrapped == [0, 1]
    assert [d["question"] for d in named_predictors(runner)[0][1].demos] == ["q0", "q1"]  # 2 augmented, no room left
    assert {r.body["model"] for r in lm_server.requests} == {"teacher-model"}
    for request in lm_server.requests:  # the compiled teacher's own demo was sent as it was
        assert request.body["messages"][1]["content"].endswith("fixed question")

    other = write_program(teacher_dir, lm_server, QA.replace("outputs: {answer: str}", "outputs: {answer: int}"))
    with pytest.raises(UsageError, match="differ"):
        asyncio.run(
            bootstrap_few_shot(
                ProgramRunner(student_program, None),
                train,
                exact_match(student_program),
                teacher=ProgramRunner(other, None),
            )
        )


# ----- parity with DSPy 3.4.1 (tests/fixtures/bootstrap) -----------------------------------------


class AnswerVerified:
    """The golden cases' metric: the answer is right and, with a verifier, `ok` is true."""

    name = "answer_verified"

    async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        verified = prediction.get("ok", True) is True
        return float(prediction.answer == example.answer and verified)


@pytest.mark.parametrize("case", BOOTSTRAP_GOLDEN["cases"], ids=lambda case: case["id"])
@pytest.mark.parametrize("concurrency", [1, 8])
def test_bootstrap_chooses_the_demos_dspy_chooses(
    case: dict[str, Any], concurrency: int, lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = lambda body: bootstrap_cases.respond(case, body)
    program = write_program(tmp_path, lm_server, FLOW if case["program"] == bootstrap_cases.DRAFT_VERIFY else QA)
    settings = {key: case[key] for key in ("max_bootstrapped_demos", "max_labeled_demos") if key in case}
    runner, _ = asyncio.run(
        with_runner(
            program,
            tmp_path,
            lambda r: bootstrap_few_shot(
                r,
                trainset(case["train"]),
                AnswerVerified(),
                max_rounds=case.get("max_rounds", 1),
                concurrency=concurrency,
                max_errors=1,
                **settings,
            ),
        )
    )
    # Every predictor samples its raw demos from the whole pool of examples that were not
    # bootstrapped (DSPy 3.4.1), not from the previous predictor's sample.
    assert {name: predictor.demos for name, predictor in named_predictors(runner)} == case["demos"]
    requests = [bootstrap_cases.request_record(r.body) for r in lm_server.requests]
    if concurrency == 1:
        assert requests == case["requests"]  # the same calls, in DSPy's order
    else:
        # Examples past the quota may have been started, never consumed: DSPy's calls are all there.
        assert all(request in requests for request in case["requests"])


@pytest.mark.parametrize("case", BOOTSTRAP_GOLDEN["random_search"], ids=lambda case: case["id"])
def test_random_search_builds_and_chooses_the_candidates_dspy_does(
    case: dict[str, Any], lm_server: LMServer, tmp_path: Path
) -> None:
    from dspx_cli.optimizers.random_search import bootstrap_random_search

    lm_server.responder = lambda body: bootstrap_cases.respond(case, body)
    program = write_program(tmp_path, lm_server, FLOW if case["program"] == bootstrap_cases.DRAFT_VERIFY else QA)
    base = bootstrap_cases.VAL_BASE
    valset = [
        Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(base, base + case["val"])
    ]
    runner, search = asyncio.run(
        with_runner(
            program,
            tmp_path,
            lambda r: bootstrap_random_search(
                r,
                trainset(case["train"]),
                AnswerVerified(),
                valset=valset,
                num_threads=4,
                max_errors=1,
                num_candidate_programs=case["num_candidate_programs"],
                max_bootstrapped_demos=case["max_bootstrapped_demos"],
                max_labeled_demos=case["max_labeled_demos"],
            ),
        )
    )
    built = [{"seed": c.seed, "score": round(100 * c.score, 2), "demos": c.demos} for c in search.candidates]
    assert built == case["candidates"]
    assert search.best_seed == case["best_seed"]
    assert {name: predictor.demos for name, predictor in named_predictors(runner)} == case["demos"]
