"""ReAct against a scripted OpenAI-compatible server: tool calls, errors and timeouts as observations,
max_iters, concurrency, context-window truncation, and the options passed to its predictors."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from dspx_cli.core import Signature
from dspx_cli.errors import LMError
from dspx_cli.lm import LM, LMConfig, create_lm
from dspx_cli.lm.context_window import (
    ContextWindowExceededError,
    is_context_window_error,
)
from dspx_cli.lm.openai_compat import LMRequestError
from dspx_cli.lm.retry import RetriesExhaustedError
from dspx_cli.modules.calculator import calculator
from dspx_cli.modules.react import ReAct
from dspx_cli.modules.tool import Tool
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

T = TypeVar("T")
QA = Signature.parse("question -> answer")
OVERFLOW = "This model's maximum context length is 4096 tokens. However, your messages resulted in 5000 tokens."


def reply(**fields: Any) -> str:
    """A ChatAdapter reply holding these output fields."""
    parts = [f"[[ ## {name} ## ]]\n{json.dumps(v) if isinstance(v, dict) else v}" for name, v in fields.items()]
    return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


def act(tool: str, args: dict[str, Any] | None = None, thought: str = "Next.") -> str:
    return reply(next_thought=thought, next_tool_name=tool, next_tool_args=args or {})


def is_extract(body: dict[str, Any]) -> bool:
    return "`next_thought`" not in body["messages"][0]["content"]


def user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def steps_seen(body: dict[str, Any]) -> list[int]:
    """The step numbers of the trajectory in a request."""
    return [int(n) for n in re.findall(r"\[\[ ## thought_(\d+) ## \]\]", user(body))]


def next_step(body: dict[str, Any]) -> int:
    seen = steps_seen(body)
    return max(seen) + 1 if seen else 0


def step_keys(*steps: int) -> list[str]:
    return [f"{key}_{i}" for i in steps for key in ("thought", "tool_name", "tool_args", "observation")]


def run(coro_factory: Callable[[LM], Coroutine[Any, Any, T]], server: LMServer) -> T:
    async def main() -> T:
        lm = create_lm(LMConfig(model="openai/agent", api_base=server.api_base, num_retries=0))
        try:
            return await coro_factory(lm)
        finally:
            await lm.aclose()

    return asyncio.run(main())


# ----- a whole run -----------------------------------------------------------------------------


def test_two_tools_then_finish(lm_server: LMServer) -> None:
    looked_up: list[tuple[str, int]] = []

    def get_population(city: str, year: int = 2020) -> str:
        """Population of a city, in millions."""
        looked_up.append((city, year))
        return {"Paris": "2.1 million"}.get(city, "unknown")

    def script(body: dict[str, Any]) -> str:
        if is_extract(body):
            return reply(reasoning="Twice 2.1 million.", answer="4.2 million")
        return [
            act("get_population", {"city": "Paris", "year": 2024}, "Look it up."),
            act("calculator", {"expression": "2.1 * 2"}, "Double it."),
            act("finish", {}, "Done."),
        ][next_step(body)]

    lm_server.responder = script

    async def go(lm: LM) -> tuple[ReAct, Any]:
        react = ReAct(QA, [calculator, get_population], lm)
        return react, await react.acall(question="What is twice the population of Paris?")

    react, result = run(go, lm_server)
    assert looked_up == [("Paris", 2024)]
    assert result.trajectory == {
        "thought_0": "Look it up.",
        "tool_name_0": "get_population",
        "tool_args_0": {"city": "Paris", "year": 2024},
        "observation_0": "2.1 million",
        "thought_1": "Double it.",
        "tool_name_1": "calculator",
        "tool_args_1": {"expression": "2.1 * 2"},
        "observation_1": 4.2,
        "thought_2": "Done.",
        "tool_name_2": "finish",
        "tool_args_2": {},
        "observation_2": "Completed.",
    }
    assert list(result.keys()) == ["trajectory", "reasoning", "answer"]
    assert result.answer == "4.2 million" and result.reasoning == "Twice 2.1 million."
    bodies = [r.body for r in lm_server.requests]
    assert len(bodies) == 4 and is_extract(bodies[3])
    assert "[[ ## observation_1 ## ]]\n4.2\n\n" in user(bodies[2])
    assert '[[ ## tool_args_0 ## ]]\n{"city": "Paris", "year": 2024}' in user(bodies[3])
    # Usage adds up every call (the server counts words).
    prompt_words = sum(sum(len(m["content"].split()) for m in b["messages"]) for b in bodies)
    assert result.usage.prompt_tokens == prompt_words
    # `dspx inspect` shows the first call's prompt.
    assert react.messages({"question": "What is twice the population of Paris?"}) == bodies[0]["messages"]


def test_tool_errors_and_timeouts_become_observations(lm_server: LMServer) -> None:
    def sensor() -> str:
        """Read the sensor."""
        raise RuntimeError("sensor offline")

    async def slow_search(query: str) -> str:
        """Search slowly."""
        await asyncio.sleep(5)
        return "too late"

    def script(body: dict[str, Any]) -> str:
        if is_extract(body):
            return reply(reasoning="Nothing worked.", answer="unknown")
        return [
            act("sensor"),
            act("slow_search", {"query": "x"}),
            act("sensor", {"volume": 11}),
            act("calculator", {"expression": "1 / 0"}),
            act("finish"),
        ][next_step(body)]

    lm_server.responder = script
    tools = [sensor, Tool(slow_search, timeout=0.2), calculator]
    started = time.perf_counter()
    result = run(lambda lm: ReAct(QA, tools, lm).acall(question="Is it hot?"), lm_server)
    assert time.perf_counter() - started < 4

    trajectory = result.trajectory
    crash = trajectory["observation_0"]
    assert crash.startswith("Execution error in sensor: \nTraceback (most recent call last):\n  File ")
    assert 'raise RuntimeError("sensor offline")' in crash and crash.endswith("\nRuntimeError: sensor offline")
    assert "dspx_cli" not in crash and "threading" not in crash
    assert trajectory["observation_1"] == (
        "Execution error in slow_search: \nTimeoutError: slow_search did not finish within 0.2 seconds"
    )
    assert trajectory["observation_2"] == (
        "Execution error in sensor: \nValueError: Arg volume is not in the tool's args."
    )
    assert trajectory["observation_3"] == "Execution error in calculator: \nValueError: division by zero (/ by 0)"
    assert trajectory["observation_4"] == "Completed."
    assert result.answer == "unknown"
    # The LM read each error in its next prompt.
    assert "RuntimeError: sensor offline" in user(lm_server.requests[1].body)
    assert "TimeoutError: slow_search did not finish" in user(lm_server.requests[2].body)


def test_max_iters_ends_the_loop_then_extracts(lm_server: LMServer) -> None:
    lm_server.responder = lambda body: (
        reply(reasoning="Gave up.", answer="2") if is_extract(body) else act("calculator", {"expression": "1 + 1"})
    )

    async def go(lm: LM) -> list[Any]:
        react = ReAct(QA, [calculator], lm, max_iters=3)
        return [await react.acall(question="1+1?"), await react.acall(question="1+1?", max_iters=1)]

    three, one = run(go, lm_server)
    assert list(three.trajectory) == step_keys(0, 1, 2)
    assert all(three.trajectory[f"observation_{i}"] == 2 for i in range(3))
    assert len(one.trajectory) == 4 and one.answer == "2"
    extracts = [r for r in lm_server.requests if is_extract(r.body)]
    assert len(lm_server.requests) == 3 + 1 + 1 + 1 and len(extracts) == 2


def test_zero_iterations_only_extracts(lm_server: LMServer) -> None:
    lm_server.responder = lambda body: reply(reasoning="No tools.", answer="?")
    result = run(lambda lm: ReAct(QA, [calculator], lm, max_iters=0).acall(question="q"), lm_server)
    assert result.trajectory == {} and result.answer == "?"
    assert len(lm_server.requests) == 1 and "[[ ## trajectory ## ]]\n\n\n" in user(lm_server.requests[0].body)


def test_concurrent_runs_keep_their_own_trajectories(lm_server: LMServer) -> None:
    lm_server.default_delay = 0.005  # let the 50 runs interleave at the server

    def number(body: dict[str, Any]) -> int:
        found = re.search(r"\[\[ ## question ## \]\]\nWhat is (\d+) times 3\?", user(body))
        assert found is not None
        return int(found.group(1))

    def script(body: dict[str, Any]) -> str:
        n = number(body)
        if is_extract(body):
            # Answer with what the trajectory says: a mixed-up trajectory gives a wrong answer.
            found = re.search(r"\[\[ ## observation_0 ## \]\]\n(\S+)", user(body))
            assert found is not None
            return reply(reasoning=f"The calculator said {found.group(1)}.", answer=found.group(1))
        if next_step(body) == 0:
            return act("calculator", {"expression": f"{n} * 3"}, f"Multiply {n}.")
        return act("finish", {}, f"Done with {n}.")

    lm_server.responder = script

    async def go(lm: LM) -> list[Any]:
        react = ReAct(QA, [calculator], lm)
        return list(await asyncio.gather(*(react.acall(question=f"What is {n} times 3?") for n in range(50))))

    results = run(go, lm_server)
    for n, result in enumerate(results):
        assert result.answer == str(n * 3)
        assert result.trajectory == {
            "thought_0": f"Multiply {n}.",
            "tool_name_0": "calculator",
            "tool_args_0": {"expression": f"{n} * 3"},
            "observation_0": n * 3,
            "thought_1": f"Done with {n}.",
            "tool_name_1": "finish",
            "tool_args_1": {},
            "observation_1": "Completed.",
        }
    assert len(lm_server.requests) == 150
    assert lm_server.max_in_flight > 1


# ----- context window ----------------------------------------------------------------------------


def overflow_when(test: Callable[[dict[str, Any]], bool]) -> Callable[[RecordedRequest, int], Reply | None]:
    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        return Reply(status=400, json=error_body(OVERFLOW)) if test(request.body) else None

    return rule


def test_context_overflow_drops_the_oldest_steps(lm_server: LMServer) -> None:
    # A "context window" that holds two steps of trajectory: with three, the server refuses.
    lm_server.rule = overflow_when(lambda body: len(steps_seen(body)) >= 3)

    def script(body: dict[str, Any]) -> str:
        if is_extract(body):
            return reply(reasoning="Kept the last steps.", answer="done")
        step = next_step(body)
        return act("finish") if step == 5 else act("calculator", {"expression": f"{step} + 100"}, f"Step {step}.")

    lm_server.responder = script
    result = run(lambda lm: ReAct(QA, [calculator], lm).acall(question="Count."), lm_server)

    # Steps 0..2 were dropped one at a time; the numbering goes on.
    assert list(result.trajectory) == step_keys(4, 5)
    assert result.trajectory["observation_4"] == 104 and result.answer == "done"
    seen = [steps_seen(r.body) for r in lm_server.requests]
    assert seen == [
        [],
        [0],
        [0, 1],
        [0, 1, 2],
        [1, 2],  # overflow, then without step 0
        [1, 2, 3],
        [2, 3],
        [2, 3, 4],
        [3, 4],
        [3, 4, 5],
        [4, 5],  # the extract call truncates the same way
    ]
    assert is_extract(lm_server.requests[-1].body) and is_extract(lm_server.requests[-2].body)


def test_overflow_with_a_single_step_ends_the_loop_and_fails_the_extract(lm_server: LMServer) -> None:
    lm_server.rule = overflow_when(lambda body: len(steps_seen(body)) >= 1)
    lm_server.responder = lambda body: act("calculator", {"expression": "2 * 2"})
    with pytest.raises(ContextWindowExceededError, match="cannot be truncated because it only has one tool call"):
        run(lambda lm: ReAct(QA, [calculator], lm).acall(question="q"), lm_server)
    # react step 0, react with one step (overflow: loop ends), extract with one step (overflow: fails)
    assert [steps_seen(r.body) for r in lm_server.requests] == [[], [0], [0]]


def test_overflow_after_three_truncations_is_an_error(lm_server: LMServer) -> None:
    lm_server.rule = overflow_when(is_extract)

    def script(body: dict[str, Any]) -> str:
        step = next_step(body)
        return act("finish") if step == 4 else act("calculator", {"expression": "1"})

    lm_server.responder = script
    with pytest.raises(ContextWindowExceededError, match="even after 3 attempts") as caught:
        run(lambda lm: ReAct(QA, [calculator], lm).acall(question="q"), lm_server)
    cause = caught.value.__cause__
    assert isinstance(caught.value, LMError) and cause is not None and is_context_window_error(cause)
    extracts = [steps_seen(r.body) for r in lm_server.requests if is_extract(r.body)]
    assert extracts == [[0, 1, 2, 3, 4], [1, 2, 3, 4], [2, 3, 4]]


def test_other_lm_errors_are_not_truncation(lm_server: LMServer) -> None:
    lm_server.rule = lambda request, attempt: (
        Reply(status=400, json=error_body("temperature must be at most 2")) if steps_seen(request.body) else None
    )
    lm_server.responder = lambda body: act("calculator", {"expression": "1"})
    with pytest.raises(LMError, match="temperature must be at most 2"):
        run(lambda lm: ReAct(QA, [calculator], lm).acall(question="q"), lm_server)
    assert len(lm_server.requests) == 2


@pytest.mark.parametrize(
    "message",
    [
        OVERFLOW,
        "The decoder prompt (length 9000) is longer than the maximum model length of 8192.",
        "the request exceeds the available context size, try increasing it",
        "local model smollm2.gguf: Requested tokens (2100) exceed context window of 2048",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "Error code: context_length_exceeded",
        "input length exceeds the context length",
        "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens.",
    ],
)
def test_context_window_errors_are_recognised(message: str) -> None:
    assert is_context_window_error(LMRequestError(f"HTTP 400 from http://x/v1 (model 'm'): {message}", status=400))
    assert is_context_window_error(LMError(message))


def test_other_errors_are_not_context_window_errors() -> None:
    assert not is_context_window_error(LMRequestError("HTTP 400: unknown parameter 'foo'", status=400))
    # A rate limit talks about tokens too, but it is not an overflow.
    limited = "HTTP 429 rate limited: too many tokens per minute"
    assert not is_context_window_error(LMRequestError(limited, status=429, retryable=True))
    last = LMRequestError(limited, status=429, retryable=True)
    assert not is_context_window_error(RetriesExhaustedError(limited, attempts=4, last=last))
    assert not is_context_window_error(ValueError(OVERFLOW))
    assert is_context_window_error(ContextWindowExceededError("anything"))


# ----- failures that end the run, as in DSPy ----------------------------------------------------------


def test_unparseable_step_ends_the_loop_and_extracts(lm_server: LMServer) -> None:
    # A deliberate difference from DSPy 3.4.1, which fails the run: the loop ends, extract answers.
    fallbacks: list[int] = []
    lm_server.responder = lambda body: (
        reply(reasoning="r", answer="a") if is_extract(body) else act("teleport", {"to": "Mars"})
    )
    result = run(
        lambda lm: ReAct(QA, [calculator], lm, on_fallback=lambda: fallbacks.append(1)).acall(question="q"),
        lm_server,
    )
    assert result.trajectory == {} and result.answer == "a"
    assert fallbacks == [1] and len(lm_server.requests) == 3  # react, its JSON retry, extract


# ----- construction and options ------------------------------------------------------------------


def test_predictor_names_options_and_demos(lm_server: LMServer) -> None:
    demo = {"question": "q0", "trajectory": "", "next_thought": "t", "next_tool_name": "finish", "next_tool_args": {}}
    lm_server.responder = lambda body: reply(reasoning="r", answer="a") if is_extract(body) else act("finish")

    async def go(lm: LM) -> ReAct:
        react = ReAct(QA, [calculator], lm, temperature=0.3, max_tokens=77, extra={"seed": 5}, demos=[demo])
        await react.acall(question="q")
        return react

    react = run(go, lm_server)
    assert [name for name, _ in react.named_predictors()] == ["react", "extract.predict"]
    assert react.react.demos == [demo] and react.extract.predict.demos == []
    assert str(react.extract.predict.signature) == "question: str, trajectory: str -> reasoning: str, answer: str"
    for request in lm_server.requests:
        assert (request.body["temperature"], request.body["max_tokens"], request.body["seed"]) == (0.3, 77, 5)
    first = lm_server.requests[0].body["messages"]
    assert len(first) == 4 and first[1]["content"].startswith("[[ ## question ## ]]\nq0")  # the demo's turns


def test_tool_table() -> None:
    def finish() -> str:
        """A user tool that takes the built-in's name."""
        return "mine"

    def lookup(key: str) -> str:
        """First version."""
        return key

    def lookup_again(key: str) -> str:
        """Second version."""
        return key

    react = ReAct(QA, [lookup, finish, Tool(lookup_again, name="lookup"), Tool(calculator, name="calc")])
    assert list(react.tools) == ["lookup", "finish", "calc"]
    assert react.tools["lookup"].desc == "Second version."
    assert react.tools["finish"].desc.startswith("Marks the task as complete.")
    system = react.react.messages({"question": "q", "trajectory": ""})[0]["content"]
    assert "Literal['lookup', 'finish', 'calc']" in system


def test_bad_max_iters_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_iters"):
        ReAct(QA, [calculator], max_iters=-1)
