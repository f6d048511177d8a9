"""BestOfN, Refine and MultiChainComparison against a scripted OpenAI-compatible server on 127.0.0.1.

Attempts run one after another, so a responder that answers from a script in arrival order knows
which attempt it is answering. Prompts are compared with what DSPy itself sent for the same calls
(tests/fixtures/sampling/dspy_cases.json, written by generate.py beside it).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Prediction, Signature
from dspx_cli.errors import AdapterParseError
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Message, Usage
from dspx_cli.lm.config import LMConfig
from dspx_cli.modules import ChainOfThought, Predict
from dspx_cli.modules.best_of_n import BestOfN
from dspx_cli.modules.multi_chain_comparison import MultiChainComparison
from dspx_cli.modules.refine import Refine
from dspx_cli.modules.trace import TraceStep, hint_scope, sampling_override, trace_scope
from dspx_cli.program.context import RunContext
from tests.lm_server import LMServer

CASES = json.loads((Path(__file__).parent / "fixtures" / "sampling" / "dspy_cases.json").read_text())
QUESTION = "What is the capital of Belgium?"


def reply(**fields: Any) -> str:
    sections = "\n\n".join(f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items())
    return f"{sections}\n\n[[ ## completed ## ]]"


def scripted(*texts: str) -> Callable[[dict[str, Any]], str]:
    """Answers in arrival order; attempts are sequential, so the n-th reply is the n-th call's."""
    remaining: Iterator[str] = iter(texts)
    return lambda body: next(remaining)


class Recording(LM):
    """Outermost wrapper: every request a module made, with its rollout id (which is never sent)."""

    def __init__(self, inner: LM) -> None:
        self.inner = inner
        self.model = inner.model
        self.requests: list[LMRequest] = []
        self.responses: list[LMResponse] = []

    async def complete(self, request: LMRequest) -> LMResponse:
        self.requests.append(request)
        response = await self.inner.complete(request)
        self.responses.append(response)
        return response

    def usage(self) -> Usage:
        """What every call cost (cache hits included: they are what the prediction is made of)."""
        return sum((response.usage for response in self.responses), Usage())


def with_lm(
    server: LMServer, tmp_path: Path, work: Callable[[Recording], Awaitable[Any]], **config: Any
) -> tuple[Recording, Any]:
    """Run `work` with an LM on `server` behind dspx's real stack (cache included)."""

    async def main() -> tuple[Recording, Any]:
        context = RunContext(cache_dir=tmp_path / "cache", history=False)
        try:
            lm = Recording(context.lm(LMConfig("openai/test-model", api_base=server.api_base, num_retries=0, **config)))
            return lm, await work(lm)
        finally:
            await context.aclose()

    return asyncio.run(main())


def sent(server: LMServer) -> list[dict[str, Any]]:
    return [{"messages": r.body["messages"], "temperature": r.body.get("temperature")} for r in server.requests]


def qa(lm: LM) -> ChainOfThought:
    return ChainOfThought(Signature.parse("question -> answer"), lm)


def capital_reward(inputs: dict[str, Any], prediction: Prediction) -> float:
    return 1.0 if prediction.answer == "Brussels" else 0.0


class DraftAndCheck:
    """A module with two predictors, named as DSPy names the attributes `draft` and `check`."""

    def __init__(self, lm: LM) -> None:
        self.draft = ChainOfThought(Signature.parse("question -> answer"), lm)
        self.check = Predict(
            Signature.parse("question, answer -> verdict: bool"),
            lm,
            demos=[{"question": "2 + 2?", "answer": "4", "verdict": True}],
        )
        self.signature = Signature.parse("question -> answer, verdict: bool")

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return [("draft.predict", self.draft.predict), ("check", self.check)]

    def messages(self, inputs: dict[str, Any]) -> list[Message]:
        return self.draft.messages(inputs)

    async def acall(self, question: str) -> Prediction:
        draft = await self.draft.acall(question=question)
        checked = await self.check.acall(question=question, answer=draft.answer)
        prediction = Prediction(answer=draft.answer, verdict=checked.verdict)
        prediction.usage = draft.usage + checked.usage
        return prediction


