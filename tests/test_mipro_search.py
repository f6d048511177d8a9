"""MIPROv2's plan and search against DSPy's golden record (tests/fixtures/mipro/golden.json).

The plan (trial counts, auto settings, valset draws) is checked on every recorded row. The search
is checked on its own: the golden instruction candidates and demo sets are given to it as they
are, the task model is the fixture's scripted one on a loopback server, and the shared RNG is
advanced exactly as DSPy's demo sets and proposer advanced it (checked against the rollout ids
DSPy recorded). The optuna trials (params, values), DSPy's trial log and the final choice must
then be DSPy's.
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example
from dspx_cli.errors import UsageError
from dspx_cli.evaluate.metrics import resolve_metric
from dspx_cli.optimizers.mipro import _scorer
from dspx_cli.optimizers.mipro_plan import adjusted_num_trials, num_trials_for, plan_mipro
from dspx_cli.optimizers.mipro_search import Candidates, TrialSearch, best_full_trial
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.optimizers.study import open_study
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.program.runner import ProgramRunner
from tests.fixtures.mipro.cases import DEV_ROWS, Script
from tests.lm_server import LMServer

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "mipro" / "golden.json").read_text())
HYPER = GOLDEN["hyperparameters"]
CASES = {case["id"]: case for case in GOLDEN["mipro"]}

SIGNATURE = """\
signatures:
  route:
    instructions: Route the customer message to the support queue that should handle it.
    inputs: {message: str}
    outputs:
      queue: {type: str, desc: the name of one support queue}
metric: {name: answer_exact_match, field: queue}
"""
PROGRAMS = {
    "predict": SIGNATURE
    + """\
modules:
  router: {signature: route}
""",
    "route_then_prioritize": SIGNATURE
    + """\
modules:
  route: {type: chain_of_thought, signature: route}
  prioritize: {signature: "message, queue -> priority"}
flow:
  - {id: routed, module: route, with: {message: $input.message}}
  - {id: rated, module: prioritize, with: {message: $input.message, queue: $routed.queue}}
