"""ReAct and Tool against DSPy's own output (tests/fixtures/react/golden.json, see its README).

Each recorded run is replayed against the loopback LM server: the server answers each prompt with
the reply DSPy's scripted LM gave to the same prompt, so every message dspx sends (system and user
turns of every react step and of the extract step, after truncations too) must be DSPy's byte for
byte, and the final trajectory and outputs must be DSPy's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core import Signature
from dspx_cli.lm import LMConfig, create_lm
from dspx_cli.modules.calculator import calculator
from dspx_cli.modules.react import ReAct
from tests import react_tools
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "react" / "golden.json").read_text())
RUNS = {run["case"]: run for run in GOLDEN["runs"]}
OVERFLOW = "context_window_exceeded"


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def key(messages: list[dict[str, str]]) -> str:
    return json.dumps([[m["role"], m["content"]] for m in messages])


def signature_of(run: dict[str, Any]) -> Signature:
    spec = run["signature"]
    return Signature.parse(spec) if isinstance(spec, str) else Signature.from_spec(spec)


def tools_of(run: dict[str, Any]) -> list[Any]:
    functions = {**react_tools.TOOL_FUNCTIONS, "calculator": calculator, "counter": react_tools.Counter()}
    return [functions[name] for name in run["tools"]]


def test_fixture_was_made_by_dspy() -> None:
    assert GOLDEN["dspy_version"] == "3.4.1"
    assert set(RUNS) == {"two_tools", "typed_outputs_max_iters", "json_adapter", "context_window"}


@pytest.mark.parametrize("case", sorted(RUNS))
def test_react_run_matches_dspy(case: str, lm_server: LMServer) -> None:
    run = RUNS[case]
    replies = {key(call["messages"]): call["reply"] for call in run["calls"]}

    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        if replies.get(key(request.body["messages"])) == OVERFLOW:
            limit = run["limit"]
            return Reply(status=400, json=error_body(f"This model's maximum context length is {limit} tokens."))
        return None

    lm_server.rule = rule
    lm_server.responder = lambda body: replies.get(key(body["messages"]), "UNEXPECTED PROMPT")

    async def main() -> Any:
        lm = create_lm(LMConfig(model="openai/dummy", api_base=lm_server.api_base, num_retries=0))
        adapter = JSONAdapter() if run["adapter"] == "json" else ChatAdapter()
        react = ReAct(signature_of(run), tools_of(run), lm, max_iters=run["max_iters"], adapter=adapter)
        try:
            return react, await react.acall(**run["inputs"])
        finally:
            await lm.aclose()

    react, prediction = asyncio.run(main())
    sent = [request.body["messages"] for request in lm_server.requests]
    expected = [call["messages"] for call in run["calls"]]
    for index, (ours, theirs) in enumerate(zip(sent, expected, strict=False)):
        for message, wanted in zip(ours, theirs, strict=True):
            assert message == wanted, f"call {index}, {wanted['role']} message differs"
    assert len(sent) == len(expected)
    assert plain(dict(prediction.items())) == run["prediction"]
    # What `dspx inspect` shows is the first call's prompt.
    assert react.messages(run["inputs"]) == expected[0]
