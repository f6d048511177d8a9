"""ProgramOfThought and CodeAct against DSPy's own requests (tests/fixtures/code_modules, see its README).

Each recorded run is replayed against the loopback LM server, which answers each prompt with the
reply DSPy's scripted LM gave to the same prompt. The code runs in dspx's real sandbox, so the
outputs and error texts in the later prompts (regenerate's `error`, the answer step's
`code_output`, CodeAct's trajectory) must be what DSPy's interpreter produced, byte for byte, as
must every other message, and the final outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core import Signature
from dspx_cli.errors import DspxError
from dspx_cli.lm import LMConfig, create_lm
from dspx_cli.modules.code_act import CodeAct
from dspx_cli.modules.program_of_thought import ProgramOfThought
from dspx_cli.sandbox import SandboxLimits
from tests import code_tools
from tests.lm_server import LMServer
from tests.sandbox_helpers import Box, needs_deno, open_box

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "code_modules" / "golden.json").read_text())
RUNS = {f"{run['module']}/{run['case']}": run for run in GOLDEN["runs"]}

pytestmark = needs_deno


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    """One sandbox, on one event loop, for every run: Pyodide loads once. Each run has its own session."""
    yield from open_box(SandboxLimits(pool_size=1))


def key(messages: list[dict[str, str]]) -> str:
    return json.dumps([[m["role"], m["content"]] for m in messages])


def signature_of(run: dict[str, Any]) -> Signature:
    spec = run["signature"]
    return Signature.parse(spec) if isinstance(spec, str) else Signature.from_spec(spec)


def test_fixture_was_made_by_dspy() -> None:
    assert GOLDEN["dspy_version"] == "3.4.1"
    assert set(RUNS) == {
        "program_of_thought/submit",
        "program_of_thought/regenerate",
        "program_of_thought/max_iters",
        "program_of_thought/typed_print_json",
        "program_of_thought/typed_print_chat",
        "code_act/tools_finished",
        "code_act/errors_max_iters",
        "code_act/json_adapter",
    }


@pytest.mark.parametrize("case", sorted(RUNS))
def test_run_matches_dspy(case: str, lm_server: LMServer, box: Box) -> None:
    run = RUNS[case]
    replies = {key(call["messages"]): call["reply"] for call in run["calls"]}
    lm_server.responder = lambda body: replies.get(key(body["messages"]), "UNEXPECTED PROMPT")

    async def main() -> tuple[Any, Any, str | None]:
        lm = create_lm(LMConfig(model="openai/dummy", api_base=lm_server.api_base, num_retries=0))
        adapter = JSONAdapter() if run["adapter"] == "json" else ChatAdapter()
        module: ProgramOfThought | CodeAct
        if run["module"] == "program_of_thought":
            module = ProgramOfThought(
                signature_of(run), lm, sandbox=box.sandbox, max_iters=run["max_iters"], adapter=adapter
            )
        else:
            tools = [code_tools.TOOL_FUNCTIONS[name] for name in run["tools"]]
            module = CodeAct(
                signature_of(run), tools, lm, sandbox=box.sandbox, max_iters=run["max_iters"], adapter=adapter
            )
        try:
            return module, await module.acall(**run["inputs"]), None
        except DspxError as err:
            return module, None, str(err)
        finally:
            await lm.aclose()

    module, prediction, error = box.run(main())
    sent = [request.body["messages"] for request in lm_server.requests]
    expected = [call["messages"] for call in run["calls"]]
    for index, (ours, theirs) in enumerate(zip(sent, expected, strict=False)):
        for message, wanted in zip(ours, theirs, strict=True):
            assert message == wanted, f"call {index}, {wanted['role']} message differs"
    assert len(sent) == len(expected)
    assert [name for name, _ in module.named_predictors()] == run["named_predictors"]
    if run["error"] is not None:
        # DSPy raises RuntimeError; dspx a DspxError (one line, a failed example) with DSPy's message.
        assert prediction is None and f"RuntimeError: {error}" == run["error"]
        return
    assert error is None
    outputs = dict(prediction.items())
    if run["module"] == "program_of_thought":
        # dspx's addition, for --trace; DSPy's prediction is the answer step's alone.
        assert outputs.pop("trajectory")
    assert json.loads(json.dumps(outputs)) == run["prediction"]
    # What `dspx inspect` shows is the first call's prompt.
    assert module.messages(run["inputs"]) == expected[0]
