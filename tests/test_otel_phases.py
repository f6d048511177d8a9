"""Phase spans of `dspx compile` and `dspx finetune`: the optimizer's structure in the trace.

A real OTLP/HTTP receiver on loopback (tests/test_otel.py's) decodes what the command sends; the
LM is the loopback server. Each test runs the real command with tracing on and checks the span
tree: names, parent links, key attributes, and that every scored example and every program run
sits under its phase. The mipro_v2 and copro runs replay golden DSPy fixtures: with tracing on
they must still send DSPy's requests and reach DSPy's trials.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.test_otel import Received, Receiver, children, parent_of
from tests.test_otel import receiver as receiver  # the OTLP receiver fixture, one per module


def named(spans: list[Received], name: str) -> list[Received]:
    return [s for s in spans if s.name == name]


def check_every_run_under(spans: list[Received], allowed: tuple[str, ...]) -> None:
    """Each program run's span is the child of an example's (or a bootstrap example's), and that
    one's parent is a phase span named in `allowed`: nothing hangs loose under the command."""
    runs = [s for s in spans if s.name.startswith("run ")]
    assert runs
    for run in runs:
        example = parent_of(spans, run)
        assert example.name.startswith(("example ", "bootstrap example ")), example.name
        phase = parent_of(spans, example)
        assert phase.name.startswith(allowed), (run.name, example.name, phase.name)


def answer_yes(body: dict[str, Any]) -> str:
    return "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]"


def one_step(tmp_path: Path, count: int = 6) -> Path:
    """One predictor; the LM always says `yes`, right on the odd questions only."""
    rows = [{"text": f"question {i}", "answer": "yes" if i % 2 else "no"} for i in range(count)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: phases
            lm: {model: openai/m, api_base: "${BASE}", api_key: k, num_retries: 0, temperature: 0.3, max_tokens: 64}
            modules:
              answer: {signature: "text -> answer"}
            flow:
              - {id: answer, module: answer, with: {text: $input.text}}
            output: {answer: $answer.answer}
            data: {train: rows.jsonl, dev: rows.jsonl}
            metric: exact_match
            """
        )
    )
    return path


def compile_traced(receiver: Receiver, *args: str, **env: str) -> list[Received]:
    receiver.take()
    done = dspx("compile", *args, "--otlp", receiver.url, **env)
    assert done.returncode == 0, done.stderr
    return receiver.take()


def top_phases(spans: list[Received], optimizer: str) -> tuple[Received, Received, Received]:
    """dspx compile -> dev before, optimize NAME, dev after (and nothing else)."""
    (root,) = [s for s in spans if not s.parent]
    assert root.name == "dspx compile"
    below = {s.name: s for s in children(spans, root)}
    assert sorted(below) == sorted(["dev before", f"optimize {optimizer}", "dev after"])
    assert below[f"optimize {optimizer}"].attributes["dspx.optimizer.name"] == optimizer
    return below["dev before"], below[f"optimize {optimizer}"], below["dev after"]


def test_bootstrap_few_shot_compile_shows_dev_scoring_and_each_bootstrapped_example(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    lm_server.responder = answer_yes
    spans = compile_traced(
        receiver, str(one_step(tmp_path)), "--optimizer", "bootstrap_few_shot", "--set", "max_bootstrapped_demos=2",
        "-j", "1", "-o", str(tmp_path / "state.json"), "--no-cache", BASE=lm_server.api_base,
    )  # fmt: skip
    before, optimize, after = top_phases(spans, "bootstrap_few_shot")
    for dev in (before, after):
        assert sorted(s.name for s in children(spans, dev)) == [f"example {i}" for i in range(6)]
        assert dev.attributes["dspx.score"] == 0.5 and dev.attributes["dspx.examples"] == 6
    (bootstrap,) = children(spans, optimize)
    assert bootstrap.name == "bootstrap"
    # Examples 0..3 were tried: 1 and 3 gave traces and met the quota of 2.
    assert bootstrap.attributes["dspx.bootstrap.traces_kept"] == 2
    assert bootstrap.attributes["dspx.bootstrap.examples_tried"] == 4
    tried = sorted(children(spans, bootstrap), key=lambda s: s.attributes["dspx.example.index"])
    assert [s.name for s in tried] == [f"bootstrap example {i}" for i in range(4)]
    assert [s.attributes["dspx.bootstrap.success"] for s in tried] == [False, True, False, True]
    assert all(len(children(spans, s)) == 1 for s in tried)  # one round: one teacher run each
    check_every_run_under(spans, ("dev ", "bootstrap"))
    assert len([s for s in spans if s.name.startswith("run ")]) == 6 + 4 + 6


def test_random_search_compile_shows_each_candidate_with_its_score(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    lm_server.responder = answer_yes
    spans = compile_traced(
        receiver, str(one_step(tmp_path, count=4)), "--optimizer", "bootstrap_random_search",
        "--set", "num_candidate_programs=1", "-j", "2", "-o", str(tmp_path / "state.json"), BASE=lm_server.api_base,
    )  # fmt: skip
    _, optimize, _ = top_phases(spans, "bootstrap_random_search")
    candidates = {s.attributes["dspx.candidate.seed"]: s for s in children(spans, optimize)}
    assert sorted(candidates) == [-3, -2, -1, 0]
    assert all(s.name == f"candidate {seed}" for seed, s in candidates.items())
    assert {seed: s.attributes["dspx.score"] for seed, s in candidates.items()} == {-3: 0.5, -2: 0.5, -1: 0.5, 0: 0.5}
    # Ties keep the first: only the zero-shot candidate became the best.
    assert [seed for seed, s in candidates.items() if s.attributes["dspx.candidate.new_best"]] == [-3]
    for seed, candidate in candidates.items():
        below = sorted(s.name for s in children(spans, candidate))
        scored = [f"example {i}" for i in range(4)]
        assert below == (["bootstrap", *scored] if seed >= -1 else scored)
    check_every_run_under(spans, ("dev ", "bootstrap", "candidate "))


def test_mipro_compile_shows_its_phases_and_trials_and_still_replays_dspy(receiver: Receiver, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from tests.fixtures.mipro.cases import Script
    from tests.test_mipro_cli import CASES, golden_view, study_trials, view, write_case

    case = CASES["light_predict"]
    run_dir = tmp_path / "run"
    with LMServer() as server:
        server.responder = Script(set(case.get("broken", [])))
        spans = compile_traced(
            receiver, str(write_case(tmp_path, "light_predict")), "-o", str(run_dir / "state.json"),
            "--cache-dir", str(tmp_path / "cache"), "-j", "1", MIPRO_API_BASE=server.api_base,
        )  # fmt: skip
    trials = study_trials(run_dir)
    assert view(trials) == golden_view(case)  # tracing changed no request, no draw
    _, optimize, _ = top_phases(spans, "mipro_v2")
    phases = children(spans, optimize)
    names = [s.name for s in phases]
    assert names[:3] == ["bootstrap demo sets", "propose instructions", "baseline"]  # in the order they ran
    demo_sets = children(spans, phases[0])
    assert len(demo_sets) == phases[0].attributes["dspx.mipro.demo_sets"] == 6
    assert sorted(s.attributes["dspx.candidate.seed"] for s in demo_sets) == [-3, -2, -1, 0, 1, 2]
    assert {s.name for s in children(spans, phases[1])} == {"chat prompt-model"}
    # Each objective trial's span: its number, the candidates it chose, its score, as in the study.
    by_number = {t.number: t for t in trials}
    objective = [s for s in phases if s.name.startswith("trial ")]
    assert len(objective) == sum(
        1 for t in trials if t.user_attrs.get("kind") != "baseline" and not t.user_attrs.get("added")
    )
    for span in objective:
        trial = by_number[int(span.name.split()[1])]
        assert span.attributes["dspx.trial.instructions"] == [trial.params["0_predictor_instruction"]]
        assert span.attributes["dspx.trial.demo_sets"] == [trial.params["0_predictor_demos"]]
        assert span.attributes["dspx.score.percent"] == trial.value
        assert span.attributes["dspx.trial.kind"] == trial.user_attrs["kind"]
        assert len(children(spans, span)) == span.attributes["dspx.examples"]
    baseline = phases[2]
    assert baseline.attributes["dspx.score.percent"] == by_number[0].value
    check_every_run_under(spans, ("dev ", "bootstrap", "baseline", "trial ", "full evaluation"))


def test_copro_compile_shows_its_depths_and_scored_candidates_and_still_replays_dspy(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    from tests.fixtures.mipro.cases import Script
    from tests.test_copro import CASES, GOLDEN, bodies

    golden, case = GOLDEN["copro_predict"], CASES["copro_predict"]
    lm_server.responder = Script()
    settings = [f"--set={key}={case[key]}" for key in ("breadth", "depth", "init_temperature")]
    program = Path(__file__).parent / "fixtures/mipro/programs" / f"{case['program']}.yaml"
    spans = compile_traced(
        receiver, str(program), "--optimizer", "copro", *settings, "--limit", str(case["train"]),
        "-o", str(tmp_path / "state.json"), MIPRO_API_BASE=lm_server.api_base,
    )  # fmt: skip
    assert bodies(lm_server, "prompt-model") == [r["body"] for r in golden["prompt_requests"]]
    _, optimize, _ = top_phases(spans, "copro")
    phases = children(spans, optimize)
    depths = case["depth"]
    assert sorted(s.name for s in phases) == sorted(
        ["propose instructions"] + [f"depth {d + 1}" for d in range(depths)]
    )
    scored = []
    for depth in (s for s in phases if s.name.startswith("depth ")):
        below = children(spans, depth)
        proposing = [s for s in below if s.name == "propose instructions"]
        # Every depth but the last proposes the next one's candidates.
        assert len(proposing) == (depth.attributes["dspx.copro.depth"] < depths)
        candidates = [s for s in below if s.name.startswith("candidate ")]
        assert len(candidates) + len(proposing) == len(below)
        for candidate in candidates:
            assert candidate.attributes["dspx.predictor.name"] == "route"
            assert 0 <= candidate.attributes["dspx.score.percent"] <= 100
            assert all(s.name.startswith("example ") for s in children(spans, candidate))
        scored += candidates
    report = json.loads((tmp_path / "state.json").read_text())["metadata"]["dspx"]["report"]
    assert len(scored) == report["total_calls"] == golden["total_calls"]
    check_every_run_under(spans, ("dev ", "candidate "))


def test_finetune_collects_its_traces_in_a_phase_span(lm_server: LMServer, receiver: Receiver, tmp_path: Path) -> None:
    from tests.test_finetune_data import CASES, responder, write_program

    case = CASES["predict_demos"]
    lm_server.responder = responder(case)
    receiver.take()
    done = dspx(
        "finetune", str(write_program(case, tmp_path)), "--data-only", "--traces", "bootstrap",
        "-o", str(tmp_path / "run"), "--no-cache", "--otlp", receiver.url, BASE=lm_server.api_base,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = receiver.take()
    (root,) = [s for s in spans if not s.parent]
    (collect,) = children(spans, root)  # --data-only: no dev scoring, no training
    assert collect.name == "collect traces"
    records = (tmp_path / "run" / "train.jsonl").read_text().splitlines()
    assert collect.attributes["dspx.traces.mode"] == "bootstrap"
    assert collect.attributes["dspx.traces.records"] == len(records) > 0
    runs = [s for s in spans if s.name.startswith("run ")]
    assert len(runs) == len(case["train"]) and all(s.parent == collect.span_id for s in runs)
    calls = [s for s in spans if s.name == "chat test-model"]
    assert len(calls) == len(lm_server.requests) > 0
