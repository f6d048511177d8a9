"""MIPROv2's search over instruction and demo-set choices: optuna trials, minibatches, full evaluations.

DSPy 3.4.1: `MIPROv2._optimize_prompt_parameters` (docs/mipro-design.md 1.5), driven here with
optuna's ask/tell instead of `study.optimize`, so trials can be counted, resumed and shared:

- Parameters per predictor `i`: `"{i}_predictor_instruction"`, then (unless zero-shot)
  `"{i}_predictor_demos"`, each a categorical over candidate indexes, suggested in that order.
- The baseline (every parameter 0) is evaluated on the full valset and added as trial 0.
- An objective trial is scored on a minibatch (`rng.sample(range(len(valset)), size)`) or on the
  whole valset. With minibatches, after objective trial `trial_num = number + 1` a full evaluation
  is due when `trial_num % (steps + 1) == 0` or `trial_num == adjusted_num_trials - 1`: the
  combination with the highest mean minibatch score not yet fully evaluated (ties: the first seen)
  is scored on the full valset and added to the study as a finished trial.
- The best program is the best full-valset score (baseline, full objective trials, added full
  evaluations), ties keeping the earlier trial. Scores are DSPy's: percentages, two decimals.
- A trial whose evaluation fails scores 0 (DSPy's `eval_candidate_program`).

Telling the objective trial before adding its full evaluation (DSPy adds it while the objective
trial is still running) gives the same trial numbers and the same suggestions: optuna's sampler
runs only in `ask`, and nothing is asked in between. The golden `study_trials` check it.

Everything is read back from the study (scores, kinds, minibatch means, the best trial), so a
resumed process or a second worker continues from what is stored (study.py).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dspx_cli.core import Example
from dspx_cli.core.telemetry import AttributeValue, Span
from dspx_cli.errors import UsageError
from dspx_cli.optimizers.labeled import clone_runner
from dspx_cli.optimizers.mipro_plan import MiproPlan
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.optimizers.study import (
    ADDED,
    KIND,
    StudyHandle,
    finished_objective_trials,
    rng_from_state,
    rng_state,
    trials_in_order,
)
from dspx_cli.program.runner import ProgramRunner

if TYPE_CHECKING:
    import optuna

__all__ = ["Candidates", "TrialSearch", "best_full_trial"]

BASELINE, MINIBATCH, FULL = "baseline", "minibatch", "full"
MB_INDEXES = "minibatch"  # trial user attribute: the valset positions of a minibatch trial
Params = dict[str, int]
# (runner, examples) -> DSPy's score, a percentage with two decimals; 0.0 when the evaluation failed.
Scorer = Callable[[ProgramRunner, Sequence[Example]], Awaitable[float]]


@dataclass
class Candidates:
    """What the trials choose from, per predictor (names in `named_predictors` order)."""

    names: list[str]
    instructions: dict[str, list[str]]
    demo_sets: dict[str, list[list[dict[str, Any]]]] | None  # None: zero-shot, instructions only
    demo_seeds: list[int] | None = None  # DSPy's labels of the demo sets (-3 zero-shot, ...)

    def to_json(self) -> dict[str, Any]:
        return {
            "predictors": self.names,
            "instructions": self.instructions,
            "demo_sets": self.demo_sets,
            "demo_seeds": self.demo_seeds,
        }

    @classmethod
    def from_json(cls, data: Any) -> Candidates:
        """Candidates read back from a study, which may not be one dspx wrote: ValueError unless
        every predictor has instructions (text) and, when there are demo sets, lists of objects."""
        names = data.get("predictors") if isinstance(data, dict) else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("no predictor names")
        instructions, demo_sets = data.get("instructions"), data.get("demo_sets")
        for name in names:
            texts = instructions.get(name) if isinstance(instructions, dict) else None
            if not isinstance(texts, list) or not texts or not all(isinstance(x, str) for x in texts):
                raise ValueError(f"no instructions for {name}")
            if demo_sets is None:
                continue
            sets = demo_sets.get(name) if isinstance(demo_sets, dict) else None
            if (
                not isinstance(sets, list)
                or not sets
                or not all(isinstance(s, list) and all(isinstance(d, dict) for d in s) for s in sets)
            ):
                raise ValueError(f"no demo sets for {name}")
        return cls(names, dict(instructions), demo_sets, data.get("demo_seeds"))

    def param_names(self) -> list[str]:
        """Suggestion order: per predictor its instruction, then its demo set."""
        names: list[str] = []
        for i, _ in enumerate(self.names):
            names.append(f"{i}_predictor_instruction")
            if self.demo_sets is not None:
                names.append(f"{i}_predictor_demos")
        return names

    def choices(self, param: str) -> int:
        index, _, what = param.partition("_predictor_")
        name = self.names[int(index)]
        if what == "instruction":
            return len(self.instructions[name])
        assert self.demo_sets is not None
        return len(self.demo_sets[name])

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {param: CategoricalDistribution(list(range(self.choices(param)))) for param in self.param_names()}

    def baseline_params(self) -> Params:
        """Every choice 0, instructions first (DSPy's `default_params` order)."""
        params = {f"{i}_predictor_instruction": 0 for i, _ in enumerate(self.names)}
        if self.demo_sets is not None:
            params.update({f"{i}_predictor_demos": 0 for i, _ in enumerate(self.names)})
        return params

    def apply(self, runner: ProgramRunner, params: Params) -> None:
        """Set the chosen instruction and demo set of every predictor of `runner`, in place."""
        for i, (name, predictor) in enumerate(named_predictors(runner)):
            text = self.instructions[name][_choice(params, f"{i}_predictor_instruction", len(self.instructions[name]))]
            predictor.signature = replace(predictor.signature, instructions=text)
            if self.demo_sets is not None:
                demos = self.demo_sets[name][_choice(params, f"{i}_predictor_demos", len(self.demo_sets[name]))]
                predictor.demos = [dict(demo) for demo in demos]

    def describe(self, params: Params) -> dict[str, dict[str, int | None]]:
        """{predictor: {"instruction": i, "demos": j or None}} (trial records, the trial table)."""
        return {
            name: {
                "instruction": params.get(f"{i}_predictor_instruction", 0),
                "demos": params.get(f"{i}_predictor_demos") if self.demo_sets is not None else None,
            }
            for i, name in enumerate(self.names)
        }

    def chosen_instructions(self, params: Params) -> dict[str, str]:
        return {
            name: self.instructions[name][
                _choice(params, f"{i}_predictor_instruction", len(self.instructions[name]), default=0)
            ]
            for i, name in enumerate(self.names)
        }


def _choice(params: Params, key: str, size: int, default: int | None = None) -> int:
    """A trial's choice, checked: trials come back from a study.db a run folder may have brought
    (a hostile one could hold any number, and a negative index would pick from the end)."""
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise UsageError(f"study: trial parameter {key}={value!r} is not one of its {size} candidates")
    return value


def best_full_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best full-valset score so far; ties keep the earlier trial (DSPy replaces on `>` only)."""
    return _best_of(trials_in_order(study, _complete()))


def _best_of(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    best = None
    for trial in trials:  # in trial-number order
        if trial.state.name != "COMPLETE" or trial.user_attrs.get(KIND) not in (BASELINE, FULL):
            continue
        if best is None or _value(trial) > _value(best):
            best = trial
    return best


def _finished_objective(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state.name == "COMPLETE" and not trial.user_attrs.get(ADDED) and bool(trial.user_attrs.get(KIND))


def _complete() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE,)


def _value(trial: optuna.trial.FrozenTrial) -> float:
    return float(trial.value) if trial.value is not None else 0.0


class TrialSearch:
    """Runs objective trials until the study holds `plan.num_trials` finished ones."""

    def __init__(
        self,
        handle: StudyHandle,
        plan: MiproPlan,
        candidates: Candidates,
        runner: ProgramRunner,
        valset: Sequence[Example],
        score: Scorer,
        *,
        seed: int,
        rng: random.Random | None,
        on_record: Callable[[dict[str, Any]], None] = lambda record: None,
    ) -> None:
        self.handle = handle
        self.study = handle.study
        self.plan = plan
        self.candidates = candidates
        self.runner = runner
        self.valset = list(valset)
        self.score = score
        self.seed = seed
        # The shared stream (DSPy's self.rng) in a single-process run; None: a worker joining another
        # process's study, which draws each minibatch from Random(f"{seed}:{trial number}").
        self.rng = rng
        self.on_record = on_record
        self.distributions = candidates.distributions()
        self.param_names = candidates.param_names()
        self._choices = {name: list(range(candidates.choices(name))) for name in self.param_names}

    # ----- the pieces ----------------------------------------------------------------------------

    def program_for(self, params: Params) -> ProgramRunner:
        candidate = clone_runner(self.runner)
        self.candidates.apply(candidate, params)
        return candidate

    async def run_baseline(self) -> None:
        """The unchanged program on the full valset, added as a finished trial with every choice 0."""
        import optuna

        with self._span("baseline", self.candidates.baseline_params(), BASELINE, self.valset) as span:
            score = await self.score(self.runner, self.valset)
            span.set("dspx.score.percent", score)
        self.study.add_trial(
            optuna.trial.create_trial(
                params=self.candidates.baseline_params(),
                distributions=self.distributions,
                value=score,
                user_attrs={KIND: BASELINE, ADDED: True},
            )
        )
        self._record(None, BASELINE)

    async def run(self) -> None:
        """Objective trials until `num_trials` have finished in the study (any process's count)."""
        await self._owed_full_evaluations()
        while await self._one_trial():
            pass
        await self._closing_full_evaluation()

    # ----- one objective trial -------------------------------------------------------------------

    async def _one_trial(self) -> bool:
        from optuna.trial import TrialState

        if self._claimed() >= self.plan.num_trials:
            return False
        trial = self.study.ask()
        if self._claimed(upto=trial.number) > self.plan.num_trials:
            # Another worker asked for the last trial in the meantime: this one is surplus.
            self.study.tell(trial, state=TrialState.FAIL)
            return False
        try:
            params = {name: int(trial.suggest_categorical(name, self._choices[name])) for name in self.param_names}
            kind = MINIBATCH if self.plan.minibatch else FULL
            trial.set_user_attr(KIND, kind)
            examples = self.valset
            rng = self.rng if self.rng is not None else random.Random(f"{self.seed}:{trial.number}")
            if self.plan.minibatch:
                indexes = rng.sample(range(len(self.valset)), self.plan.minibatch_size)
                trial.set_user_attr(MB_INDEXES, indexes)
                examples = [self.valset[i] for i in indexes]
            with self._span(f"trial {trial.number}", params, kind, examples) as span:
                score = await self.score(self.program_for(params), examples)
                span.set("dspx.score.percent", score)
            if self.rng is not None:
                trial.set_user_attr("rng_state", rng_state(self.rng))
            finished = len(finished_objective_trials(self.study)) + 1
            due = self.plan.full_eval_due(trial.number + 1) or (
                self.plan.minibatch and finished >= self.plan.num_trials
            )
            if due:
                trial.set_user_attr("full_eval_due", True)
        except BaseException:
            # Interrupted (or a bug): the trial counts for nothing; a resume runs another in its place.
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        self.study.tell(trial, score)
        self._record(trial.number, kind)
        if due:
            await self._full_evaluation(after=trial.number)
        return True

    def _claimed(self, upto: int | None = None) -> int:
        """Objective trials finished or running (up to trial number `upto`)."""
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        return sum(
            1
            for t in self.study.get_trials(deepcopy=False, states=states)
            if not t.user_attrs.get(ADDED)
            and (upto is None or t.number <= upto)
            and (t.state != TrialState.COMPLETE or t.user_attrs.get(KIND))
        )

    # ----- full evaluations ----------------------------------------------------------------------

    async def _full_evaluation(self, *, after: int) -> None:
        """DSPy's `_perform_full_evaluation`: the best mean minibatch combination not yet fully
        evaluated, on the full valset, added to the study."""
        import optuna

        means: dict[tuple[int, ...], list[float]] = {}
        first_params: dict[tuple[int, ...], Params] = {}
        evaluated: set[tuple[int, ...]] = set()
        for trial in trials_in_order(self.study, _complete()):
            key = tuple(int(trial.params[name]) for name in self.param_names)
            if trial.user_attrs.get(ADDED):
                if trial.user_attrs.get(KIND) == FULL:
                    evaluated.add(key)
            elif trial.user_attrs.get(KIND) == MINIBATCH:
                means.setdefault(key, []).append(_value(trial))
                first_params.setdefault(key, {name: int(trial.params[name]) for name in self.param_names})
        ranked = sorted(
            means, key=lambda k: sum(means[k]) / len(means[k]), reverse=True
        )  # stable: first seen wins ties
        remaining = [key for key in ranked if key not in evaluated]
        if not remaining:
            return  # every combination tried is fully evaluated already (DSPy would raise here)
        params = first_params[remaining[0]]
        with self._span("full evaluation", params, FULL, self.valset) as span:
            span.set("dspx.trial.after", after)
            score = await self.score(self.program_for(params), self.valset)
            span.set("dspx.score.percent", score)
        self.study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=self.distributions,
                value=score,
                user_attrs={KIND: FULL, ADDED: True, "after": after},
            )
        )
        self._record(None, FULL, after=after)

    async def _owed_full_evaluations(self) -> None:
        """After a kill during a full evaluation: the objective trial that owed it is finished,
        its full evaluation is not; run it now."""
        trials = trials_in_order(self.study, _complete())
        paid = {t.user_attrs.get("after") for t in trials if t.user_attrs.get(ADDED)}
        for trial in trials:
            if trial.user_attrs.get("full_eval_due") and trial.number not in paid:
                await self._full_evaluation(after=trial.number)

    async def _closing_full_evaluation(self) -> None:
        """With minibatches the run ends on a full evaluation (DSPy's last cadence step). When
        trials were renumbered (a resume, several workers) the cadence may have missed it."""
        from optuna.trial import TrialState

        if not self.plan.minibatch:
            return
        if self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return  # another worker is still on a trial: the last one to finish closes
        objective = finished_objective_trials(self.study)
        if len(objective) < self.plan.num_trials:
            return
        if objective[-1].user_attrs.get("full_eval_due"):
            return  # the process that ran the last trial runs (or, killed, a resume runs) its full evaluation
        last = objective[-1].number
        if any(t.user_attrs.get(ADDED) and t.number > last for t in trials_in_order(self.study, _complete())):
            return
        await self._full_evaluation(after=last)

    # ----- spans ---------------------------------------------------------------------------------

    def _span(self, name: str, params: Params, kind: str, examples: Sequence[Example]) -> Span:
        """The span of one scoring of a combination (its examples' spans are children): which
        candidate each predictor got (indexes into candidates.json), on how many examples."""
        predictors = len(self.candidates.names)
        attributes: dict[str, AttributeValue] = {
            "dspx.trial.kind": kind,
            "dspx.trial.instructions": [int(params.get(f"{i}_predictor_instruction", 0)) for i in range(predictors)],
            "dspx.examples": len(examples),
        }
        if self.candidates.demo_sets is not None:
            attributes["dspx.trial.demo_sets"] = [int(params.get(f"{i}_predictor_demos", 0)) for i in range(predictors)]
        return self.runner.telemetry.span(name, attributes)

    # ----- records -------------------------------------------------------------------------------

    def _record(self, number: int | None, kind: str, *, after: int | None = None) -> None:
        """Report trial `number`, or (None) the trial this process just added, from one read of the
        study. An added trial is found by its attributes: another worker may have asked for a
        trial since, so the study's last trial need not be it."""
        trials = trials_in_order(self.study)
        if number is None:
            trial = next(
                t
                for t in reversed(trials)
                if t.user_attrs.get(ADDED) and t.user_attrs.get(KIND) == kind and t.user_attrs.get("after") == after
            )
        else:
            trial = next(t for t in trials if t.number == number)
        params = {name: int(trial.params[name]) for name in self.param_names}
        best = _best_of(trials)
        record: dict[str, Any] = {
            "number": trial.number,
            "kind": kind,
            "added": bool(trial.user_attrs.get(ADDED)),  # the baseline or a full evaluation, not a trial of its own
            "params": self.candidates.describe(params),
            "instructions": self.candidates.chosen_instructions(params),
            "score": _value(trial),
            "best_score": _value(best) if best is not None else None,
            "trial": sum(1 for t in trials if _finished_objective(t)),
            "of": self.plan.num_trials,
        }
        if kind == MINIBATCH:
            record["minibatch"] = list(trial.user_attrs.get(MB_INDEXES, []))
        self.on_record(record)


def restored_rng(handle: StudyHandle) -> random.Random:
    """The shared RNG as the last finished trial left it (a resumed single-process run draws the
    minibatches an uninterrupted one would), else as the setup left it."""
    try:
        for trial in reversed(trials_in_order(handle.study, _complete())):
            state = trial.user_attrs.get("rng_state")
            if state is not None:
                return rng_from_state(state)
        return handle.rng_after_setup()
    except (KeyError, TypeError, ValueError, IndexError):
        raise UsageError(f"study {handle.name}: its random-number state is not one dspx compile wrote") from None
