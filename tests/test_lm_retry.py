"""RetryingLM against the real loopback server: which faults are retried, how long it waits, and a
large concurrent batch with injected faults that must come out exactly as a fault-free run."""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LMRequest, LMResponse
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.openai_compat import LMRequestError, OpenAICompatLM
from dspx_cli.lm.retry import RetriesExhaustedError, RetryingLM
from dspx_cli.lm.usage import ModelUsage
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

T = TypeVar("T")
HELLO = LMRequest(messages=({"role": "user", "content": "hello"},))
FAST = {"base_delay": 0.01, "max_delay": 0.05}  # backoff for tests; Retry-After is still honoured


def make_lm(server: LMServer, *, timeout: float = 5.0, num_retries: int = 3, **policy: Any) -> RetryingLM:
    inner = OpenAICompatLM(LMConfig(model="gpt-test", api_base=server.api_base, timeout=timeout))
    return RetryingLM(inner, num_retries, **{**FAST, **policy})


def run(lm: RetryingLM, work: Callable[[], Awaitable[T]]) -> T:
    """One event loop per test, closing the LM's connections inside it."""

    async def main() -> T:
        try:
            return await work()
        finally:
            await lm.aclose()

    return asyncio.run(main())


def complete(lm: RetryingLM, request: LMRequest = HELLO) -> LMResponse:
    return run(lm, lambda: lm.complete(request))


def failure(lm: RetryingLM) -> LMError:
    with pytest.raises(LMError) as caught:
        complete(lm)
    return caught.value