output: {queue: $routed.queue, priority: $rated.priority}
""",
}


# ----- the plan ----------------------------------------------------------------------------------


def test_trial_count_formula_matches_every_golden_row() -> None:
    assert len(HYPER["formula"]) > 10
    for row in HYPER["formula"]:
        assert num_trials_for(row["predictors"], row["zeroshot"], row["num_candidates"]) == row["num_trials"], row


def test_auto_settings_and_valset_draw_match_every_golden_row() -> None:
    assert len(HYPER["auto"]) == 48
    for row in HYPER["auto"]:
        demos = 0 if row["zeroshot"] else 4
        settings = {"auto": row["auto"], "max_bootstrapped_demos": demos, "max_labeled_demos": demos}
        plan = plan_mipro(settings, row["predictors"], row["val_size"], random.Random(9))
        assert plan.num_trials == row["num_trials"], row
        assert plan.minibatch == row["minibatch"], row
        assert plan.num_instruction_candidates == row["num_instruct_candidates"], row
        assert plan.num_demo_sets == row["num_fewshot_candidates"], row
        assert len(plan.valset_indexes) == row["valset_size"], row
        assert list(plan.valset_indexes[:12]) == row["valset_first_indexes"], row


def test_adjusted_trial_count_matches_golden() -> None:
    for row in HYPER["adjusted_num_trials"]:
        assert (
            adjusted_num_trials(row["num_trials"], True, row["minibatch_full_eval_steps"]) == row["adjusted_num_trials"]
        )


def test_explicit_settings_keep_the_valset_and_check_their_counterparts() -> None:
    rng = random.Random(1)
    plan = plan_mipro({"auto": None, "num_candidates": 4, "num_trials": 7, "minibatch_size": 6}, 2, 14, rng)
    assert plan.valset_indexes == tuple(range(14)) and plan.minibatch and plan.num_demo_sets == 4
    assert rng.random() == random.Random(1).random()  # nothing drawn without auto
    with pytest.raises(UsageError, match="about 16"):
        plan_mipro({"auto": None, "num_candidates": 4}, 2, 14, rng)
    with pytest.raises(UsageError, match="auto sets"):
        plan_mipro({"auto": "light", "num_trials": 3}, 1, 14, rng)
    with pytest.raises(UsageError, match="minibatch_size 35 exceeds"):
        plan_mipro({"auto": None, "num_candidates": 3, "num_trials": 3}, 1, 14, rng)


def test_full_evaluation_cadence_is_dspys() -> None:
    plan = plan_mipro(
        {"auto": None, "num_candidates": 4, "num_trials": 7, "minibatch_size": 6, "minibatch_full_eval_steps": 3},
        2,
        14,
        random.Random(0),
    )
    # Objective trials 1-3, 5-7, 9 (numbers): full evaluations follow trial_num 4, 8 and 10.
    assert [n for n in range(1, 11) if plan.full_eval_due(n + 1)] == [3, 7, 9]


# ----- the search, on DSPy's candidates ----------------------------------------------------------


def shared_rng(case: dict[str, Any]) -> random.Random:
    """Random(seed) as DSPy leaves it after the valset draw, the demo sets and the proposer."""
    rng = random.Random(case["seed"])
    if case.get("auto"):
        rng.sample(range(case["val"]), min(100, case["val"]))
    boot = case.get("max_bootstrapped_demos", 4)
    labeled = case.get("max_labeled_demos", 4)
    zeroshot = boot == 0 and labeled == 0
    if zeroshot:
        boot, labeled = 3, 0
    sets = len(next(iter(case["demo_sets"].values())))
    for seed in range(-3, sets - 3):
        if seed >= 0 or (seed == -2 and labeled == 0):
            rng.shuffle(list(range(case["train"])))
            rng.randint(1, boot)
    rollout_ids = []
    for _ in range(sum(len(c) for c in case["instruction_candidates"].values())):
        rng.choice(range(6))
        rollout_ids.append(rng.randint(0, 10**9))
    recorded: list[int] = []
    for call in case["prompt_lm_calls"]:  # a proposal's calls (descriptions, proposal) share its id
        rollout_id = call["kwargs"].get("rollout_id")
        if rollout_id is not None and (not recorded or recorded[-1] != rollout_id):
            recorded.append(rollout_id)
    assert rollout_ids == recorded  # the stream is DSPy's up to the trials
    return rng


def golden_candidates(case: dict[str, Any], runner: ProgramRunner) -> Candidates:
    names = [name for name, _ in named_predictors(runner)]
    zeroshot = case.get("max_bootstrapped_demos", 4) == 0 and case.get("max_labeled_demos", 4) == 0
    demo_sets = None
    if not zeroshot:
        demo_sets = {name: [s["demos"] for s in case["demo_sets"][str(i)]] for i, name in enumerate(names)}
    return Candidates(names, {name: case["instruction_candidates"][str(i)] for i, name in enumerate(names)}, demo_sets)


def program_for(case: dict[str, Any], tmp_path: Path, server: LMServer) -> Program:
    path = tmp_path / "program.yaml"
    header = "lm:\n  model: openai/task-model\n  api_base: ${BASE}\n  num_retries: 0\n"
    path.write_text(header + textwrap.dedent(PROGRAMS[case["program"]]))
    return load_program(path, env={"BASE": server.api_base})


def search_case(case_id: str, tmp_path: Path, *, name: str = "run") -> dict[str, Any]:
    """Baseline and trials on the golden candidates; what the study and the records hold."""
    case = CASES[case_id]
    valset = [Example(**row).with_inputs("message") for row in DEV_ROWS[: case["val"]]]
    records: list[dict[str, Any]] = []
    with LMServer() as server:
        server.responder = Script()
        program = program_for(case, tmp_path, server)
        context = RunContext(cache_dir=tmp_path / f"{name}-cache", history=False)

        async def go() -> dict[str, Any]:
            try:
                runner = ProgramRunner(program, context)
                settings = {key: case.get(key) for key in ("auto", "num_candidates", "num_trials")}
                settings.update(
                    {key: case[key] for key in ("max_bootstrapped_demos", "max_labeled_demos") if key in case}
                )
                settings.update(
                    {k: case[k] for k in ("minibatch", "minibatch_size", "minibatch_full_eval_steps") if k in case}
                )
                plan = plan_mipro(settings, len(named_predictors(runner)), len(valset), random.Random(case["seed"]))
                kept = [valset[i] for i in plan.valset_indexes]
                handle = open_study(run_dir=tmp_path / name, storage=None, name="s", seed=case["seed"], resume=False)
                metric = resolve_metric(program, context)
                candidates = golden_candidates(case, runner)
                search = TrialSearch(
                    handle,
                    plan,
                    candidates,
                    runner,
                    kept,
                    _scorer(metric, 1, 10, lambda text: None),
                    seed=case["seed"],
                    rng=shared_rng(case),
                    on_record=records.append,
                )
                await search.run_baseline()
                await search.run()
                best = best_full_trial(handle.study)
                assert best is not None
                candidates.apply(runner, {k: int(v) for k, v in best.params.items()})
                final = {n: (p.signature.instructions, p.demos) for n, p in named_predictors(runner)}
                calls = context.meter.totals().calls  # the cache answers a program evaluated twice
                return {"study": handle.study, "final": final, "requests": len(server.requests), "calls": calls}
            finally:
                await context.aclose()

        result = asyncio.run(go())
    result["records"] = records
    return result


def trial_view(trial: Any) -> dict[str, Any]:
    return {"number": trial.number, "params": dict(trial.params), "value": trial.value}


def golden_log(case: dict[str, Any]) -> list[tuple[str, float]]:
    """DSPy's trial log as (kind, score) in order."""
    rows = []
    for _, entry in sorted(case["trial_logs"].items(), key=lambda item: int(item[0])):
        rows.append(("minibatch", entry["mb_score"]) if "mb_score" in entry else ("full", entry["full_eval_score"]))
    return rows


