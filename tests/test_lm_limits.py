"""LimitedLM against the real loopback server: requests in flight, requests and tokens per minute,
and limits shared by every caller of one LM instance, across event loops and threads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from dspx_cli.lm.base import LM, LMRequest, LMResponse
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.limits import LimitedLM, RatePacer, estimate_tokens
from dspx_cli.lm.openai_compat import OpenAICompatLM
from tests.lm_server import LMServer

T = TypeVar("T")


def backend(server: LMServer) -> OpenAICompatLM:
    return OpenAICompatLM(LMConfig(model="gpt-test", api_base=server.api_base, timeout=10.0))


def ask(text: str) -> LMRequest:
    return LMRequest(messages=({"role": "user", "content": text},))


def run(lm: LM, work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await work()
        finally:
            await lm.aclose()

    return asyncio.run(main())


def gather(lm: LM, requests: list[LMRequest]) -> list[LMResponse]:
    async def batch() -> list[LMResponse]:
        return list(await asyncio.gather(*(lm.complete(request) for request in requests)))

    return run(lm, batch)


def arrivals(server: LMServer) -> list[float]:
    return sorted(request.at for request in server.requests)


# -- max_concurrency -----------------------------------------------------------------------------


def test_max_concurrency_bounds_requests_in_flight(lm_server: LMServer) -> None:
    lm_server.default_delay = 0.1
    lm = LimitedLM(backend(lm_server), max_concurrency=4)
    started = time.perf_counter()
    responses = gather(lm, [ask(f"q{i}") for i in range(20)])
    assert [r.completions for r in responses] == [[f"echo: q{i}"] for i in range(20)]
    assert lm_server.max_in_flight == 4  # the bound, and all of it used
    assert time.perf_counter() - started >= 20 / 4 * 0.1 * 0.9
    assert lm.slots is not None and lm.slots.in_use == 0


def test_without_a_limit_the_same_batch_goes_out_at_once(lm_server: LMServer) -> None:
    # The control for the test above: the server does see more than 4 when nothing holds them back.
    lm_server.default_delay = 0.1
    gather(LimitedLM(backend(lm_server)), [ask(f"q{i}") for i in range(20)])
    assert lm_server.max_in_flight > 10


def test_callers_of_one_lm_share_its_bound(lm_server: LMServer) -> None:
    """Two modules' worth of callers, as a program with two predictors using the same LM."""
    lm_server.default_delay = 0.05
    lm = LimitedLM(backend(lm_server), max_concurrency=3)

    async def module(name: str) -> list[LMResponse]:
        return list(await asyncio.gather(*(lm.complete(ask(f"{name} {i}")) for i in range(15))))

    async def both() -> list[list[LMResponse]]:
        return list(await asyncio.gather(module("classify"), module("summarize")))

    first, second = run(lm, both)
    assert len(first) == len(second) == 15
    assert lm_server.max_in_flight == 3


def test_separate_instances_do_not_share_a_bound(lm_server: LMServer) -> None:
    # Why the run context must hand every module the same instance: two instances, twice the load.
    lm_server.default_delay = 0.1
    inner = backend(lm_server)
    one, two = LimitedLM(inner, max_concurrency=3), LimitedLM(inner, max_concurrency=3)

    async def both() -> None:
        await asyncio.gather(*(lm.complete(ask(f"q{i}")) for i in range(9) for lm in (one, two)))

    run(inner, both)
    assert lm_server.max_in_flight == 6


class StampingLM(LM):
    """Passes calls through to a real LM, noting when the limiter let each one go."""

    def __init__(self, inner: LM) -> None:
        self.inner = inner
        self.model = inner.model
        self.starts: list[float] = []

    async def complete(self, request: LMRequest) -> LMResponse:
        self.starts.append(time.monotonic())
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def assert_spaced(starts: list[float], interval: float) -> None:
    """The k-th start is at least k intervals after the first: evenly paced, never a burst."""
    slack = 0.02  # the first start may itself run a little late
    for k, start in enumerate(sorted(starts)):
        assert start - min(starts) >= k * interval - slack, f"start {k} came {start - min(starts):.3f}s in"


class FreshClientLM(LM):
    """An HTTP LM usable from several event loops at once: one short-lived client per call."""

    def __init__(self, server: LMServer) -> None:
        self.server = server
        self.model = "gpt-test"

    async def complete(self, request: LMRequest) -> LMResponse:
        lm = backend(self.server)
        try:
            return await lm.complete(request)
        finally:
            await lm.aclose()


def test_the_bound_holds_across_event_loops_in_several_threads(lm_server: LMServer) -> None:
    lm_server.default_delay = 0.05
    lm = LimitedLM(FreshClientLM(lm_server), max_concurrency=2)

    def worker(name: str) -> list[LMResponse]:  # its own thread, its own asyncio.run
        return gather(lm, [ask(f"{name} {i}") for i in range(6)])

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = [future.result(timeout=30) for future in [pool.submit(worker, f"t{n}") for n in range(3)]]
    assert [len(responses) for responses in results] == [6, 6, 6]
    assert len(lm_server.requests) == 18 and lm_server.max_in_flight == 2
    assert lm.slots is not None and lm.slots.in_use == 0


def test_one_lm_serves_one_asyncio_run_after_another(lm_server: LMServer) -> None:
    # The CLI runs one event loop per command; limiter state must not stay bound to the first.
    lm = LimitedLM(backend(lm_server), max_concurrency=1, rpm=6000)
    for round_ in range(3):
        assert [r.completions for r in gather(lm, [ask(f"r{round_} {i}") for i in range(3)])] == [
            [f"echo: r{round_} {i}"] for i in range(3)
        ]
    assert len(lm_server.requests) == 9


