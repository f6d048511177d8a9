"""MIPROv2's grounded instruction proposer (DSPy 3.4.1: dspy/propose/grounded_proposer.py and
MIPROv2._propose_instructions), on dspx's Predict/ChatAdapter stack.

Once per run: the program code (program_description.py) and the dataset summary
(dataset_summary.py). Then, per predictor in program order, one proposal per demo set (at most
`num_candidates`; without demo sets, `num_candidates` proposals):

1. with tips on, a tip drawn from the shared RNG (`none` removes the `tip` field); then a rollout
   id, `randint(0, 10**9)` from the same RNG, which keys the cache of the proposal's calls (it is
   never sent). Calls run at `init_temperature`.
2. `task_demos`: up to three bootstrapped (`augmented`) demos, from this set, then the later sets,
   then the earlier ones, one `Prefix: value` line per signature field; the first set, or no demo
   found, gives `No task demos provided.`
3. program-aware: DescribeProgram then DescribeModule, asked again for every proposal. A failure
   keeps DSPy's fall-backs (`Not available` / `Not provided`) for this proposal only.
4. GenerateSingleModuleInstruction, then `strip_prefix` twice (DSPy strips in two places).

Candidate 0 of every predictor is then the original instruction: the proposal made for the first
set is paid for and discarded, as in DSPy.

One departure (docs/mipro-design.md, section 3): DSPy dies when a proposal does not parse (after
the JSON fallback), which is what a 135M prompt model does. Here the proposal is asked once more
with rollout id + 1 (not drawn from the RNG, so every later draw stays DSPy's), and if that fails
too it is dropped with a warning: the predictor gets fewer candidates, and the run goes on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dspx_cli.core import Example, Signature
from dspx_cli.errors import AdapterParseError
from dspx_cli.lm.base import LM
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.trace import sampling_override
from dspx_cli.optimizers.ask_twice import ask_twice
from dspx_cli.optimizers.proposer.dataset_summary import create_dataset_summary
from dspx_cli.optimizers.proposer.program_description import module_line, program_code
from dspx_cli.optimizers.proposer.signatures import DESCRIBE_MODULE, DESCRIBE_PROGRAM, instruction_signature
from dspx_cli.optimizers.proposer.text import strip_prefix
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.runner import ProgramRunner

__all__ = ["TIPS", "DemoSetsLike", "propose_instructions", "task_demos_text"]

# DSPy's tips, in DSPy's order: the RNG picks by position, so the order is part of the stream.
TIPS: dict[str, str] = {
    "none": "",
    "creative": "Don't be afraid to be creative when creating the new instruction!",
    "simple": "Keep the instruction clear and concise.",
    "description": "Make sure your instruction is very informative and descriptive.",
    "high_stakes": "The instruction should include a high stakes scenario in which the LM must solve the task!",
    "persona": 'Include a persona that is relevant to the task in the instruction (ie. "You are a ...")',
}
NUM_DEMOS_IN_CONTEXT = 3  # MIPROv2's BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT
NO_DEMOS = "No task demos provided."
NOT_AVAILABLE = "Not available"
NOT_PROVIDED = "Not provided"
ROLLOUT_ID_MAX = 10**9
WARNING = "warning: mipro_v2: "  # the compile command's notice style

Demo = Mapping[str, Any]


class DemoSetsLike(Protocol):
    """What the proposer reads of optimizers/demo_sets.py's `DemoSets`: per predictor name, one
    demo list per candidate set, in seed order."""

    @property
    def sets(self) -> Mapping[str, Sequence[Sequence[Demo]]]: ...


def task_demos_text(sets: Sequence[Sequence[Demo]], set_index: int, signature: Signature) -> str:
    """DSPy's `task_demos` for the proposal made with demo set `set_index`."""
    if set_index == 0 or set_index >= len(sets):
        return NO_DEMOS
    ordered = [sets[set_index], *sets[set_index + 1 :], *sets[:set_index]]
    shown: list[str] = []
    for demos in ordered:
        for demo in demos:
            if "augmented" in demo:  # DSPy tests the key, not its value
                lines = [f"{field.prefix} {demo.get(name)}" for name, field in signature.fields.items()]
                shown.append("\n".join(lines))
                if len(shown) >= NUM_DEMOS_IN_CONTEXT:
                    return "\n\n".join(shown) + "\n\n"
    text = "\n\n".join(shown) + "\n\n"
    return text if text.strip() else NO_DEMOS