class SleepLog:
    """Records the pauses chosen instead of taking them (the server is still real)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# -- each fault is retried, then the call succeeds ---------------------------------------------

FAULTS = {
    "500": Reply(status=500, json=error_body("internal error", "server_error")),
    "502": Reply(status=502, body=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}),
    "503": Reply(status=503, json=error_body("overloaded", "server_error")),
    "504": Reply(status=504, json=error_body("upstream timed out")),
    "408": Reply(status=408, json=error_body("request timeout")),
    "409": Reply(status=409, json=error_body("conflict")),
    "429-no-header": Reply(status=429, json=error_body("rate limited")),
    "reset": Reply.reset(),
    "closed-without-reply": Reply.close(),
    "stall-past-timeout": Reply.stall(3.0),
    "not-json": Reply(body=b"not json"),
    "json-without-choices": Reply(json={"object": "list", "data": []}),
    "choices-without-message": Reply(json={"choices": [{"index": 0, "text": "legacy"}]}),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_retryable_fault_is_retried_and_the_call_succeeds(lm_server: LMServer, fault: Reply) -> None:
    lm_server.push(fault)
    lm = make_lm(lm_server, timeout=0.5)
    response = complete(lm)
    assert response.completions == ["echo: hello"]
    assert len(lm_server.requests) == 2 and lm.retries == 1


def test_several_faults_in_a_row_use_up_to_num_retries(lm_server: LMServer) -> None:
    lm_server.push(FAULTS["503"], Reply.reset(), Reply(body=b"oops"))
    lm = make_lm(lm_server, num_retries=3)
    assert complete(lm).completions == ["echo: hello"]
    assert len(lm_server.requests) == 4


def test_429_retry_after_is_honoured(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=429, json=error_body("Rate limit reached"), headers={"Retry-After": "1"}))
    lm = make_lm(lm_server)
    assert complete(lm).completions == ["echo: hello"]
    first, second = lm_server.requests
    assert second.at - first.at >= 1.0
    assert second.at - first.at < 1.0 + 2.0  # the header, plus jitter and (on a busy machine) scheduling delay


def test_retry_after_as_an_http_date(lm_server: LMServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    lm_server.push(Reply(status=503, json=error_body("maintenance"), headers={"Retry-After": when}))
    sleep = SleepLog()
    lm = make_lm(lm_server, sleep=sleep)
    before = time.time()
    assert complete(lm).completions == ["echo: hello"]
    after = time.time()
    # The header's second, minus the moment it was read (between before and after), plus up to
    # base_delay of jitter: bounds from the clock, so a slow machine cannot push it out.
    announced = parsedate_to_datetime(when).timestamp()
    [delay] = sleep.delays
    assert announced - after <= delay <= announced - before + FAST["base_delay"]


def test_a_retry_after_beyond_the_cap_fails_at_once_with_the_servers_words(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=429, json=error_body("daily quota exceeded"), headers={"Retry-After": "3600"}))
    error = failure(make_lm(lm_server, max_retry_after=60))
    assert isinstance(error, RetriesExhaustedError) and error.attempts == 1
    assert "daily quota exceeded" in str(error)
    assert "asked to wait 3600s before retrying, longer than the 60s dspx waits: try again later" in str(error)
    assert len(lm_server.requests) == 1


def test_backoff_is_exponential_with_full_jitter(lm_server: LMServer) -> None:
    lm_server.push(*[FAULTS["500"]] * 5)
    sleep = SleepLog()
    lm = make_lm(lm_server, num_retries=5, base_delay=0.1, max_delay=0.5, sleep=sleep, rng=random.Random(7))
    complete(lm)
    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5]  # base * 2**k, capped at max_delay
    assert len(sleep.delays) == 5
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(sleep.delays, ceilings, strict=True))
    # Full jitter: draws spread over the whole range, not clustered at the ceiling.
    draws = [lm.backoff(2) for _ in range(2000)]
    assert min(draws) < 0.04 and max(draws) > 0.36 and max(draws) <= 0.4
    assert len(set(draws)) > 1900


# -- what is not retried ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (400, "max_tokens is too large"),
        (401, "no API key was sent"),
        (403, "API key"),
        (404, "the model 'gpt-test' or the api_base is wrong"),
        (422, "messages: field required"),
    ],
)
def test_client_errors_fail_at_once(lm_server: LMServer, status: int, says: str) -> None:
    message = {400: "max_tokens is too large", 422: "messages: field required"}.get(status, "nope")
    lm_server.push(Reply(status=status, json=error_body(message)))
    lm = make_lm(lm_server)
    error = failure(lm)
    # The backend's own error, untouched: its message already says what to fix.
    assert type(error) is LMRequestError and error.status == status
    assert says in str(error) and "attempt" not in str(error)
    assert len(lm_server.requests) == 1 and lm.retries == 0


def test_a_client_error_after_a_retry_stops_the_retries(lm_server: LMServer) -> None:
    lm_server.push(FAULTS["503"], Reply(status=400, json=error_body("bad request")))
    error = failure(make_lm(lm_server))
    assert type(error) is LMRequestError and error.status == 400
    assert len(lm_server.requests) == 2


# -- giving up -----------------------------------------------------------------------------------


def test_exhausting_num_retries_names_the_attempts_and_the_last_cause(lm_server: LMServer) -> None:
    lm_server.push(FAULTS["500"], FAULTS["502"], Reply.reset(), FAULTS["503"])
    error = failure(make_lm(lm_server, num_retries=3))
    assert isinstance(error, RetriesExhaustedError) and error.attempts == 4
    assert str(error).startswith(
        f"gave up after 4 attempts: HTTP 503 server error from {lm_server.api_base}/chat/completions: overloaded"
    )
    assert "num_retries is 3" in str(error)
    assert error.status == 503 and not error.retryable  # layers above must not retry it again
    assert len(lm_server.requests) == 4


def test_num_retries_zero_makes_one_attempt(lm_server: LMServer) -> None:
    lm_server.push(Reply.stall(3.0))
    error = failure(make_lm(lm_server, timeout=0.3, num_retries=0))
    assert str(error).startswith("gave up after 1 attempt: timed out after 0.3s waiting for")
    assert len(lm_server.requests) == 1


def test_model_and_settings_are_visible(lm_server: LMServer) -> None:
    lm = make_lm(lm_server, num_retries=2)
    assert lm.model == lm.inner.model == "gpt-test"
    assert "num_retries=2" in repr(lm)
    with pytest.raises(ValueError, match="num_retries"):
        RetryingLM(lm.inner, -1)


# -- a large concurrent batch with injected faults -----------------------------------------------

BATCH = 200
TIMEOUT = 2.0  # the client timeout in the batch (generous: a busy CI box must not time out a healthy reply)
BATCH_FAULTS = [
    Reply(status=429, json=error_body("Rate limit reached"), headers={"Retry-After": "1"}),
    Reply(status=500, json=error_body("internal error", "server_error")),
    Reply(status=502, body=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}),
    Reply(status=503, json=error_body("overloaded", "server_error")),
    Reply.reset(),
    Reply.close(),
    Reply.stall(TIMEOUT + 1.0),
    Reply(body=b"not json"),
]


def fault_plan() -> dict[str, list[Reply]]:
    """Which calls fail and how: every 5th call, mostly once, some twice, a few up to num_retries."""
    plan: dict[str, list[Reply]] = {}
    injected = 0
    for i in range(2, BATCH, 5):
        j = i // 5
        count = 3 if j % 10 == 0 else 2 if j % 4 == 1 else 1
        plan[f"call {i}"] = [BATCH_FAULTS[(injected + k) % len(BATCH_FAULTS)] for k in range(count)]
        injected += count
    return plan


def batch_requests() -> list[LMRequest]:
    return [
        LMRequest(messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": f"call {i}"}))
        for i in range(BATCH)
    ]


def outcome(response: LMResponse) -> tuple[Any, ...]:
    """What a reply says, without how long it took."""
    return (response.completions, response.usage, response.finish_reasons, response.model, response.cached)


def run_batch(server: LMServer) -> tuple[list[LMResponse], RetryingLM]:
    lm = make_lm(server, timeout=TIMEOUT, num_retries=3)

    async def batch() -> list[LMResponse]:
        return list(await asyncio.gather(*(lm.complete(request) for request in batch_requests())))

    return run(lm, batch), lm


def test_a_batch_with_injected_faults_equals_a_fault_free_run(lm_server: LMServer) -> None:
    plan = fault_plan()
    injected = sum(len(faults) for faults in plan.values())
    assert 0.15 <= injected / (BATCH + injected) <= 0.25  # ~20% of the requests the server sees fail
    assert max(len(faults) for faults in plan.values()) == 3  # some calls need every retry

    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        faults = plan.get(request.body["messages"][-1]["content"], [])
        return faults[attempt] if attempt < len(faults) else None

    lm_server.rule = rule
    started = time.perf_counter()
    faulty, lm = run_batch(lm_server)
    elapsed = time.perf_counter() - started

    with LMServer() as clean_server:
        clean, _ = run_batch(clean_server)
        assert len(clean_server.requests) == BATCH

    assert [outcome(r) for r in faulty] == [outcome(r) for r in clean]
    assert [r.completions for r in faulty] == [[f"echo: call {i}"] for i in range(BATCH)]
    # Each logical call reached the server once plus once per fault it was given, no more.
    assert len(lm_server.requests) == BATCH + injected
    seen = Counter(request.body["messages"][-1]["content"] for request in lm_server.requests)
    assert seen == {f"call {i}": 1 + len(plan.get(f"call {i}", [])) for i in range(BATCH)}
    assert lm.retries == injected
    # Generous: httpcore spends seconds of CPU queueing 200 requests on a 100-connection pool.
    assert elapsed < 25, f"the batch took {elapsed:.1f}s"


# -- retries and failures are visible in the usage line, --usage-file and summary.json ---------


def _program(tmp_path: Path, num_retries: int) -> Path:
    (tmp_path / "dev.jsonl").write_text(
        "".join(json.dumps({"text": f"t{i}", "answer": f"T{i}"}) + "\n" for i in range(3))
    )
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            lm: {{model: openai/m, api_base: "${{BASE}}", num_retries: {num_retries}}}
            modules:
              echo: {{signature: "text -> answer"}}
            data: {{dev: dev.jsonl}}
            metric: exact_match
            """
        )
    )
    return path