def test_a_cancelled_caller_gives_its_slot_back(lm_server: LMServer) -> None:
    lm_server.default_delay = 0.2
    lm = LimitedLM(backend(lm_server), max_concurrency=1)
    assert lm.slots is not None

    async def scenario() -> list[str]:
        holder = asyncio.create_task(lm.complete(ask("holder")))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(lm.complete(ask("waiter")))  # queued behind the holder
        late = asyncio.create_task(lm.complete(ask("late")))
        await asyncio.sleep(0.05)
        waiter.cancel()
        holder_reply, late_reply = await asyncio.gather(holder, late)
        # Cancelling the one in flight must free its slot too.
        stuck = asyncio.create_task(lm.complete(ask("stuck")))
        await asyncio.sleep(0.1)
        stuck.cancel()
        final = await asyncio.wait_for(lm.complete(ask("final")), timeout=5)
        return [holder_reply.completions[0], late_reply.completions[0], final.completions[0]]

    assert run(lm, scenario) == ["echo: holder", "echo: late", "echo: final"]
    sent = [request.body["messages"][-1]["content"] for request in lm_server.requests]
    assert sent == ["holder", "late", "stuck", "final"]  # the cancelled waiter never went out
    assert lm.slots.in_use == 0


# -- rpm and tpm ---------------------------------------------------------------------------------


def test_rpm_spaces_request_starts(lm_server: LMServer) -> None:
    stamped = StampingLM(backend(lm_server))
    lm = LimitedLM(stamped, rpm=600)  # one request every 0.1 s
    started = time.perf_counter()
    gather(lm, [ask(f"q{i}") for i in range(12)])
    elapsed = time.perf_counter() - started
    assert elapsed >= 1.1  # the 12th starts at least 11 intervals after the first
    # Never more wait than the schedule needs: the k-th of a burst waits at most k intervals.
    assert lm.waited_s <= sum(k * 0.1 for k in range(12)) + 0.05
    assert_spaced(stamped.starts, 0.1)
    # The server saw the same spread (its clock also counts loopback jitter on a busy machine).
    times = arrivals(lm_server)
    assert len(times) == 12 and times[-1] - times[0] >= 0.9
    assert lm.waited_s > 0


def test_tpm_paces_by_the_estimated_prompt(lm_server: LMServer) -> None:
    request = ask("w" * 384)
    assert estimate_tokens(request) == 100  # 384 chars / 4, plus the per-message overhead
    stamped = StampingLM(backend(lm_server))
    lm = LimitedLM(stamped, tpm=60_000)  # 1000 tokens a second: 0.1 s per request
    started = time.perf_counter()
    gather(lm, [ask("w" * 383 + str(i)) for i in range(10)])
    assert 0.9 <= time.perf_counter() - started < 6.0
    assert_spaced(stamped.starts, 0.1)
    times = arrivals(lm_server)
    assert len(times) == 10 and times[-1] - times[0] >= 0.8


def test_tpm_charges_the_real_usage_when_it_is_larger(lm_server: LMServer) -> None:
    lm_server.responder = lambda body: " ".join(["word"] * 1000)  # 1000 completion tokens
    stamped = StampingLM(backend(lm_server))
    lm = LimitedLM(stamped, tpm=60_000)

    async def one_after_another() -> None:
        await lm.complete(ask("hi"))  # estimated at 5 tokens, really 1001
        await lm.complete(ask("again"))

    run(lm, one_after_another)
    first, second = stamped.starts
    assert second - first >= 1.001 - 0.02  # 1001 tokens at 1000 a second
    assert len(lm_server.requests) == 2


def test_tpm_gives_back_what_was_overestimated(lm_server: LMServer) -> None:
    lm = LimitedLM(backend(lm_server), tpm=60_000)
    big = "x" * 40_000  # estimated at 10004 tokens (10 s of budget); the server counts 3

    async def one_after_another() -> None:
        for i in range(3):
            await lm.complete(ask(big + str(i)))

    started = time.perf_counter()
    run(lm, one_after_another)
    assert time.perf_counter() - started < 8.0  # without the correction: 20 s


def test_the_pacer_arithmetic() -> None:
    now = [100.0]
    pacer = RatePacer(rpm=60, tpm=600, clock=lambda: now[0])  # 1 request/s and 10 tokens/s
    assert pacer.reserve(5) == 0.0  # the first goes at once
    assert pacer.reserve(5) == pytest.approx(1.0)  # rpm: 1 s later (tokens allowed it at 0.5 s)
    assert pacer.reserve(30) == pytest.approx(2.0)
    assert pacer.reserve(0) == pytest.approx(5.0)  # the 30 tokens at t=2 use the budget until t=5
    pacer.settle(estimated=30, actual=10)  # 20 tokens fewer: 2 s back
    assert pacer.reserve(0) == pytest.approx(6.0)  # rpm is now the binding limit
    now[0] = 1000.0
    assert pacer.reserve(10**6) == 0.0  # idle long enough: even a huge request goes at once


def test_settings_are_checked() -> None:
    with LMServer() as server:
        inner = backend(server)
        for bad in ({"max_concurrency": 0}, {"rpm": 0}, {"tpm": -5}, {"rpm": float("nan")}):
            with pytest.raises(ValueError):
                LimitedLM(inner, **bad)  # type: ignore[arg-type]
        lm = LimitedLM(inner, max_concurrency=2, rpm=60)
        assert lm.model == "gpt-test" and "max_concurrency=2" in repr(lm)
