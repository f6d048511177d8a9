"""Per-LM limits on requests in flight, requests per minute and tokens per minute.

One `LimitedLM` wraps one LM instance, and its state lives on that instance: every module that
calls it shares the same bounds, which is what a provider's limits (per key and model) ask for.

The state is guarded by a thread lock and bound to no event loop. asyncio primitives bind to the
loop that first waits on them, and the CLI runs one `asyncio.run` per command, tests run many, and
a caller may even run loops in several threads; a limit that quietly split per loop would let the
process exceed it. So waiters park on a future of their own loop, woken thread-safely.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from dspx_cli.lm.base import LM, LMRequest, LMResponse

if TYPE_CHECKING:
    # Annotations only: a chat-only run never needs the embeddings types.
    from dspx_cli.lm.embeddings import EmbeddingsRequest, EmbeddingsResponse

R = TypeVar("R")

# Roughly what chat templates add per message (role markers, separators), in tokens.
_TOKENS_PER_MESSAGE = 4
# An image part costs providers about a thousand tokens (OpenAI: 85 to ~1100 by detail), whatever
# the length of its base64 text, which at 4 characters a token would count a 1 MB photo as 350k.
_TOKENS_PER_IMAGE = 1000


def estimate_tokens(request: LMRequest) -> int:
    """Prompt tokens as ~4 characters each: good enough to pace by, corrected by real usage after."""
    chars = images = 0
    for message in request.messages:
        content = message.get("content", "")
        if isinstance(content, list):
            for part in content:
                is_image = isinstance(part, dict) and part.get("type") == "image_url"
                images += is_image
                chars += 0 if is_image else len(str(part.get("text", "") if isinstance(part, dict) else part))
        else:
            chars += len(str(content))
    return math.ceil(chars / 4) + _TOKENS_PER_MESSAGE * len(request.messages) + _TOKENS_PER_IMAGE * images


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False  # a slot was handed over; whoever ends up not using it must release it


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # it may have been cancelled since the slot was handed over
        future.set_result(None)


class ConcurrencySlots:
    """A FIFO semaphore usable from any event loop and thread at once."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be 1 or more, not {limit}")
        self.limit = limit
        self._used = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._used

    async def acquire(self) -> None:
        with self._lock:
            # Queued waiters go first: a newcomer may not overtake them when a slot frees.
            if self._used < self.limit and not self._waiters:
                self._used += 1
                return
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # cancelled after the slot was handed over: pass it on
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._used -= 1
                return
            # The slot moves straight to the next waiter, so `_used` stays the same.
            waiter = self._waiters.popleft()
            waiter.granted = True
        try:
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)
        except RuntimeError:  # its loop is closed, so nobody is waiting there any more
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class RatePacer:
    """Spaces request starts for rpm and tpm limits (GCRA: a "theoretical arrival time" per limit).

    Requests are spread evenly instead of a minute's allowance going out in one burst, because
    providers enforce their per-minute limits over shorter windows too. A reservation is made
    without waiting, in arrival order, so concurrent callers queue fairly and none starves; a
    request bigger than the whole tpm still goes, after the wait its size implies.
    """

    def __init__(
        self, rpm: float | None = None, tpm: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, not {value}")
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._lock = threading.Lock()
        self._next_request = -math.inf  # earliest start the rpm limit allows
        self._next_token = -math.inf  # earliest start the tpm limit allows

    def reserve(self, tokens: int = 0) -> float:
        """Claim a start time for a request of `tokens` estimated tokens; returns seconds to wait."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_request, self._next_token)
            if self.rpm is not None:
                self._next_request = start + 60.0 / self.rpm
            if self.tpm is not None:
                self._next_token = start + tokens * 60.0 / self.tpm
            return start - now

    def settle(self, estimated: int, actual: int) -> None:
        """Correct a reservation by the tokens really used (negative corrections give time back)."""
        if self.tpm is None or actual == estimated:
            return
        with self._lock:
            self._next_token += (actual - estimated) * 60.0 / self.tpm


class LimitedLM(LM):
    """Holds each request to `max_concurrency` in flight and paces starts to `rpm` and `tpm`.

    A concurrency slot is taken before the pacing wait, so a paced request starts exactly when its
    reservation says rather than bunching up behind a full set of slots and then going all at once.
    """

    def __init__(
        self,
        inner: LM,
        *,
        max_concurrency: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.max_concurrency = max_concurrency
        self.slots = ConcurrencySlots(max_concurrency) if max_concurrency is not None else None
        self.pacer = RatePacer(rpm, tpm) if rpm is not None or tpm is not None else None
        self._sleep = sleep
        self.waited_s = 0.0  # total pacing wait imposed, for run summaries

    def __repr__(self) -> str:
        pacer = self.pacer
        rpm, tpm = (pacer.rpm, pacer.tpm) if pacer else (None, None)
        return f"LimitedLM({self.inner!r}, max_concurrency={self.max_concurrency}, rpm={rpm}, tpm={tpm})"

    async def complete(self, request: LMRequest) -> LMResponse:
        estimated = estimate_tokens(request) if self.pacer is not None and self.pacer.tpm is not None else 0
        call = lambda: self.inner.complete(request)  # noqa: E731
        # A cached reply cost nothing; a server that reports no usage leaves the estimate standing.
        return await self._limited(call, estimated, lambda r: 0 if r.cached else r.usage.total_tokens or estimated)

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        from dspx_cli.lm.embeddings import estimate_tokens as estimate_embedding_tokens

        estimated = estimate_embedding_tokens(request) if self.pacer is not None and self.pacer.tpm is not None else 0
        call = lambda: self.inner.embed(request)  # type: ignore[attr-defined]  # noqa: E731
        return await self._limited(call, estimated, lambda r: r.usage.total_tokens or estimated)

    async def _limited(self, call: Callable[[], Awaitable[R]], estimated: int, used: Callable[[R], int]) -> R:
        if self.slots is None:
            return await self._paced(call, estimated, used)
        async with self.slots:
            return await self._paced(call, estimated, used)

    async def _paced(self, call: Callable[[], Awaitable[R]], estimated: int, used: Callable[[R], int]) -> R:
        if self.pacer is None:
            return await call()
        wait = self.pacer.reserve(estimated)
        if wait > 0:
            self.waited_s += wait
            await self._sleep(wait)
        # A failed call keeps its estimate: the provider may well have counted it.
        response = await call()
        if estimated:
            self.pacer.settle(estimated, used(response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
