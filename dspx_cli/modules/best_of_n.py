"""BestOfN: run a module up to N times at temperature 1.0 and keep the prediction with the best reward.

DSPy's semantics: attempt `i` runs the whole module with rollout id `start + i` (`start` is the
rollout id already in force, 0 outside one) at temperature 1.0, so every attempt is a distinct
cache entry; the first prediction whose reward reaches `threshold` is returned at once, else the
one with the highest reward (the earliest among equals). An attempt that raises (an LM error, a
reply that does not parse, a failing reward function) counts against `fail_count`.

Where DSPy copies the LM of every predictor (`lm.copy(rollout_id=..., temperature=1.0)`), dspx
scopes a sampling override over the attempt (modules/trace.py): each predictor the module calls,
however nested, keeps its own LM and gets the attempt's temperature and rollout id, so modules
whose predictors use different LMs work too (DSPy's `get_lm()` refuses them).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from dspx_cli.core import Prediction, Signature
from dspx_cli.lm.base import Message, Usage
from dspx_cli.modules import trace as tracing
from dspx_cli.modules.base import Module
from dspx_cli.modules.copies import Composite
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.trace import TraceStep

__all__ = ["Attempt", "BestOfN", "RewardFn"]

logger = logging.getLogger(__name__)

# `reward_fn(inputs, prediction)`: the module's inputs (a copy) and one attempt's prediction. A float
# (anything comparable with `threshold`), or an awaitable of one for rewards that call an LM.
RewardFn = Callable[[dict[str, Any], Prediction], Any | Awaitable[Any]]

ATTEMPT_TEMPERATURE = 1.0  # DSPy's: diverse attempts even when the program samples greedily


@dataclass(frozen=True)
class Attempt:
    """One successful run of the wrapped module and what it scored."""

    index: int  # 0-based
    rollout_id: int
    prediction: Prediction
    trace: list[TraceStep]  # the predictor calls of this run only (not the reward function's)
    reward: Any  # as reward_fn returned it: Refine shows it to the feedback LM unconverted, as DSPy does


class _Session(Protocol):
    """Per-call state between attempts; BestOfN keeps none, Refine keeps its advice."""

    def scope(self) -> AbstractContextManager[Any]: ...

    async def after(self, attempt: Attempt, inputs: dict[str, Any]) -> Usage: ...


class _Plain:
    def scope(self) -> AbstractContextManager[Any]:
        return nullcontext()

    async def after(self, attempt: Attempt, inputs: dict[str, Any]) -> Usage:
        return Usage()


class BestOfN(Composite):
    """`await BestOfN(module, N=3, reward_fn=..., threshold=1.0).acall(**inputs)` -> the best Prediction.

    `fail_count` (default `N`, as is 0: DSPy's `fail_count or N`) bounds failed attempts with
    DSPy's exact rule: a failure at 0-based attempt `i` is raised when `i` exceeds the failures
    still allowed, which then drop by one. Unlike DSPy, the count starts afresh on every call
    (DSPy lowers the attribute for good), and a call where every attempt failed without reaching
    that rule raises the last error instead of returning None. `threshold=None` never stops early.
    """

    parts = ("module",)

    def __init__(
        self,
        module: Module,
        N: int,  # DSPy's name
        reward_fn: RewardFn,
        threshold: float | None,
        fail_count: int | None = None,
    ) -> None:
        if not isinstance(N, int) or isinstance(N, bool) or N < 1:
            raise ValueError(f"N must be a positive integer, not {N!r}")
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable as reward_fn(inputs, prediction), not {reward_fn!r}")
        self.module = module
        self.N = N
        self.reward_fn = reward_fn
        self.threshold = threshold
        self.fail_count = fail_count or N

    @property
    def signature(self) -> Signature:
        return self.module.signature

    def named_predictors(self) -> list[tuple[str, Predict]]:
        # DSPy names the wrapped module's predictors under the attribute `module`.
        return [
            (f"module.{name}" if name else "module", predictor) for name, predictor in self.module.named_predictors()
        ]

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        """The first attempt's messages (temperature and rollout id are request settings, not messages)."""
        return self.module.messages(inputs)

    async def acall(self, **inputs: Any) -> Prediction:
        return await self._run(inputs, self._session())

    def _session(self) -> _Session:
        """State for one call; Refine's holds the advice passed from one attempt to the next."""
        return _Plain()

    async def _run(self, inputs: dict[str, Any], session: _Session) -> Prediction:
        start = _rollout_start()
        allowed_failures = self.fail_count
        best: Attempt | None = None
        best_reward: Any = -math.inf
        usage = Usage()  # every LM call made for this prediction: attempts, failed ones, feedback
        last_error: Exception | None = None

        for index in range(self.N):
            rollout_id = start + index
            trace: list[TraceStep] = []
            prediction: Prediction | None = None
            try:
                with (
                    tracing.trace_scope() as trace,
                    tracing.sampling_override(temperature=ATTEMPT_TEMPERATURE, rollout_id=rollout_id),
                    session.scope(),
                ):
                    prediction = await self.module.acall(**inputs)
                usage = usage + _usage_of(prediction, trace)
                reward = await self._reward(inputs, prediction)
                attempt = Attempt(index, rollout_id, prediction, list(trace), reward)
                if reward > best_reward:
                    best, best_reward = attempt, reward
                if self.threshold is not None and reward >= self.threshold:
                    break
                if index == self.N - 1:
                    break  # no attempt left to improve
                usage = usage + await session.after(attempt, inputs)
            except Exception as exc:  # DSPy counts every failure of an attempt
                if prediction is None:
                    usage = usage + _usage_of(None, trace)
                logger.warning(
                    "%s: attempt %d failed with rollout id %d: %s", type(self).__name__, index + 1, rollout_id, exc
                )
                if index > allowed_failures:
                    raise
                allowed_failures -= 1
                last_error = exc

        if best is None:
            if last_error is not None:
                raise last_error
            raise ValueError(f"{type(self).__name__}: no attempt scored above -inf (rewards were NaN or -inf)")
        # As DSPy: the caller's trace gets the steps of the attempt returned, and only those.
        outer = tracing.current_trace()
        if outer is not None:
            outer.extend(best.trace)
        best.prediction.usage = usage
        return best.prediction

    async def _reward(self, inputs: dict[str, Any], prediction: Prediction) -> Any:
        # Outside the attempt's override and in a trace of its own: a reward that calls an LM uses
        # that LM's settings, and its calls are not part of the attempt (DSPy drops them too).
        with tracing.trace_scope():
            reward = self.reward_fn(dict(inputs), prediction)
            if inspect.isawaitable(reward):
                reward = await reward
        return reward


def _rollout_start() -> int:
    """DSPy starts at the rollout id of the LM in force (a bootstrap round sets one), else 0."""
    override = tracing.current_override()
    if override is not None and override.rollout_id is not None:
        return override.rollout_id
    return 0


def _usage_of(prediction: Prediction | None, trace: list[TraceStep]) -> Usage:
    """The prediction's own account when it has one, else what its traced calls spent."""
    if prediction is not None and isinstance(prediction.usage, Usage):
        return prediction.usage
    usage = Usage()
    for step in trace:
        if isinstance(step.prediction.usage, Usage):
            usage = usage + step.prediction.usage
    return usage
