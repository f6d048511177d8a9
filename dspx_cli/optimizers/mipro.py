"""MIPROv2 (`optimizer: {type: mipro_v2}`): instructions and demo sets chosen by an optuna search.

DSPy 3.4.1's `MIPROv2.compile`, step by step (docs/mipro-design.md 1):

1. plan (mipro_plan.py): one `random.Random(seed)` for the whole run; with `auto` the valset draw
   is its first use;
2. demo-set candidates (`create_demo_sets`, the same RNG), under the task LM;
3. instruction candidates (`propose_instructions`, the same RNG), under the prompt LM;
4. the baseline, then the trials (mipro_search.py), on the study of study.py;
5. the best full-evaluated choice is set on the runner: each predictor's instructions
   (`signature.instructions`) and demos, so compile's state file carries them.

The study is stored (RUN_DIR/study.db unless `--storage`), with the candidates and every trial's
kind, minibatch and score, so `dspx compile --resume RUN_DIR` continues a killed run without
running a finished trial again, and several processes can share one study (`--storage`,
`--study`): the first sets it up, the others wait for that and then take trials. Each finished
trial is a line of RUN_DIR/trials.jsonl and a call of `job.on_trial` (the CLI's trial table).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.core import Example
from dspx_cli.core.json_values import jsonable
from dspx_cli.errors import UsageError
from dspx_cli.evaluate.evaluator import evaluate
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.optimizers.demo_sets import create_demo_sets
from dspx_cli.optimizers.mipro_plan import MiproPlan, plan_mipro, split_valset
from dspx_cli.optimizers.mipro_search import BASELINE, Candidates, TrialSearch, best_full_trial, restored_rng
from dspx_cli.optimizers.proposer import propose_instructions
from dspx_cli.optimizers.registry import CompileJob
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.optimizers.study import (
    CANDIDATES,
    KIND,
    default_study_name,
    finished_objective_trials,
    open_study,
)
from dspx_cli.program.runner import ProgramRunner

__all__ = ["compile_mipro_v2"]

CANDIDATES_FILE = "candidates.json"
TRIALS_FILE = "trials.jsonl"


@dataclass(frozen=True)
class _Job:
    """The CompileJob fields MIPROv2 reads beyond the common ones, with a notice that always works."""

    prompt_lm: Any
    program_text: str
    run_dir: Path | None
    storage: str | None
    study_name: str | None
    resume: bool
    notice: Callable[[str], None]
    on_trial: Callable[[dict[str, Any]], None] | None

    @classmethod
    def of(cls, job: CompileJob) -> _Job:
        return cls(
            prompt_lm=job.prompt_lm,
            program_text=job.program_text,
            run_dir=job.run_dir,
            storage=job.storage,
            study_name=job.study_name,
            resume=job.resume,
            notice=job.notice or (lambda text: None),
            on_trial=job.on_trial,
        )


def _scorer(
    metric: Metric, concurrency: int, max_errors: int | None, notice: Callable[[str], None]
) -> Callable[[ProgramRunner, Sequence[Example]], Any]:
    async def score(program: ProgramRunner, examples: Sequence[Example]) -> float:
        """DSPy's Evaluate score: a percentage, two decimals; a failed evaluation scores 0."""
        try:
            evaluation = await evaluate(program, examples, metric, concurrency=concurrency, max_errors=max_errors)
        except Exception as exc:  # noqa: BLE001 - DSPy's eval_candidate_program: the trial scores 0
            notice(f"warning: mipro_v2: a trial's evaluation failed ({type(exc).__name__}: {exc}); it scores 0\n")
            return 0.0
        if evaluation.aborted:
            notice(f"warning: mipro_v2: a trial's evaluation {evaluation.aborted}; it scores 0\n")
            return 0.0
        return evaluation.percent

    return score


