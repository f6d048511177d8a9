"""The wrappers every HTTP or local model call goes through, in one order for chat and embeddings:

    ObservedLM (usage meter, history) -> [CachedLM] -> RetryingLM -> LimitedLM -> backend

Limits sit inside retries, so every attempt is paced and counted against rpm/tpm and a call that
backs off holds no concurrency slot while it sleeps. The run context adds the response cache
for chat calls; embeddings are cached by the retriever (corpus vectors on disk).
"""

from __future__ import annotations

from functools import partial

from dspx_cli.lm.base import LM
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.history import History
from dspx_cli.lm.observed import ObservedLM
from dspx_cli.lm.retry import DEFAULT_BASE_DELAY
from dspx_cli.lm.usage import UsageMeter


def guarded(
    backend: LM,
    config: LMConfig,
    meter: UsageMeter,
    *,
    base_delay: float = DEFAULT_BASE_DELAY,
    retry_hint: str | None = None,
) -> LM:
    """The backend inside its limits and retries; each retry is counted on `meter`."""
    from dspx_cli.lm.limits import LimitedLM
    from dspx_cli.lm.retry import RetryingLM

    lm = backend
    if config.max_concurrency or config.rpm or config.tpm:
        lm = LimitedLM(lm, max_concurrency=config.max_concurrency, rpm=config.rpm, tpm=config.tpm)
    if config.num_retries > 0:
        on_retry = partial(meter.record_retry, config.model)
        if retry_hint is None:
            lm = RetryingLM(lm, config.num_retries, base_delay=base_delay, on_retry=on_retry)
        else:
            lm = RetryingLM(lm, config.num_retries, base_delay=base_delay, on_retry=on_retry, hint=retry_hint)
    return lm


def embeddings_stack(
    backend: LM, config: LMConfig, meter: UsageMeter, history: History | None, *, base_delay: float = DEFAULT_BASE_DELAY
) -> ObservedLM:
    """An embeddings backend (`OpenAICompatLM`, whose `embed` posts to `/embeddings`) inside the
    LM stack's retries, limits, usage and history; the retriever caches, so no response cache."""
    # The embeddings section has no num_retries to raise, so the give-up message suggests none.
    return ObservedLM(guarded(backend, config, meter, base_delay=base_delay, retry_hint=""), config, meter, history)
