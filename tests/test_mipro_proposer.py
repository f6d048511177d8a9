"""MIPROv2's grounded proposer against DSPy 3.4.1's golden requests (tests/fixtures/mipro/).

Each case replays the fixture's scripted replies (`Script` from cases.py) from the real loopback
server and feeds `propose_instructions` what DSPy's proposer got: the fixture's demo sets, the
trainset, and an RNG in the state DSPy's had before proposing (its seed, then the draws MIPROv2
made before: the `auto` valset sample, a shuffle and a randint per shuffled demo set). Then every
prompt-model request must equal DSPy's (messages byte for byte, temperature, nothing else in the
body), the rollout ids must be DSPy's draws, and the candidates DSPy's.
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example, Signature
from dspx_cli.lm.base import LM, LMRequest, LMResponse
from dspx_cli.lm.config import LMConfig
from dspx_cli.optimizers.proposer import TIPS, propose_instructions, strip_prefix
from dspx_cli.optimizers.proposer.dataset_summary import examples_text
from dspx_cli.optimizers.proposer.program_description import program_code, signature_block
from dspx_cli.optimizers.state import named_predictors
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner
from tests.fixtures.mipro.cases import TRAIN_ROWS, Script, stage_of
from tests.lm_server import LMServer

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "mipro" / "golden.json").read_text())
CASES = {case["id"]: case for case in GOLDEN["mipro"]}
AUTO_VAL_SIZE = {"light": 100, "medium": 300, "heavy": 1000}  # DSPy's AUTO_RUN_SETTINGS
ZEROSHOT_BOOTSTRAPPED = 3  # MIPROv2 bootstraps 3 demos per set for the proposer in zero-shot mode

HEADER = """\
lm:
  model: openai/task-model
  api_base: ${BASE}
  api_key: sk-test
  num_retries: 0

signatures:
  route:
    instructions: Route the customer message to the support queue that should handle it.
    inputs: {message: str}
    outputs:
      queue: {type: str, desc: the name of one support queue}
"""
PROGRAMS = {
    # DSPy's bare dspy.Predict(Route).
    "predict": HEADER
    + """
modules:
  route:
    signature: route
""",
    # generate.py's RouteThenPrioritize: a ChainOfThought router, then a Predict.
    "route_then_prioritize": HEADER
    + """
modules:
  route:
    type: chain_of_thought
    signature: route
  prioritize:
    signature: "message, queue -> priority"

flow:
  - {id: route, module: route, with: {message: $input.message}}
  - {id: prioritize, module: prioritize, with: {message: $input.message, queue: $route.queue}}

output:
  queue: $route.queue
  priority: $prioritize.priority
""",
}


class RecordingLM(LM):
    """Passes every request to the real prompt LM and keeps what the cache keys on besides the
    messages: the rollout id and the temperature (neither is compared on the wire alone)."""

    def __init__(self, inner: LM) -> None:
        self.inner = inner
        self.model = inner.model
        self.config = getattr(inner, "config", None)
        self.calls: list[LMRequest] = []

    async def complete(self, request: LMRequest) -> LMResponse:
        self.calls.append(request)
        return await self.inner.complete(request)


@dataclass
class DemoSets:
    """The shape of optimizers/demo_sets.py's DemoSets (INTERFACES.md)."""

    seeds: list[int]
    sets: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)


@dataclass
class Outcome:
    candidates: dict[str, list[str]]
    bodies: list[dict[str, Any]]
    calls: list[LMRequest]
    warnings: list[str]
    rng: random.Random
    program_text: str
    runner: ProgramRunner


def rng_before_proposer(case: dict[str, Any]) -> random.Random:
    """MIPROv2's RNG as it reaches the proposer: seeded, then the auto valset draw, then one
    shuffle and one randint per shuffled demo set (teleprompt/utils.py)."""
    rng = random.Random(case["seed"])
    if case.get("auto"):
        rng.sample(range(case["val"]), min(AUTO_VAL_SIZE[case["auto"]], case["val"]))
    bootstrapped = case.get("max_bootstrapped_demos", 4)
    labeled = case.get("max_labeled_demos", 4)
    if bootstrapped == 0 and labeled == 0:
        bootstrapped, labeled = ZEROSHOT_BOOTSTRAPPED, 0
    for demo_set in case["demo_sets"]["0"]:
        seed = demo_set["seed"]
        if seed >= 0 or (seed == -2 and labeled == 0):
            rng.shuffle(list(range(case["train"])))
            rng.randint(1, bootstrapped)
    return rng