def _plan_record(plan: MiproPlan) -> dict[str, Any]:
    return {
        "zeroshot": plan.zeroshot,
        "num_trials": plan.num_trials,
        "num_instruction_candidates": plan.num_instruction_candidates,
        "num_demo_sets": plan.num_demo_sets,
        "minibatch": plan.minibatch,
        "minibatch_size": plan.minibatch_size,
        "minibatch_full_eval_steps": plan.full_eval_steps,
        "valset_indexes": list(plan.valset_indexes),
    }


async def _propose(
    runner: ProgramRunner,
    trainset: list[Example],
    settings: dict[str, Any],
    job: CompileJob,
    extras: _Job,
    plan: MiproPlan,
    rng: random.Random,
    concurrency: int,
) -> Candidates:
    """Demo sets, then instruction proposals: both draw from the shared `rng`, in DSPy's order."""
    if extras.prompt_lm is None:
        raise UsageError("mipro_v2 needs a prompt LM (prompt_lm: in the program file, or --prompt-lm)")
    boot, labeled = plan.bootstrap_quota(settings["max_bootstrapped_demos"], settings["max_labeled_demos"])
    extras.notice(f"mipro_v2: bootstrapping {plan.num_demo_sets} demo sets\n")
    telemetry = runner.telemetry
    with telemetry.span("bootstrap demo sets", {"dspx.mipro.demo_sets": plan.num_demo_sets}):
        demo_sets = await create_demo_sets(
            runner,
            trainset,
            job.metric,
            rng,
            num_sets=plan.num_demo_sets,
            max_bootstrapped_demos=boot,
            max_labeled_demos=labeled,
            metric_threshold=settings.get("metric_threshold"),
            max_errors=settings.get("max_errors"),
            teacher=job.teacher,
            teacher_compiled=job.teacher_compiled,
            concurrency=concurrency,
        )
    extras.notice(f"mipro_v2: proposing {plan.num_instruction_candidates} instructions per predictor\n")
    attributes = {"dspx.mipro.instruction_candidates": plan.num_instruction_candidates}
    with telemetry.span("propose instructions", attributes):
        instructions = await propose_instructions(
            runner,
            trainset,
            demo_sets,
            prompt_lm=extras.prompt_lm,
            rng=rng,
            num_candidates=plan.num_instruction_candidates,
            init_temperature=settings.get("init_temperature", 1.0),
            program_text=extras.program_text,
            view_data_batch_size=settings.get("view_data_batch_size", 10),
            program_aware=settings.get("program_aware_proposer", True),
            data_aware=settings.get("data_aware_proposer", True),
            tip_aware=settings.get("tip_aware_proposer", True),
            fewshot_aware=settings.get("fewshot_aware_proposer", True),
            warn=extras.notice,
        )
    names = [name for name, _ in named_predictors(runner)]
    return Candidates(
        names=names,
        instructions={name: list(instructions[name]) for name in names},
        # Zero-shot: the sets only fed the proposer; trials choose instructions alone.
        demo_sets=None if plan.zeroshot else jsonable({name: demo_sets.sets[name] for name in names}),
        demo_seeds=list(demo_sets.seeds),
    )


