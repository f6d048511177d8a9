"""The instruction proposers' rule for a reply that does not parse: ask once more, then give up.

DSPy dies on a proposal that does not parse (after its JSON fallback), which is what a small
prompt model does. COPRO's proposer (copro_proposals.py) and MIPROv2's (proposer/grounded.py) both
ask again under a second rollout id (so the cache cannot hand back the same reply) and drop the
proposal when that fails too; each says so in its own words through `on_failure`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dspx_cli.core import Prediction
from dspx_cli.errors import AdapterParseError
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.trace import sampling_override

__all__ = ["ask_twice"]


async def ask_twice(
    predictor: Predict,
    inputs: Mapping[str, Any],
    *,
    temperature: float,
    rollout_ids: tuple[int, int],
    on_failure: Callable[[bool, AdapterParseError], None],
) -> Prediction | None:
    """The prediction, asked under the first rollout id and then the second; None when neither
    parses. `on_failure(last, error)` hears of each failure, `last` true for the second."""
    for attempt, rollout_id in enumerate(rollout_ids):
        try:
            with sampling_override(temperature=temperature, rollout_id=rollout_id):
                return await predictor.acall(**inputs)
        except AdapterParseError as error:
            on_failure(attempt == len(rollout_ids) - 1, error)
    return None