def trainset(case: dict[str, Any]) -> list[Example]:
    return [
        Example(message=row["message"], queue=row["queue"]).with_inputs("message")
        for row in TRAIN_ROWS[: case["train"]]
    ]


def run_case(
    case: dict[str, Any],
    tmp_path: Path,
    *,
    responder: Callable[[dict[str, Any]], str | list[str]] | None = None,
    no_demo_sets: bool = False,
    **options: Any,
) -> Outcome:
    """Propose as DSPy did for `case`; `options` override propose_instructions' keywords."""
    path = tmp_path / f"{case['program']}.yaml"
    path.write_text(PROGRAMS[case["program"]])
    warnings: list[str] = []
    with LMServer() as server:
        server.responder = responder or Script(set(case.get("broken", [])))
        program = load_program(path, env={"BASE": server.api_base})

        async def go() -> Outcome:
            context = RunContext(cache_dir=tmp_path / "cache", history=False)
            try:
                runner = ProgramRunner(program, context)
                prompt_lm = RecordingLM(
                    context.lm(
                        LMConfig(
                            model="openai/prompt-model", api_base=server.api_base, api_key="sk-test", num_retries=0
                        )
                    )
                )
                names = [name for name, _ in named_predictors(runner)]
                demo_sets = DemoSets(
                    seeds=[s["seed"] for s in case["demo_sets"]["0"]],
                    sets={names[int(i)]: [s["demos"] for s in sets] for i, sets in case["demo_sets"].items()},
                )
                rng = rng_before_proposer(case)
                zeroshot = case.get("max_bootstrapped_demos", 4) == 0 and case.get("max_labeled_demos", 4) == 0
                num_candidates = case.get("num_candidates") or 6
                settings: dict[str, Any] = {
                    "num_candidates": num_candidates if zeroshot or case.get("auto") is None else num_candidates // 2,
                    "init_temperature": 1.0,
                    **options,
                }
                candidates = await propose_instructions(
                    runner,
                    trainset(case),
                    None if no_demo_sets else demo_sets,
                    prompt_lm=prompt_lm,
                    rng=rng,
                    program_text=path.read_text(),
                    warn=warnings.append,
                    **settings,
                )
                bodies = [r.body for r in server.requests if r.body["model"] == "prompt-model"]
                return Outcome(candidates, bodies, prompt_lm.calls, warnings, rng, path.read_text(), runner)
            finally:
                await context.aclose()

        return asyncio.run(go())


def expected_candidates(case: dict[str, Any], outcome: Outcome) -> dict[str, list[str]]:
    names = [name for name, _ in named_predictors(outcome.runner)]
    return {names[int(i)]: texts for i, texts in case["instruction_candidates"].items()}


def assert_calls_match(case: dict[str, Any], outcome: Outcome) -> None:
    """Each LM call's rollout id (DSPy's RNG draw, the cache key) and temperature are DSPy's."""
    recorded = case["prompt_lm_calls"]
    assert len(outcome.calls) >= len(recorded)
    for request, call in zip(outcome.calls, recorded, strict=False):
        assert request.rollout_id == call["kwargs"].get("rollout_id"), call["stage"]
        assert request.temperature == call["kwargs"]["temperature"]
        assert request.n == call["kwargs"].get("n", 1)


@pytest.mark.parametrize("case_id", ["light_predict", "zeroshot_predict", "summary_and_description_fail"])
def test_one_predictor_cases_send_dspys_requests_byte_for_byte(case_id: str, tmp_path: Path) -> None:
    case = CASES[case_id]
    outcome = run_case(case, tmp_path)
    golden = [r["body"] for r in case["prompt_requests"]]
    assert [stage_of(b) for b in outcome.bodies] == [r["stage"] for r in case["prompt_requests"]]
    for ours, theirs in zip(outcome.bodies, golden, strict=True):
        assert ours == theirs  # model, messages, temperature; no n, no max_tokens
    assert_calls_match(case, outcome)
    assert len(outcome.calls) == len(case["prompt_lm_calls"])
    assert outcome.candidates == expected_candidates(case, outcome)


