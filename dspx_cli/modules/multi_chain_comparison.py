"""MultiChainComparison: compare M reasoning attempts and answer again with a corrected rationale.

DSPy's module, prompts byte for byte: the signature gets M input fields `reasoning_attempt_1..M`
(after the declared inputs, description "${reasoning attempt}") and a first output `rationale`
("${corrected reasoning}"); the instructions stay the signature's. Each attempt is shown as

    «I'm trying to {first line of its rationale or reasoning} I'm not sure but my prediction is {first line of its last output}»

and the comparison predictor, named `predict` as in DSPy, runs at `temperature` (DSPy's 0.7).

dspx addition: DSPy's `forward(completions, **inputs)` needs the M attempts from the caller. When
`completions` is not given, dspx samples them first with an internal ChainOfThought over the same
signature at n=M (named `sample.predict`), at `temperature`, or 0.7 if that is at most 0.15 (DSPy's
rule for n > 1). `sample=False` leaves the sampler out, so the predictors are exactly DSPy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dspx_cli.core import Prediction, Signature
from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, Message, Usage
from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.copies import Composite
from dspx_cli.modules.predict import Predict

__all__ = ["MultiChainComparison", "format_attempt"]

ATTEMPT_DESC = "${reasoning attempt}"
RATIONALE_DESC = "${corrected reasoning}"
# DSPy's Predict raises the temperature of an n > 1 call at or below 0.15 to 0.7, for diverse samples.
_GREEDY_AT_MOST = 0.15
_SAMPLING_TEMPERATURE = 0.7


def format_attempt(completion: Mapping[str, Any], last_key: str) -> str:
    """One attempt as DSPy shows it: first lines only, `rationale` preferred over `reasoning`."""
    rationale = completion.get("rationale", completion.get("reasoning"))
    if rationale is None:
        raise ValueError(f"each completion needs a `reasoning` or `rationale`, got fields {list(completion.keys())}")
    if last_key not in completion:
        raise ValueError(f"each completion needs the output `{last_key}`, got fields {list(completion.keys())}")
    rationale = str(rationale).strip().split("\n")[0].strip()
    answer = str(completion[last_key]).strip().split("\n")[0].strip()
    return f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»"


class MultiChainComparison(Composite):
    """`await MultiChainComparison(signature, lm, M=3).acall(completions=[...], **inputs)` -> rationale + outputs.

    `predict_options` are Predict's (demos, adapter, max_tokens, extra, ...) for the comparison
    predictor; the sampler shares its adapter, max_tokens and extra, but not its demos.
    """

    parts = ("predict", "sample")

    def __init__(
        self,
        signature: Signature,
        lm: LM | None = None,
        *,
        M: int = 3,  # DSPy's name
        temperature: float | None = 0.7,
        sample: bool = True,
        **predict_options: Any,
    ) -> None:
        if not isinstance(M, int) or isinstance(M, bool) or M < 1:
            raise ValueError(f"M must be a positive integer, not {M!r}")
        self.M = M
        self.last_key = signature.outputs[-1].name
        compare = signature
        for index in range(1, M + 1):
            compare = compare.append_input(f"reasoning_attempt_{index}", str, ATTEMPT_DESC)
        compare = compare.prepend_output("rationale", str, RATIONALE_DESC)
        self.predict = Predict(compare, lm, temperature=temperature, **predict_options)
        self.sample: ChainOfThought | None = None
        if sample:
            shared = {k: v for k, v in predict_options.items() if k not in ("demos", "n")}
            self.sample = ChainOfThought(
                signature, lm, n=M, temperature=_sampling_temperature(temperature, M), **shared
            )

    @property
    def signature(self) -> Signature:
        """What a caller binds and gets: the declared inputs (the attempts are filled in here), and
        `rationale` before the declared outputs."""
        signature = self.predict.signature
        for index in range(1, self.M + 1):
            signature = signature.delete(f"reasoning_attempt_{index}")
        return signature

    def named_predictors(self) -> list[tuple[str, Predict]]:
        named = [("predict", self.predict)]
        if self.sample is not None:
            named += [(f"sample.{name}", predictor) for name, predictor in self.sample.named_predictors()]
        return named

    def attempt_fields(self, completions: Any) -> dict[str, str]:
        """`reasoning_attempt_1..M` from M completions (mappings, Predictions, or a Completions)."""
        if isinstance(completions, Prediction):
            completions = completions.completions
        attempts = [format_attempt(c, self.last_key) for c in _as_list(completions)]
        if len(attempts) != self.M:
            # DSPy's assertion message.
            raise ValueError(
                f"The number of attempts ({len(attempts)}) doesn't match the expected number M ({self.M}). "
                "Please set the correct value for M when initializing MultiChainComparison."
            )
        return {f"reasoning_attempt_{index}": attempt for index, attempt in enumerate(attempts, start=1)}

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        """With `completions` among the inputs, the comparison prompt; without, the first call: the sampler's."""
        inputs = dict(inputs)
        completions = inputs.pop("completions", None)
        if completions is None:
            return self._sampler().messages(inputs)
        return self.predict.messages({**self.attempt_fields(completions), **inputs})

    async def acall(self, completions: Any = None, **inputs: Any) -> Prediction:
        usage = Usage()
        if completions is None:
            sampled = await self._sampler().acall(**inputs)
            usage = usage + (sampled.usage or Usage())
            completions = list(sampled.completions)
            if len(completions) != self.M:
                raise LMError(
                    f"MultiChainComparison compares M={self.M} attempts, but the sampling call (n={self.M}) gave "
                    f"{len(completions)} that fit the signature; does the endpoint honour `n`?"
                )
        prediction = await self.predict.acall(**self.attempt_fields(completions), **inputs)
        prediction.usage = usage + (prediction.usage or Usage())
        return prediction

    def _sampler(self) -> ChainOfThought:
        if self.sample is None:
            raise ValueError("MultiChainComparison(sample=False) needs `completions`: M earlier predictions")
        return self.sample


def _sampling_temperature(temperature: float | None, n: int) -> float | None:
    if n > 1 and (temperature is None or temperature <= _GREEDY_AT_MOST):
        return _SAMPLING_TEMPERATURE
    return temperature


def _as_list(completions: Any) -> list[Mapping[str, Any]]:
    if isinstance(completions, Mapping) or not isinstance(completions, Iterable):
        raise TypeError(f"completions must be a list of M predictions, not {type(completions).__name__}")
    return list(completions)