@dataclass
class _Proposer:
    prompt_lm: LM
    options: dict[str, Any]  # Predict settings of the prompt LM (max_tokens, extra)
    init_temperature: float
    program_code: str | None  # None: not program-aware
    data_summary: str | None  # None: no dataset description field
    warn: Callable[[str], None]
    described_failed: bool = False  # warned once per run, not once per proposal

    def predict(self, signature: Signature) -> Predict:
        return Predict(signature, self.prompt_lm, temperature=self.init_temperature, n=1, **self.options)

    async def describe(self, predictor: Predict, task_demos: str) -> tuple[str, str, str]:
        """(program_description, module, module_description), with DSPy's fall-backs."""
        description, module, module_description = NOT_AVAILABLE, NOT_PROVIDED, NOT_PROVIDED
        try:
            described = await self.predict(DESCRIBE_PROGRAM).acall(
                program_code=self.program_code, program_example=task_demos
            )
            description = strip_prefix(str(described["program_description"]))
            module = module_line(predictor)
            described = await self.predict(DESCRIBE_MODULE).acall(
                program_code=self.program_code,
                program_example=task_demos,
                program_description=description,
                module=module,
            )
            module_description = str(described["module_description"])
        except Exception as exc:  # noqa: BLE001 - DSPy: any failure drops program awareness for this proposal
            if not self.described_failed:
                self.described_failed = True
                self.warn(
                    f"{WARNING}the prompt model could not describe the program ({_first_line(exc)}); proposing without it"
                )
        return description, module, module_description

    async def propose(
        self, name: str, predictor: Predict, task_demos: str, tip: str | None, rollout_id: int
    ) -> str | None:
        """One proposal, stripped twice; None when it did not parse, twice."""
        inputs: dict[str, str] = {}
        with sampling_override(temperature=self.init_temperature, rollout_id=rollout_id):
            if self.program_code is not None:
                description, module, module_description = await self.describe(predictor, task_demos)
                inputs.update(
                    program_code=self.program_code,
                    program_description=description,
                    module=module,
                    module_description=module_description,
                )
        if self.data_summary is not None:
            inputs["dataset_description"] = self.data_summary
        inputs.update(task_demos=task_demos, basic_instruction=predictor.signature.instructions)
        if tip:
            inputs["tip"] = tip
        generate = self.predict(
            instruction_signature(
                dataset_description=self.data_summary is not None,
                program_aware=self.program_code is not None,
                tip=bool(tip),
            )
        )
        # The retry's rollout id is derived, not drawn: the shared RNG must not move.
        proposed = await ask_twice(
            generate,
            inputs,
            temperature=self.init_temperature,
            rollout_ids=(rollout_id, rollout_id + 1),
            on_failure=lambda last, error: self._failed(name, last, error),
        )
        return None if proposed is None else strip_prefix(strip_prefix(str(proposed["proposed_instruction"])))

    def _failed(self, name: str, last: bool, error: AdapterParseError) -> None:
        if last:
            self.warn(f"{WARNING}{name}: the proposed instruction did not parse again; this candidate is dropped")
        else:
            self.warn(f"{WARNING}{name}: the proposed instruction did not parse ({_first_line(error)}); asking again")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _prompt_options(prompt_lm: LM) -> dict[str, Any]:
    """The prompt LM's own defaults that DSPy would send too (max_tokens, provider extras)."""
    config = getattr(prompt_lm, "config", None)
    options: dict[str, Any] = {}
    if getattr(config, "max_tokens", None) is not None:
        options["max_tokens"] = config.max_tokens  # type: ignore[union-attr]
    extra = getattr(config, "extra", None)
    if isinstance(extra, Mapping) and extra:
        options["extra"] = dict(extra)
    return options


async def propose_instructions(
    runner: ProgramRunner,
    trainset: Sequence[Example],
    demo_sets: DemoSetsLike | None,
    *,
    prompt_lm: LM,
    rng: random.Random,
    num_candidates: int,
    init_temperature: float,
    program_text: str,
    view_data_batch_size: int = 10,
    program_aware: bool = True,
    data_aware: bool = True,
    tip_aware: bool = True,
    fewshot_aware: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, list[str]]:
    """Predictor name -> instruction candidates, [0] always the original instruction.

    Consumes `rng` exactly as DSPy's proposer (a tip, then a rollout id, per proposal), so call it
    with the RNG in the state MIPROv2 leaves it in after the valset draw and the demo sets.
    """
    notify = warn or (lambda _message: None)
    options = _prompt_options(prompt_lm)
    predictors = named_predictors(runner)

    summary: str | None = None
    if data_aware:
        try:
            summary = await create_dataset_summary(
                trainset, prompt_lm=prompt_lm, batch_size=view_data_batch_size, options=options
            )
        except Exception as exc:  # noqa: BLE001 - DSPy: no summary, the proposal loses its dataset field
            notify(
                f"{WARNING}the prompt model could not summarize the dataset ({_first_line(exc)}); proposing without it"
            )
    proposer = _Proposer(
        prompt_lm=prompt_lm,
        options=options,
        init_temperature=init_temperature,
        program_code=program_code(runner, program_text) if program_aware else None,
        data_summary=summary,
        warn=notify,
    )

    sets_by_name: Mapping[str, Sequence[Sequence[Demo]]] = demo_sets.sets if demo_sets is not None else {}
    use_demos = fewshot_aware and bool(sets_by_name)
    if sets_by_name:
        first = sets_by_name.get(predictors[0][0], next(iter(sets_by_name.values()))) if predictors else []
        rounds = min(num_candidates, max(len(first), 1))
    else:
        rounds = num_candidates

    candidates: dict[str, list[str]] = {}
    for name, predictor in predictors:
        proposals: list[str] = []
        for set_index in range(rounds):
            tip: str | None = None
            if tip_aware:
                tip = TIPS[rng.choice(list(TIPS))]
            rollout_id = rng.randint(0, ROLLOUT_ID_MAX)
            sets = sets_by_name.get(name, [])
            demos = task_demos_text(sets, set_index, predictor.signature) if use_demos and sets else NO_DEMOS
            proposal = await proposer.propose(name, predictor, demos, tip, rollout_id)
            # DSPy overwrites the first proposal with the original instruction; a dropped
            # proposal is simply missing from the list.
            if set_index > 0 and proposal is not None:
                proposals.append(proposal)
        candidates[name] = [predictor.signature.instructions, *proposals]
    return candidates