class _TrialLog:
    """RUN_DIR/trials.jsonl, one line per finished trial (appended: a resume adds to it), and the
    job's `on_trial` (the CLI's table)."""

    def __init__(self, run_dir: Path | None, on_trial: Callable[[dict[str, Any]], None] | None) -> None:
        self.path = run_dir / TRIALS_FILE if run_dir is not None else None
        self.on_trial = on_trial

    def __call__(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.on_trial is not None:
            self.on_trial(record)


async def compile_mipro_v2(runner: ProgramRunner, settings: dict[str, Any], job: CompileJob) -> dict[str, Any]:
    """The registry's entry point (optimizers/registry.py); `settings` without `teacher` (see `job`)."""
    settings = dict(settings)
    extras = _Job.of(job)
    seed = int(settings.get("seed", 9))
    concurrency = settings.get("num_threads") or job.concurrency
    trainset, full_valset = split_valset(job.trainset, job.valset)
    names = [name for name, _ in named_predictors(runner)]
    if not names:
        raise UsageError("mipro_v2: the program has no predictor to optimize")
    rng = random.Random(seed)
    plan = plan_mipro(settings, len(names), len(full_valset), rng)
    valset = [full_valset[i] for i in plan.valset_indexes]

    handle = open_study(
        run_dir=extras.run_dir,
        storage=extras.storage,
        name=extras.study_name or default_study_name(extras.program_text, settings),
        seed=seed,
        resume=extras.resume,
    )
    if extras.run_dir is not None:
        extras.run_dir.mkdir(parents=True, exist_ok=True)
        handle.write_study_file(extras.run_dir)
    extras.notice(f"mipro_v2: study {handle.name} in {handle.storage_url or 'memory'}\n")
    log = _TrialLog(extras.run_dir, extras.on_trial)
    score = _scorer(job.metric, concurrency, settings.get("max_errors"), extras.notice)

    shared_rng: random.Random | None
    if handle.created or extras.resume:
        if extras.resume:
            stale = handle.fail_stale_trials()
            done = len(finished_objective_trials(handle.study))
            extras.notice(
                f"mipro_v2: resuming: {done} of {plan.num_trials} trials finished"
                + (f", {stale} interrupted one(s) dropped" if stale else "")
                + "\n"
            )
        if CANDIDATES in handle.study.user_attrs:
            candidates = _stored_candidates(handle.candidates(), names, handle.name)
        else:
            candidates = await _propose(runner, trainset, settings, job, extras, plan, rng, concurrency)
            record = {**candidates.to_json(), "plan": _plan_record(plan)}
            handle.store_setup(record, rng)
            # What a resumed or second process will read: use exactly that here too.
            candidates = _stored_candidates(json.loads(json.dumps(record)), names, handle.name)
        search = TrialSearch(handle, plan, candidates, runner, valset, score, seed=seed, rng=None, on_record=log)
        if not any(t.user_attrs.get(KIND) == BASELINE for t in handle.study.get_trials(deepcopy=False)):
            await search.run_baseline()
        handle.mark_setup_done()
        shared_rng = restored_rng(handle)
    else:
        handle.wait_for_setup(extras.notice)
        candidates = _stored_candidates(handle.candidates(), names, handle.name)
        shared_rng = None  # a worker beside the process that set the study up: per-trial minibatch RNGs
    if extras.run_dir is not None:
        (extras.run_dir / CANDIDATES_FILE).write_text(
            json.dumps(handle.candidates(), indent=2, ensure_ascii=False) + "\n"
        )

    search = TrialSearch(handle, plan, candidates, runner, valset, score, seed=seed, rng=shared_rng, on_record=log)
    await search.run()

    best = best_full_trial(handle.study)
    if best is None:
        raise UsageError(f"mipro_v2: study {handle.name} has no fully evaluated trial")
    params = {name: int(best.params[name]) for name in candidates.param_names()}
    candidates.apply(runner, params)
    trials = handle.study.get_trials(deepcopy=False)
    return {
        "best_score": best.value,
        "best_trial": best.number,
        "best_params": candidates.describe(params),
        "instructions": candidates.chosen_instructions(params),
        "num_trials": plan.num_trials,
        "objective_trials": len(finished_objective_trials(handle.study)),
        "trials": len(trials),
        "minibatch": plan.minibatch,
        "valset": len(valset),
        "candidates": {name: len(candidates.instructions[name]) for name in names},
        "demo_sets": {name: len(sets) for name, sets in (candidates.demo_sets or {}).items()},
        "study": handle.name,
    }


def _stored_candidates(record: dict[str, Any], names: list[str], study: str) -> Candidates:
    try:
        candidates = Candidates.from_json(record)
    except ValueError as exc:
        raise UsageError(f"study {study}: its stored candidates are not what dspx compile writes ({exc})") from None
    if candidates.names != names:
        raise UsageError(
            f"study {study} was set up for predictors {', '.join(candidates.names)}, "
            f"this program has {', '.join(names)}: use another --study or run folder"
        )
    return candidates