@pytest.mark.parametrize("case_id", ["light_predict", "explicit_cot_two_predictors_minibatch", "zeroshot_predict"])
def test_search_reproduces_dspys_study(case_id: str, tmp_path: Path) -> None:
    case = CASES[case_id]
    result = search_case(case_id, tmp_path)
    trials = result["study"].trials
    assert [trial_view(t) for t in trials] == [
        {"number": t["number"], "params": t["params"], "value": t["value"]} for t in case["study_trials"]
    ]
    # The records (trials.jsonl, the table) follow DSPy's trial log: kinds and scores in order.
    records = result["records"]
    assert [("minibatch" if r["kind"] == "minibatch" else "full", r["score"]) for r in records] == golden_log(case)
    assert records[0]["kind"] == "baseline" and records[0]["trial"] == 0
    assert (
        records[-1]["trial"]
        == len([t for t in case["study_trials"] if t["number"]]) - records[-1]["number"] + records[-1]["trial"]
    )
    assert max(r["best_score"] for r in records) == case["best_score"]
    # The final program: DSPy's chosen instructions and demos per predictor.
    state = case["final_state"]
    states = [state] if "signature" in state else [v for k, v in state.items() if k != "metadata"]
    for (instructions, demos), saved in zip(result["final"].values(), states, strict=True):
        assert instructions == saved["signature"]["instructions"]
        assert demos == saved["demos"]
    # DSPy's task requests during the trials (the baseline and every evaluation), none bootstrapping.
    trial_requests = case["request_order"][-1][1]
    assert result["calls"] == trial_requests
    assert result["requests"] < trial_requests


def test_minibatch_trials_record_their_minibatch_and_full_evaluations_follow_the_cadence(tmp_path: Path) -> None:
    result = search_case("explicit_cot_two_predictors_minibatch", tmp_path)
    kinds = [(t.number, t.user_attrs["kind"], bool(t.user_attrs.get("added"))) for t in result["study"].trials]
    assert kinds == [
        (0, "baseline", True),
        (1, "minibatch", False),
        (2, "minibatch", False),
        (3, "minibatch", False),
        (4, "full", True),
        (5, "minibatch", False),
        (6, "minibatch", False),
        (7, "minibatch", False),
        (8, "full", True),
        (9, "minibatch", False),
        (10, "full", True),
    ]
    for record in result["records"]:
        if record["kind"] == "minibatch":
            assert len(record["minibatch"]) == 6 and len(set(record["minibatch"])) == 6
    assert [r["trial"] for r in result["records"]] == [0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 7]


def test_two_runs_with_one_seed_give_the_same_trials(tmp_path: Path) -> None:
    first = search_case("explicit_cot_two_predictors_minibatch", tmp_path, name="a")
    second = search_case("explicit_cot_two_predictors_minibatch", tmp_path, name="b")
    assert [trial_view(t) for t in first["study"].trials] == [trial_view(t) for t in second["study"].trials]
    assert first["records"] == second["records"]
    assert first["final"] == second["final"]


def test_a_failed_evaluation_scores_zero_and_says_so(tmp_path: Path) -> None:
    from tests.lm_server import Reply

    case = CASES["light_predict"]
    valset = [Example(**row).with_inputs("message") for row in DEV_ROWS[:3]]
    notices: list[str] = []
    with LMServer() as server:
        server.rule = lambda request, attempt: Reply(status=500, json={"error": {"message": "down"}})
        program = program_for(case, tmp_path, server)
        context = RunContext(cache_dir=tmp_path / "cache", history=False)

        async def go() -> float:
            try:
                score = _scorer(resolve_metric(program, context), 1, 0, notices.append)
                return await score(ProgramRunner(program, context), valset)
            finally:
                await context.aclose()

        assert asyncio.run(go()) == 0.0
    assert notices and "scores 0" in notices[0]


def test_a_resume_finds_its_study_or_starts_one_in_an_empty_storage(tmp_path: Path) -> None:
    # Killed before its study existed: the resume creates it.
    handle = open_study(run_dir=tmp_path, storage=None, name="s1", seed=9, resume=True)
    assert handle.created
    handle.write_study_file(tmp_path)
    # The run folder's study.json names the study a resume continues, whatever name is derived now.
    again = open_study(run_dir=tmp_path, storage=None, name="derived-now", seed=9, resume=True)
    assert again.name == "s1" and not again.created
    (tmp_path / "study.json").unlink()
    with pytest.raises(UsageError, match=r"no study 'other'.*it has: s1"):
        open_study(run_dir=tmp_path, storage=None, name="other", seed=9, resume=True)
