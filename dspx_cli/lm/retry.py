"""Retries with exponential backoff and full jitter around any LM.

Only errors the backend marks `retryable` are retried (an `LMError` with a true `retryable`
attribute, as `OpenAICompatLM` raises): rate limits, server errors, dropped connections, timeouts
and damaged replies. Everything else (a wrong key, a wrong model, a rejected request) will fail the
same way again, so it is raised at once, unchanged, with the message that says what to fix.

The attributes are read by duck typing so this module does not import the HTTP backend (and so
httpx) for programs that only run local models.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, LMRequest, LMResponse

if TYPE_CHECKING:
    # Annotations only: a run without retrieval makes no embeddings call.
    from dspx_cli.lm.embeddings import EmbeddingsRequest, EmbeddingsResponse

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

logger = logging.getLogger(__name__)

# Defaults for real servers. Tests pass a small base_delay; Retry-After is honoured either way.
DEFAULT_BASE_DELAY = 0.5
DEFAULT_MAX_DELAY = 30.0
# A server asking for a longer pause than this is out of quota for a while, not briefly busy:
# waiting it out would look like a hang, so the call fails with the server's own words instead.
DEFAULT_MAX_RETRY_AFTER = 60.0
# 2**60 seconds is past any max_delay; a larger exponent would overflow the float conversion.
_MAX_EXPONENT = 60


class RetriesExhaustedError(LMError):
    """Every attempt of one call failed with a retryable error; `last` is the final cause."""

    def __init__(self, message: str, *, attempts: int, last: LMError) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last = last
        self.status: int | None = getattr(last, "status", None)
        # Retrying layers above this one must not multiply the attempts already made.
        self.retryable = False
        self.retry_after: float | None = None


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, LMError) and bool(getattr(error, "retryable", False))


def retry_after_of(error: BaseException) -> float | None:
    """The pause the server asked for (Retry-After, already in seconds), if any."""
    value = getattr(error, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


class RetryingLM(LM):
    """Runs each request up to `1 + num_retries` times while the failures are retryable.

    Backoff before retry k (0-based) is uniform in [0, min(max_delay, base_delay * 2**k)] ("full
    jitter"), so callers that failed together do not come back together. A Retry-After from the
    server is a floor: the wait is that long plus up to `base_delay` of jitter, for the same reason.
    `sleep` and `rng` are injectable so tests can run fast and check the delays chosen.
    """

    def __init__(
        self,
        inner: LM,
        num_retries: int = 3,
        *,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[], None] | None = None,
        hint: str = "raise it in the lm section if the server is only busy",
    ) -> None:
        if num_retries < 0:
            raise ValueError(f"num_retries must be 0 or more, not {num_retries}")
        if base_delay < 0 or max_delay < 0 or max_retry_after < 0:
            raise ValueError("retry delays must be 0 or more")
        self.inner = inner
        self.model = inner.model
        self.num_retries = num_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.retries = 0  # retries made over the life of this LM, for run summaries
        self._on_retry = on_retry  # told of each retry as it is decided (the run's usage meter)
        self._hint = hint  # what to do about it, after "num_retries is N"; empty where it is no setting
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"RetryingLM({self.inner!r}, num_retries={self.num_retries})"

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """The pause before retry number `retry` (0 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(retry, _MAX_EXPONENT))
        if retry_after is not None:
            return retry_after + self._rng.uniform(0.0, min(self.base_delay, ceiling))
        return self._rng.uniform(0.0, ceiling)

    async def complete(self, request: LMRequest) -> LMResponse:
        return await self._retrying(lambda: self.inner.complete(request))

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        return await self._retrying(lambda: self.inner.embed(request))  # type: ignore[attr-defined]

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        attempts = 0
        while True:
            attempts += 1
            try:
                return await attempt()
            except LMError as error:
                if not is_retryable(error):
                    raise
                retry_after = retry_after_of(error)
                if retry_after is not None and retry_after > self.max_retry_after:
                    raise RetriesExhaustedError(
                        f"gave up after {_attempts(attempts)}: {error}; the server asked to wait "
                        f"{retry_after:g}s before retrying, longer than the {self.max_retry_after:g}s "
                        f"dspx waits: try again later",
                        attempts=attempts,
                        last=error,
                    ) from error
                if attempts > self.num_retries:
                    raise RetriesExhaustedError(
                        f"gave up after {_attempts(attempts)}: {error} "
                        f"(num_retries is {self.num_retries}{'; ' + self._hint if self._hint else ''})",
                        attempts=attempts,
                        last=error,
                    ) from error
                delay = self.backoff(attempts - 1, retry_after)
                self.retries += 1
                if self._on_retry is not None:
                    self._on_retry()
                logger.debug("%s: attempt %d failed (%s); retrying in %.3fs", self.model, attempts, error, delay)
            await self._sleep(delay)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"