# ----- BestOfN ----------------------------------------------------------------------------------------------------


def test_best_of_n_stops_at_the_first_prediction_reaching_the_threshold(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = scripted(
        reply(reasoning="a guess", answer="Paris"), reply(reasoning="recalled", answer="Brussels"), "never asked"
    )

    async def work(lm: Recording) -> Prediction:
        return await BestOfN(qa(lm), N=3, reward_fn=capital_reward, threshold=1.0).acall(question=QUESTION)

    lm, prediction = with_lm(lm_server, tmp_path, work, temperature=0.0)
    assert prediction.answer == "Brussels"
    assert len(lm_server.requests) == 2  # the third attempt never ran
    # Every attempt samples at 1.0 whatever the program's temperature, under its own rollout id.
    assert [r.body["temperature"] for r in lm_server.requests] == [1.0, 1.0]
    assert [(r.temperature, r.rollout_id) for r in lm.requests] == [(1.0, 0), (1.0, 1)]
    assert lm.requests[0].messages == lm.requests[1].messages  # only the rollout id tells them apart
    assert prediction.usage == lm.usage()  # the prediction accounts for every attempt


def test_best_of_n_attempts_are_distinct_cache_entries_replayed_in_order(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = scripted(
        *(reply(reasoning="r", answer=a) for a in ["Paris", "Ghent", "Brussels"]), "no fourth call"
    )

    async def work(lm: Recording) -> list[str]:
        best = BestOfN(qa(lm), N=3, reward_fn=capital_reward, threshold=1.0)
        first = await best.acall(question=QUESTION)
        again = await best.acall(question=QUESTION)  # same rollout ids: every attempt is a cache hit
        return [first.answer, again.answer]

    lm, answers = with_lm(lm_server, tmp_path, work, temperature=0.0)
    assert answers == ["Brussels", "Brussels"]
    assert len(lm_server.requests) == 3
    assert [r.rollout_id for r in lm.requests] == [0, 1, 2, 0, 1, 2]


def test_best_of_n_keeps_the_highest_reward_and_gives_the_caller_only_its_trace(
    lm_server: LMServer, tmp_path: Path
) -> None:
    answers = ["Paris", "Brussels!", "Ghent"]
    lm_server.responder = scripted(*(reply(reasoning=f"r{i}", answer=a) for i, a in enumerate(answers)))
    rewards = {"Paris": 0.2, "Brussels!": 0.9, "Ghent": 0.5}

    async def work(lm: Recording) -> tuple[Prediction, list[TraceStep]]:
        best = BestOfN(qa(lm), N=3, reward_fn=lambda inputs, p: rewards[p.answer], threshold=1.0)
        with trace_scope() as trace:
            prediction = await best.acall(question=QUESTION)
        return prediction, trace

    lm, (prediction, trace) = with_lm(lm_server, tmp_path, work)
    assert len(lm_server.requests) == 3
    assert prediction.answer == "Brussels!" and prediction.reasoning == "r1"
    ((_, inputs, step),) = trace
    assert inputs == {"question": QUESTION} and step is prediction
    assert len(lm.responses) == 3 and prediction.usage == lm.usage()  # all three attempts were paid for


def test_best_of_n_sets_every_predictor_and_starts_at_the_rollout_in_force(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> str:
        return (
            reply(verdict="False")
            if "`verdict`" in body["messages"][0]["content"]
            else reply(reasoning="r", answer="x")
        )

    lm_server.responder = respond

    async def work(lm: Recording) -> Prediction:
        best = BestOfN(DraftAndCheck(lm), N=2, reward_fn=lambda inputs, p: float(p.verdict), threshold=1.0)
        assert [name for name, _ in best.named_predictors()] == ["module.draft.predict", "module.check"]
        # A bootstrap round sets a rollout id for the whole run; DSPy starts from the LM's.
        with sampling_override(temperature=0.3, rollout_id=5):
            return await best.acall(question=QUESTION)

    lm, prediction = with_lm(lm_server, tmp_path, work)
    assert prediction.verdict is False
    assert [(r.temperature, r.rollout_id) for r in lm.requests] == [(1.0, 5), (1.0, 5), (1.0, 6), (1.0, 6)]


def test_best_of_n_async_reward(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = scripted(reply(reasoning="r", answer="Ghent"), reply(reasoning="r", answer="Brussels"))
    seen: list[dict[str, Any]] = []

    async def reward(inputs: dict[str, Any], prediction: Prediction) -> float:
        seen.append(inputs)
        await asyncio.sleep(0)
        return capital_reward(inputs, prediction)

    async def work(lm: Recording) -> Prediction:
        return await BestOfN(qa(lm), N=5, reward_fn=reward, threshold=1.0).acall(question=QUESTION)

    _, prediction = with_lm(lm_server, tmp_path, work)
    assert prediction.answer == "Brussels" and seen == [{"question": QUESTION}] * 2


def failing_reward(fail_on: set[str]) -> Callable[[dict[str, Any], Prediction], float]:
    def reward(inputs: dict[str, Any], prediction: Prediction) -> float:
        if prediction.answer in fail_on:
            raise RuntimeError(f"cannot score {prediction.answer}")
        return 0.5

    return reward


@pytest.mark.parametrize(
    ("answers", "n", "fail_count", "outcome", "calls"),
    [
        # DSPy's rule: failure at 0-based attempt i raises when i > the failures still allowed.
        (["bad", "bad", "bad"], 3, None, "raises", 3),  # allowed 3 -> 2 -> 1; i=2 > 1 raises
        (["bad", "bad", "ok"], 3, 1, "raises", 2),  # allowed 1 -> 0; i=1 > 0 raises
        (["bad", "ok", "bad"], 3, None, "ok", 3),  # failures tolerated, the scored attempt returned
        (["ok", "bad", "bad"], 3, 1, "raises", 3),  # i=1 > 1 is false (allowed 0), i=2 > 0 raises
        (["bad", "bad"], 2, None, "raises", 2),  # DSPy would return None here; dspx raises the last error
    ],
)
def test_best_of_n_fail_count(
    lm_server: LMServer, tmp_path: Path, answers: list[str], n: int, fail_count: int | None, outcome: str, calls: int
) -> None:
    lm_server.responder = scripted(*(reply(reasoning="r", answer=a) for a in answers))

    async def work(lm: Recording) -> Prediction:
        best = BestOfN(qa(lm), N=n, reward_fn=failing_reward({"bad"}), threshold=1.0, fail_count=fail_count)
        return await best.acall(question=QUESTION)

    if outcome == "raises":
        with pytest.raises(RuntimeError, match="cannot score bad"):
            with_lm(lm_server, tmp_path, work)
    else:
        assert with_lm(lm_server, tmp_path, work)[1].answer == "ok"
    assert len(lm_server.requests) == calls


def test_best_of_n_counts_a_reply_that_does_not_parse_as_a_failure(lm_server: LMServer, tmp_path: Path) -> None:
    # Attempt 1: the chat reply and its JSON fallback both fail to parse; attempt 2 works.
    lm_server.responder = scripted("no fields", "still none", reply(reasoning="r", answer="Brussels"))

    async def work(lm: Recording) -> Prediction:
        return await BestOfN(qa(lm), N=2, reward_fn=capital_reward, threshold=1.0).acall(question=QUESTION)

    _, prediction = with_lm(lm_server, tmp_path, work)
    assert prediction.answer == "Brussels" and len(lm_server.requests) == 3

    lm_server.responder = lambda body: "never parses"
    with pytest.raises(AdapterParseError):
        with_lm(
            lm_server,
            tmp_path,
            lambda lm: BestOfN(qa(lm), N=1, reward_fn=capital_reward, threshold=1.0).acall(question="other"),
        )


def test_copies_own_their_predictors_at_every_depth() -> None:
    inner = qa(None)  # type: ignore[arg-type]
    inner.predict.demos = [{"question": "q", "reasoning": "r", "answer": "a"}]
    best = BestOfN(inner, N=2, reward_fn=capital_reward, threshold=1.0)
    clone = copy.copy(best)
    ((_, original),), ((name, copied),) = best.named_predictors(), clone.named_predictors()
    assert name == "module.predict" and copied is not original and copied.demos == original.demos
    copied.demos.clear()
    assert original.demos  # an optimizer changing the copy leaves the original alone
    assert [n for n, _ in BestOfN(Predict(Signature.parse("a -> b")), 2, capital_reward, 1.0).named_predictors()] == [
        "module"
    ]


# ----- Refine ------------------------------------------------------------------------------------------------------


def refine_case(case_id: str) -> dict[str, Any]:
    return next(case for case in CASES["refine"] if case["id"] == case_id)


def test_refine_sends_dspy_feedback_and_the_hint_byte_for_byte(lm_server: LMServer, tmp_path: Path) -> None:
    case = refine_case("refine_cot")

    def respond(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        if "program_code" in system:
            return reply(discussion="The module answered with a guess.", advice=json.dumps(case["advice"]))
        if "hint_" in system:
            return reply(reasoning="The hint says Brussels.", answer="Brussels")
        return reply(reasoning="Maybe it is Paris.", answer="Paris, maybe")

    lm_server.responder = respond

    async def work(lm: Recording) -> tuple[Prediction, list[TraceStep]]:
        refine = Refine(
            qa(lm),
            N=case["N"],
            reward_fn=capital_reward,
            threshold=case["threshold"],
            program_code=case["program_code"],
            reward_code=case["reward_code"],
        )
        with trace_scope() as trace:
            return await refine.acall(**case["inputs"]), trace

    lm, (prediction, trace) = with_lm(lm_server, tmp_path, work)
    assert sent(lm_server) == case["requests"]  # attempt, OfferFeedback, hinted attempt: DSPy's messages
    assert dict(prediction) == case["prediction"]
    # The hinted attempt: DSPy's extra input field, holding the advice for `predict`.
    hinted = lm_server.requests[2].body["messages"]
    assert "2. `hint_` (str): A hint to the module from an earlier run" in hinted[0]["content"]
    assert hinted[1]["content"].startswith(
        f"[[ ## question ## ]]\n{QUESTION}\n\n[[ ## hint_ ## ]]\n"
        "Name only the city: for the capital of Belgium answer Brussels.\n\n"
    )
    # Attempts sample at 1.0 with their rollout ids; the feedback call keeps the LM's own settings.
    assert [(r.temperature, r.rollout_id) for r in lm.requests] == [(1.0, 0), (None, None), (1.0, 1)]
    # The caller's trace: the returned attempt only, its inputs as the caller gave them.
    ((_, inputs, step),) = trace
    assert inputs == {"question": QUESTION} and step is prediction


def test_refine_hints_every_predictor_and_shows_hints_in_the_next_trajectory(
    lm_server: LMServer, tmp_path: Path
) -> None:
    case = refine_case("refine_two_predictors")

    def respond(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        if "program_code" in system:
            return reply(discussion="The check rejected a fine answer.", advice=json.dumps(case["advice"]))
        if "`verdict`" in system:
            return reply(verdict="False")
        return reply(reasoning="Belgium's capital.", answer="Brussels")

    lm_server.responder = respond

    async def work(lm: Recording) -> Prediction:
        refine = Refine(
            DraftAndCheck(lm),
            N=case["N"],
            reward_fn=lambda inputs, p: 1.0 if p.verdict else 0.25,
            threshold=case["threshold"],
            program_code=case["program_code"],
            reward_code=case["reward_code"],
        )
        return await refine.acall(**case["inputs"])

    _, prediction = with_lm(lm_server, tmp_path, work)
    # 3 attempts of 2 calls, feedback after the first two only; hints N/A for `draft.predict`, the
    # check's demo turned partial by the hint field, hints in the second trajectory: all as DSPy.
    assert sent(lm_server) == case["requests"]
    assert dict(prediction) == case["prediction"]


def test_refine_on_a_predict_calls_it_self_and_uses_the_given_lm(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = scripted(
        reply(answer="Ghent"),
        reply(discussion="d", advice=json.dumps({"self": "Say Brussels."})),
        reply(answer="Brussels"),
    )

    async def work(lm: Recording) -> Prediction:
        predict = Predict(Signature.parse("question -> answer"))  # no LM of its own: the feedback LM is given
        refine = Refine(predict, N=3, reward_fn=capital_reward, threshold=1.0, lm=lm)
        predict.lm = lm
        return await refine.acall(question=QUESTION)

    _, prediction = with_lm(lm_server, tmp_path, work)
    assert prediction.answer == "Brussels"
    feedback = lm_server.requests[1].body["messages"][1]["content"]
    assert '[[ ## module_names ## ]]\n[\n  "self"\n]' in feedback
    assert (
        "\nModule self\n\tInput Fields:\n\t\t1. `question` (str):\n\tOutput Fields:\n\t\t1. `answer` (str):\n"
        in feedback
    )
    assert (
        "[[ ## reward_code ## ]]\ndef capital_reward(inputs: dict[str, Any], prediction: Prediction) -> float:\n"
        in feedback
    )
    assert (
        lm_server.requests[2]
        .body["messages"][1]["content"]
        .startswith(f"[[ ## question ## ]]\n{QUESTION}\n\n[[ ## hint_ ## ]]\nSay Brussels.\n\n")
    )


def test_refine_without_advice_sends_no_hint_and_skips_feedback_after_the_last_attempt(
    lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = scripted(
        reply(reasoning="r", answer="Ghent"), reply(discussion="d", advice="{}"), reply(reasoning="r", answer="Liège")
    )

    async def work(lm: Recording) -> Prediction:
        return await Refine(qa(lm), N=2, reward_fn=capital_reward, threshold=1.0).acall(question=QUESTION)

    _, prediction = with_lm(lm_server, tmp_path, work)
    assert prediction.answer == "Ghent"  # equal rewards: the first stays
    assert len(lm_server.requests) == 3  # attempt, feedback, attempt (no feedback after the last)
    assert "hint_" not in json.dumps(lm_server.requests[2].body)  # empty advice: DSPy adds no field


def test_hints_change_only_the_prompt_inside_their_scope() -> None:
    predict = Predict(Signature.parse("question -> answer"), demos=[{"question": "q", "answer": "a"}])
    plain = predict.messages({"question": "x"})
    other = Predict(Signature.parse("question -> answer"))
    with hint_scope({other: "for the other one"}):
        hinted = predict.messages({"question": "x"})
    assert predict.messages({"question": "x"}) == plain and predict.signature == Signature.parse("question -> answer")
    assert hinted[-1]["content"].startswith("[[ ## question ## ]]\nx\n\n[[ ## hint_ ## ]]\nN/A\n\n")
    assert hinted[1]["content"].startswith("This is an example of the task, though some input or output fields")


# ----- MultiChainComparison ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["multi_chain_comparison"], ids=lambda case: case["id"])
def test_multi_chain_comparison_prompt_is_dspys(lm_server: LMServer, tmp_path: Path, case: dict[str, Any]) -> None:
    lm_server.responder = lambda body: reply(**case["reply"])
    signature = Signature.from_spec(case["signature"])

    async def work(lm: Recording) -> Prediction:
        mcc = MultiChainComparison(signature, lm, M=case["M"])
        return await mcc.acall(completions=[Prediction(**c) for c in case["completions"]], **case["inputs"])

    _, prediction = with_lm(lm_server, tmp_path, work)
    assert sent(lm_server) == case["requests"]  # attempts, fields, instructions and temperature 0.7
    assert dict(prediction) == case["prediction"]
    # The preview shows the same messages without calling anything.
    mcc = MultiChainComparison(signature, M=case["M"])
    assert mcc.messages({**case["inputs"], "completions": case["completions"]}) == case["requests"][0]["messages"]
    assert [name for name, _ in mcc.named_predictors()] == ["predict", "sample.predict"]
    assert [name for name, _ in MultiChainComparison(signature, M=2, sample=False).named_predictors()] == ["predict"]


def test_multi_chain_comparison_samples_its_own_attempts_when_not_given(lm_server: LMServer, tmp_path: Path) -> None:
    attempts = [("Recall it.\nMore.", "Brussels"), ("Think of Benelux.", "Antwerp"), ("EU seat.", "Brussels")]

    def respond(body: dict[str, Any]) -> str | list[str]:
        if "reasoning_attempt_1" in body["messages"][0]["content"]:
            return reply(rationale="Most say Brussels.", answer="Brussels")
        return [reply(reasoning=r, answer=a) for r, a in attempts]

    lm_server.responder = respond

    mcc_predictors: list[tuple[str, Predict]] = []

    async def work(lm: Recording) -> tuple[Prediction, list[TraceStep]]:
        mcc = MultiChainComparison(Signature.parse("question -> answer"), lm, M=3, temperature=0.0)
        mcc_predictors.extend(mcc.named_predictors())
        with trace_scope() as trace:
            return await mcc.acall(question=QUESTION), trace

    lm, (prediction, trace) = with_lm(lm_server, tmp_path, work)
    sample, compare = (r.body for r in lm_server.requests)
    # The sampler: a ChainOfThought at n=M, raised to 0.7 as DSPy raises greedy n > 1 calls.
    assert (sample["n"], sample["temperature"]) == (3, 0.7)
    assert "`reasoning` (str)" in sample["messages"][0]["content"]
    assert ("n" not in compare, compare["temperature"]) == (True, 0.0)  # n = 1 is left out, as DSPy does
    assert compare["messages"][1]["content"] == (
        f"[[ ## question ## ]]\n{QUESTION}\n\n"
        "[[ ## reasoning_attempt_1 ## ]]\n«I'm trying to Recall it. I'm not sure but my prediction is Brussels»\n\n"
        "[[ ## reasoning_attempt_2 ## ]]\n«I'm trying to Think of Benelux. I'm not sure but my prediction is Antwerp»\n\n"
        "[[ ## reasoning_attempt_3 ## ]]\n«I'm trying to EU seat. I'm not sure but my prediction is Brussels»\n\n"
        "Respond with the corresponding output fields, starting with the field `[[ ## rationale ## ]]`, "
        "then `[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
    )
    assert dict(prediction) == {"rationale": "Most say Brussels.", "answer": "Brussels"}
    assert [step.predictor for step in trace] == [predictor for _, predictor in reversed(mcc_predictors)]
    assert prediction.usage == lm.usage()  # the sampling call and the comparison


def test_multi_chain_comparison_needs_exactly_m_attempts() -> None:
    mcc = MultiChainComparison(Signature.parse("question -> answer"), M=3, sample=False)
    assert [f.name for f in mcc.signature.inputs] == ["question"]
    assert [f.name for f in mcc.signature.outputs] == ["rationale", "answer"]
    with pytest.raises(ValueError, match=r"The number of attempts \(2\) doesn't match the expected number M \(3\)"):
        mcc.messages({"question": "q", "completions": [{"reasoning": "r", "answer": "a"}] * 2})
    with pytest.raises(ValueError, match="needs `completions`"):
        mcc.messages({"question": "q"})
    with pytest.raises(ValueError, match="`reasoning` or `rationale`"):
        mcc.attempt_fields([{"answer": "a"}] * 3)


def test_refine_without_any_lm_for_feedback_fails_before_the_first_attempt() -> None:
    refine = Refine(qa(None), N=2, reward_fn=capital_reward, threshold=1.0)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no LM for its feedback calls"):
        asyncio.run(refine.acall(question=QUESTION))