def test_summary_and_description_failures_are_warned_not_fatal(tmp_path: Path) -> None:
    outcome = run_case(CASES["summary_and_description_fail"], tmp_path)
    assert any("summarize the dataset" in w for w in outcome.warnings)
    assert sum("describe the program" in w for w in outcome.warnings) == 1  # once per run
    last = outcome.bodies[-1]["messages"][1]["content"]
    assert "[[ ## dataset_description ## ]]" not in last
    assert "[[ ## program_description ## ]]\nNot available\n\n[[ ## module ## ]]\nNot provided" in last


def test_the_two_predictor_program_matches_dspy_but_for_its_source_code(tmp_path: Path) -> None:
    case = CASES["explicit_cot_two_predictors_minibatch"]
    outcome = run_case(case, tmp_path)
    theirs_code = case["proposer"]["program_code_string"]
    ours_code = program_code(outcome.runner, outcome.program_text)
    # DSPy's signature blocks, byte for byte, then the program file where DSPy has the class source.
    source_at = theirs_code.index("class RouteThenPrioritize")
    assert ours_code == theirs_code[:source_at] + outcome.program_text
    assert [stage_of(b) for b in outcome.bodies] == [r["stage"] for r in case["prompt_requests"]]
    for ours, theirs in zip(outcome.bodies, (r["body"] for r in case["prompt_requests"]), strict=True):
        ours_text = json.dumps(ours).replace(json.dumps(ours_code)[1:-1], "<PROGRAM>")
        theirs_text = json.dumps(theirs).replace(json.dumps(theirs_code)[1:-1], "<PROGRAM>")
        assert ours_text == theirs_text
    assert_calls_match(case, outcome)
    assert outcome.candidates == expected_candidates(case, outcome)


def test_a_proposer_that_answers_empty_json_is_retried_then_dropped(tmp_path: Path) -> None:
    """DSPy dies here (AdapterParseError); dspx asks once more, warns, and keeps the original."""
    case = CASES["proposer_replies_empty_json"]
    outcome = run_case(case, tmp_path)
    golden = [r["body"] for r in case["prompt_requests"]]
    # Up to DSPy's death, the same requests and calls.
    assert outcome.bodies[: len(golden)] == golden
    assert_calls_match(case, outcome)
    # Then the retry: the same prompt twice more (chat, JSON fallback) under rollout id + 1 ...
    first_id = case["prompt_lm_calls"][-1]["kwargs"]["rollout_id"]
    assert outcome.bodies[len(golden) : len(golden) + 2] == golden[-2:]
    assert [c.rollout_id for c in outcome.calls[len(golden) : len(golden) + 2]] == [first_id + 1] * 2
    # ... and the other two proposals go the same way: describe (x2), propose (x2), retry (x2).
    stages = [stage_of(b) for b in outcome.bodies]
    per_proposal = ["describe_program"] * 2 + ["propose_instruction"] * 4
    assert stages == ["dataset_summary_first"] * 2 + per_proposal * 3
    assert outcome.candidates == {"route": ["Route the customer message to the support queue that should handle it."]}
    assert sum("dropped" in w for w in outcome.warnings) == 3
    # The retries drew nothing: the RNG stands where DSPy's three proposals would have left it.
    expected = rng_before_proposer(case)
    ids = []
    for _ in range(3):
        expected.choice(list(TIPS))
        ids.append(expected.randint(0, 10**9))
    assert outcome.rng.getstate() == expected.getstate()
    assert [c.rollout_id for c in outcome.calls[2::6]] == ids


def test_examples_render_as_dspys_example_list_repr() -> None:
    rows = [
        Example(message='It\'s "broken"', queue="returns", dspy_uuid="x").with_inputs("queue", "message"),
        Example({"n": 1, "tags": ["a"]}),
    ]
    assert examples_text(rows) == (
        "[Example({'message': 'It\\'s \"broken\"', 'queue': 'returns'}) (input_keys={'message', 'queue'}), "
        "Example({'n': 1, 'tags': ['a']}) (input_keys=None)]"
    )


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("Proposed Instruction: Name the queue.", "Name the queue."),
        ('"Read the message."', "Read the message."),
        ("** New instruction:  Be brief", "Be brief"),
        ("one two three four five six: too many words", "one two three four five six: too many words"),
        ("Note: keep: this", "keep: this"),
    ],
)
def test_strip_prefix_drops_a_short_label_and_quotes(text: str, stripped: str) -> None:
    assert strip_prefix(text) == stripped


