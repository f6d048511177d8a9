"""The dataset summary the grounded proposer shows the prompt model (DSPy's create_dataset_summary).

The prompt model reads the trainset in batches of `batch_size`: the first batch asks for
observations; each later batch (at most nine, the tenth ends the loop) shows the observations so
far and asks for more, or `COMPLETE`; a reply starting with `COMPLETE` adds nothing, and the fifth
such reply ends the loop. New observations are appended to the running text as they came back
(already stripped by the adapter), with no separator, as DSPy does. A failure inside that loop only
ends the loop; a failure of the first or the last call propagates (the caller then runs without a
summary). Every call is a Predict at temperature 1.0 with no rollout id.

The examples reach the prompt as the Python `repr` of a list of `dspy.Example`:
`[Example({'message': 'Hi', 'queue': 'account'}) (input_keys={'message'}), ...]`, with the input
keys re-sorted the way DSPy's `order_input_keys_in_string` does. `examples_text` writes the same
characters for dspx Examples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dspx_cli.core import Example
from dspx_cli.lm.base import LM
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.trace import sampling_override
from dspx_cli.optimizers.proposer.signatures import (
    DATASET_DESCRIPTOR,
    DATASET_DESCRIPTOR_WITH_PRIOR,
    OBSERVATION_SUMMARIZER,
)
from dspx_cli.optimizers.proposer.text import strip_prefix

__all__ = ["create_dataset_summary", "example_text", "examples_text"]

# DSPy's loop limits: later batches asked at most (MAX_CALLS - 1) times, COMPLETE replies tolerated.
MAX_CALLS = 10
MAX_SKIPS = 5
SUMMARY_TEMPERATURE = 1.0
_INPUT_KEYS = re.compile(r"input_keys=\{([^\}]+)\}")


def example_text(example: Example | Mapping[str, Any]) -> str:
    """`repr(dspy.Example)`: the fields except DSPy's `dspy_*` bookkeeping, then the input keys.

    DSPy keeps input keys in a set, so its own order is arbitrary; `examples_text` sorts them
    afterwards exactly as DSPy does, and this writes them in declaration order.
    """
    fields = {k: v for k, v in example.items() if not k.startswith("dspy_")}
    keys = example.input_keys if isinstance(example, Example) else None
    if keys is None:
        shown = "None"
    elif not keys:
        shown = "set()"
    else:
        shown = "{" + ", ".join(repr(k) for k in keys) + "}"
    return f"Example({fields!r}) (input_keys={shown})"


def examples_text(examples: Sequence[Example | Mapping[str, Any]]) -> str:
    """The repr of the list, input keys sorted (DSPy sorts the quoted names as text, over the whole
    string, so a value that happens to contain `input_keys={...}` is re-sorted too)."""
    text = "[" + ", ".join(example_text(e) for e in examples) + "]"
    return _INPUT_KEYS.sub(_sorted_keys, text)


def _sorted_keys(match: re.Match[str]) -> str:
    keys = sorted(key.strip() for key in match.group(1).split(","))
    return "input_keys={" + ", ".join(keys) + "}"


async def create_dataset_summary(
    trainset: Sequence[Example], *, prompt_lm: LM, batch_size: int, options: Mapping[str, Any] | None = None
) -> str:
    """The prompt model's two-to-three sentence summary of `trainset`, label stripped.

    `options` are the prompt LM's Predict settings (max_tokens, extra); temperature is DSPy's 1.0.
    Raises what the first or the last call raises (AdapterParseError, LMError).
    """
    options = dict(options or {})

    async def ask(signature: Any, **inputs: str) -> str:
        predict = Predict(signature, prompt_lm, temperature=SUMMARY_TEMPERATURE, n=1, **options)
        # No rollout id, whatever scope the caller is in: DSPy calls the prompt model itself.
        with sampling_override():
            prediction = await predict.acall(**inputs)
        return str(prediction[signature.outputs[0].name])

    first = trainset[: min(len(trainset), batch_size)]
    observations = await ask(DATASET_DESCRIPTOR, examples=examples_text(first))

    skips = 0
    calls = 0
    try:
        for start in range(batch_size, len(trainset), batch_size):
            calls += 1
            if calls >= MAX_CALLS:
                break
            batch = trainset[start : min(len(trainset), start + batch_size)]
            more = await ask(
                DATASET_DESCRIPTOR_WITH_PRIOR, examples=examples_text(batch), prior_observations=observations
            )
            if len(more) >= 8 and more[:8].upper() == "COMPLETE":
                skips += 1
                if skips >= MAX_SKIPS:
                    break
                continue
            observations += more
    except Exception:  # noqa: BLE001 - DSPy's rule: a failed later batch ends the loop, the summary goes on
        pass

    summary = await ask(OBSERVATION_SUMMARIZER, observations=observations)
    return strip_prefix(summary)
