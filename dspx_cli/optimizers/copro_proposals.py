"""COPRO's proposer: its two signatures (DSPy's prompt data) and n sampled proposals per call.

DSPy: `dspy/teleprompt/copro_optimizer.py`, `BasicGenerateInstruction` and
`GenerateInstructionGivenAttempts`, each called as `dspy.Predict(sig, n=..., temperature=T)` under the
prompt model. The instruction texts and field descriptions below are what DSPy's ChatAdapter puts
into the system message, so they must stay byte for byte as DSPy has them (the golden fixture
`tests/fixtures/mipro/golden.json`, `copro[].prompt_requests`, checks them).

How a call with `n` goes on the wire: DSPy 3.4.1 sends `n` separate, identical requests, one after
another, with no `n` in the body; so does dspx here (`Predict(n=1)` asked `n` times). Each request
gets its own rollout id (`modules/trace.py`), which keys dspx's cache and is never sent: `n`
identical requests must not collapse into one cached answer. The ids are the sample's position, so a
run asked again reads the same answers back from the cache.

Departure (issue 14, item 5): DSPy dies on a proposal that does not parse (after its JSON fallback).
Here each sample is asked once more with another rollout id, then dropped with a warning; the other
samples stay. The caller keeps the predictor's current instruction among its candidates, so a
proposer that never parses leaves the program as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from dspx_cli.core import Field, Signature
from dspx_cli.errors import AdapterParseError
from dspx_cli.lm.base import LM
from dspx_cli.modules import Predict
from dspx_cli.optimizers.ask_twice import ask_twice

__all__ = [
    "BASIC_GENERATE_INSTRUCTION",
    "GENERATE_INSTRUCTION_GIVEN_ATTEMPTS",
    "Proposal",
    "Proposer",
]

_PROPOSED_OUTPUTS = (
    Field("proposed_instruction", str, "The improved instructions for the language model"),
    Field(
        "proposed_prefix_for_output_field",
        str,
        "The string at the end of the prompt, which will help the model start solving the task",
    ),
)

BASIC_GENERATE_INSTRUCTION = Signature(
    (Field("basic_instruction", str, "The initial instructions before optimization"),),
    _PROPOSED_OUTPUTS,
    "You are an instruction optimizer for large language models. I will give you a ``signature`` of fields "
    "(inputs and outputs) in English. Your task is to propose an instruction that will lead a good language "
    "model to perform the task well. Don't be afraid to be creative.",
)

# DSPy declares `attempted_instructions` without a type (so `str`) and passes a list of strings,
# which the ChatAdapter renders as numbered `[k] «...»` lines.
GENERATE_INSTRUCTION_GIVEN_ATTEMPTS = Signature(
    (Field("attempted_instructions", str),),
    _PROPOSED_OUTPUTS,
    "You are an instruction optimizer for large language models. I will give some task instructions I've "
    "tried, along with their corresponding validation scores. The instructions are arranged in increasing "
    "order based on their scores, where higher scores indicate better quality.\n\n"
    "Your task is to propose a new instruction that will lead a good language model to perform the task even "
    "better. Don't be afraid to be creative.",
)

# DSPy's Predict: with n > 1 and no temperature (or one <= 0.15) it samples at 0.7.
_LOW_TEMPERATURE, _SAMPLING_TEMPERATURE = 0.15, 0.7


@dataclass(frozen=True)
class Proposal:
    """One completion: an instruction and a prefix for the last output field, as the LM wrote them."""

    instruction: str
    prefix: str


class Proposer:
    """Asks the prompt LM for proposals; counts and reports the ones dropped."""

    def __init__(
        self,
        lm: LM,
        temperature: float,
        warn: Callable[[str], None] | None = None,
        *,
        on_fallback: Callable[[], None] | None = None,
        on_unusable_reply: Callable[[bool], None] | None = None,
    ) -> None:
        self.lm = lm
        self.temperature = temperature
        self.warn = warn
        # The run's usage meter hooks (a program predictor's): replies that did not fit are counted apart.
        self.on_fallback = on_fallback
        self.on_unusable_reply = on_unusable_reply
        self.dropped = 0

    async def initial(self, basic_instruction: str, n: int, *, label: str) -> list[Proposal]:
        """`BasicGenerateInstruction` with `n` samples: new versions of one instruction."""
        return await self._sample(BASIC_GENERATE_INSTRUCTION, {"basic_instruction": basic_instruction}, n, label)

    async def given_attempts(self, attempts: Sequence[str], n: int, *, label: str) -> list[Proposal]:
        """`GenerateInstructionGivenAttempts` with `n` samples: attempts are listed worst first."""
        inputs: dict[str, object] = {"attempted_instructions": list(attempts)}
        return await self._sample(GENERATE_INSTRUCTION_GIVEN_ATTEMPTS, inputs, n, label)

    async def _sample(self, signature: Signature, inputs: dict[str, object], n: int, label: str) -> list[Proposal]:
        temperature = self.temperature
        if n > 1 and (temperature is None or temperature <= _LOW_TEMPERATURE):
            temperature = _SAMPLING_TEMPERATURE
        predictor = Predict(
            signature,
            self.lm,
            temperature=temperature,
            on_fallback=self.on_fallback,
            on_unusable_reply=self.on_unusable_reply,
        )
        proposals: list[Proposal] = []
        for sample in range(n):
            # One after another, as DSPy sends them: a scripted or rate-limited server sees DSPy's order.
            # The retry's rollout id (n + sample) is one no first attempt of this call uses.
            prediction = await ask_twice(
                predictor,
                inputs,
                temperature=temperature,
                rollout_ids=(sample, n + sample),
                on_failure=partial(self._failed, what=f"{label}: proposal {sample + 1} of {n}"),
            )
            if prediction is not None:
                proposals.append(
                    Proposal(
                        str(prediction["proposed_instruction"]),
                        str(prediction["proposed_prefix_for_output_field"]),
                    )
                )
        return proposals

    def _failed(self, last: bool, error: AdapterParseError, what: str) -> None:
        """A reply that did not parse: nothing to say until the second one, which drops the proposal."""
        if not last:
            return
        self.dropped += 1
        if self.warn is not None:
            reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
            self.warn(f"copro: {what} did not parse twice, dropped ({reason})")