def test_program_text_stands_in_for_dspys_class_source(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(PROGRAMS["route_then_prioritize"]))
    runner = ProgramRunner(load_program(path, env={"BASE": "http://127.0.0.1:9/v1"}), None)
    code = program_code(runner, "TEXT")
    assert code.startswith("StringSignature(message -> reasoning, queue\n")
    assert "\n)\n\nStringSignature(message, queue -> priority\n" in code
    assert code.endswith(")\n\n\n\nTEXT")


def test_a_proposal_that_parses_on_its_retry_is_kept(tmp_path: Path) -> None:
    case = CASES["zeroshot_predict"]
    script = Script()
    proposals = 0

    def respond(body: dict[str, Any]) -> str | list[str]:
        nonlocal proposals
        if body["model"] == "prompt-model" and stage_of(body) == "propose_instruction":
            proposals += 1
            if proposals in (2, 3):  # the second proposal: its chat call and its JSON fallback
                return "{}"
        return script(body)

    outcome = run_case(case, tmp_path, responder=respond)
    golden_ids = [c["kwargs"].get("rollout_id") for c in case["prompt_lm_calls"]]
    second = golden_ids[6]  # summary (3 calls), then describe, describe, propose per proposal
    ids = [c.rollout_id for c in outcome.calls]
    assert ids == [*golden_ids[:9], second, second + 1, *golden_ids[9:]]
    # The retry's reply is the script's second proposal; the RNG moved as in DSPy.
    assert outcome.candidates["route"] == [
        "Route the customer message to the support queue that should handle it.",
        "Read the message, then name one queue. [2]",
        "Name the queue (billing, shipping, returns or account). [3]",
    ]
    assert sum("asking again" in w for w in outcome.warnings) == 1
    assert not any("dropped" in w for w in outcome.warnings)


def test_without_awareness_only_the_instruction_stage_is_asked(tmp_path: Path) -> None:
    """All four proposer flags off, no demo sets: N proposals of task demos and the instruction
    alone, one rollout id (and no tip) drawn per proposal, at init_temperature."""
    case = CASES["light_predict"]
    outcome = run_case(
        case,
        tmp_path,
        no_demo_sets=True,
        num_candidates=2,
        init_temperature=0.7,
        program_aware=False,
        data_aware=False,
        tip_aware=False,
        fewshot_aware=False,
    )
    assert [stage_of(b) for b in outcome.bodies] == ["propose_instruction"] * 2
    assert {b["temperature"] for b in outcome.bodies} == {0.7}
    user = outcome.bodies[1]["messages"][1]["content"]
    assert user.startswith("[[ ## task_demos ## ]]\nNo task demos provided.\n\n[[ ## basic_instruction ## ]]\n")
    assert "[[ ## tip ## ]]" not in user
    expected = rng_before_proposer(case)
    assert [c.rollout_id for c in outcome.calls] == [expected.randint(0, 10**9) for _ in range(2)]
    assert outcome.rng.getstate() == expected.getstate()
    assert outcome.candidates["route"] == [
        "Route the customer message to the support queue that should handle it.",
        "Read the message, then name one queue. [2]",
    ]


def test_signature_blocks_follow_dspys_repr() -> None:
    """The expected text is what DSPy 3.4.1 prints for `repr(dspy.Signature(SPEC))`."""
    spec = 'a: int, b, c: list[str] -> d: Literal["x", "y"], e: float'
    extra = "required=True json_schema_extra="
    assert signature_block(Signature.parse(spec), string_spec=spec) == "\n".join(
        [
            "StringSignature(a, b, c -> d, e",
            "    instructions='Given the fields `a`, `b`, `c`, produce the fields `d`, `e`.'",
            "    a = Field(annotation=int " + extra + "{'IS_TYPE_UNDEFINED': False, '__dspy_field_type': 'input', "
            "'prefix': 'A:', 'desc': '${a}'})",
            "    b = Field(annotation=str " + extra + "{'IS_TYPE_UNDEFINED': True, '__dspy_field_type': 'input', "
            "'prefix': 'B:', 'desc': '${b}'})",
            "    c = Field(annotation=list[str] "
            + extra
            + "{'IS_TYPE_UNDEFINED': False, '__dspy_field_type': 'input', "
            "'prefix': 'C:', 'desc': '${c}'})",
            "    d = Field(annotation=Literal['x', 'y'] " + extra + "{'__dspy_field_type': 'output', 'prefix': 'D:', "
            "'desc': '${d}'})",
            "    e = Field(annotation=float "
            + extra
            + "{'__dspy_field_type': 'output', 'prefix': 'E:', 'desc': '${e}'})",
            ")",
        ]
    )