def _shout(body: dict[str, Any]) -> str:
    text = body["messages"][-1]["content"].split("\n")[1]
    return f"[[ ## answer ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"


def test_a_run_whose_every_call_failed_says_so_with_its_retries(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.rule = lambda request, attempt: Reply(status=503, json=error_body("overloaded"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n{"text": "b"}\n')
    usage = tmp_path / "usage.json"
    done = dspx(
        "run", str(_program(tmp_path, 1)), "--batch", str(rows), "--usage-file", str(usage), BASE=lm_server.api_base
    )
    assert done.returncode != 0
    assert "no LM calls" not in done.stderr
    assert "openai/m · 2 calls failed (2 retries)" in done.stderr
    total = json.loads(usage.read_text())["total"]
    assert (total["calls"], total["failed_calls"], total["retries"]) == (0, 2, 2)
    assert len(lm_server.requests) == 4


def test_evaluate_summary_counts_retried_attempts(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = _shout
    # Every example's first attempt fails with a 500; its retry succeeds.
    lm_server.rule = lambda request, attempt: Reply(status=500, json=error_body("hiccup")) if attempt == 0 else None
    out = tmp_path / "run"
    done = dspx("evaluate", str(_program(tmp_path, 2)), "--output", str(out), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == 1.0
    total = summary["usage"]["total"]
    assert (total["calls"], total["failed_calls"], total["retries"]) == (3, 0, 3)
    assert "openai/m · 3 calls (3 retries)" in done.stderr


def test_calls_are_described_with_their_cached_failed_and_retried_parts() -> None:
    assert ModelUsage(calls=1).describe_calls() == "1 call"
    assert ModelUsage(calls=3, cached_calls=1).describe_calls() == "3 calls (1 cached)"
    assert ModelUsage(calls=3, failed_calls=1, retries=1).describe_calls() == "4 calls, 1 failed (1 retry)"
    assert ModelUsage(failed_calls=3, retries=2).describe_calls() == "3 calls failed (2 retries)"
    assert ModelUsage(failed_calls=1).describe_calls() == "1 call failed"


def test_compile_summary_counts_retried_attempts(lm_server: LMServer, tmp_path: Path) -> None:
    path = _program(tmp_path, 2)
    (tmp_path / "train.jsonl").write_text((tmp_path / "dev.jsonl").read_text())
    path.write_text(
        path.read_text().replace("data: {dev: dev.jsonl}", "data: {train: train.jsonl, dev: dev.jsonl}")
        + "optimizer: {type: labeled_few_shot, k: 1}\n"
    )
    lm_server.responder = _shout
    lm_server.rule = lambda request, attempt: Reply(status=503, json=error_body("hiccup")) if attempt == 0 else None
    done = dspx("compile", str(path), "-o", str(tmp_path / "state.json"), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)["usage"]["total"]
    # Every distinct request failed once before it was answered: one retry per answered call.
    assert total["calls"] > 0 and total["retries"] == total["calls"] and total["failed_calls"] == 0
