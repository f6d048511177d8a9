"""Compiled state: DSPy's `Module.save()` layout, written and read back, and every mismatch reported."""

from __future__ import annotations

import asyncio
import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example
from dspx_cli.errors import EXIT_USAGE, ProgramError
from dspx_cli.optimizers.labeled import labeled_few_shot
from dspx_cli.optimizers.state import (
    dump_state,
    load_state,
    named_predictors,
    program_hash,
    read_state_file,
    save_state_file,
)
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner
from tests.cli_inprocess import dspx

PROGRAM = """\
lm:
  model: openai/test-model
signatures:
  qa:
    inputs: {question: str, context: str}
    outputs: {answer: str}
modules:
  draft: {type: chain_of_thought, signature: qa}
  verify: {signature: "question, answer -> ok: bool"}
flow:
  - {id: d, module: draft, with: {question: $input.question, context: $input.context}}
  - {id: check, module: verify, with: {question: $input.question, answer: $d.answer}}
output: {answer: $d.answer, ok: $check.ok}
"""

INPUTS = {"question": "Capital of France?", "context": "France is in Europe."}


def runner_for(tmp_path: Path, text: str = PROGRAM, name: str = "program.yaml") -> ProgramRunner:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return ProgramRunner(load_program(path, env={}), context=None)


def dspy_state() -> dict[str, Any]:
    """What DSPy 3's `program.save("state.json")` writes for the same program (predictors as attributes
    `draft = dspy.ChainOfThought(...)`, `verify = dspy.Predict(...)`), after an optimizer ran."""
    return {
        "draft.predict": {
            "traces": [],
            "train": [],
            "demos": [
                {
                    "augmented": True,
                    "question": "Capital of Italy?",
                    "context": "Italy is in Europe.",
                    "reasoning": "Rome is the capital.",
                    "answer": "Rome",
                },
                # A labeled demo from one of DSPy's datasets, with its bookkeeping keys.
                {"question": "Capital of Spain?", "context": "", "answer": "Madrid", "dspy_uuid": "7f1"},
            ],
            "signature": {
                "instructions": "Answer the question from the context in one word.",
                "fields": [
                    {"prefix": "Question:", "description": "${question}"},
                    {"prefix": "Context:", "description": "Background facts, possibly irrelevant."},
                    {"prefix": "Reasoning:", "description": "${reasoning}"},
                    {"prefix": "Answer:", "description": "${answer}"},
                ],
            },
            "lm": {"model": "openai/gpt-4o-mini", "model_type": "chat", "temperature": 0.0, "max_tokens": 4000},
        },
        "verify": {
            "traces": [],
            "train": [],
            "demos": [],
            "signature": {
                "instructions": "Given the fields `question`, `answer`, produce the fields `ok`.",
                "fields": [
                    {"prefix": "Question:", "description": "${question}"},
                    {"prefix": "Answer:", "description": "${answer}"},
                    {"prefix": "Verdict:", "description": "Whether the answer is right."},
                ],
            },
            "lm": None,
        },
        "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.0.3", "cloudpickle": "3.1"}},
    }


def messages(runner: ProgramRunner) -> list[list[dict[str, Any]]]:
    return [[dict(m) for m in step_messages] for _, step_messages in runner.preview(INPUTS)]


def test_predictor_names_follow_dspy(tmp_path: Path) -> None:
    runner = runner_for(tmp_path)
    assert [name for name, _ in named_predictors(runner)] == ["draft.predict", "verify"]
    assert named_predictors(runner)[0][1] is runner.modules["draft"].predict


def test_dump_writes_dspy_layout(tmp_path: Path) -> None:
    runner = runner_for(tmp_path)
    state = dump_state(runner, metadata={"optimizer": "bootstrap_few_shot", "score_after": 0.8})
    assert list(state) == ["draft.predict", "verify", "metadata"]
    assert state["verify"] == {
        "traces": [],
        "train": [],
        "demos": [],
        "signature": {
            "instructions": "Given the fields `question`, `answer`, produce the fields `ok`.",
            "fields": [
                {"prefix": "Question:", "description": "${question}"},
                {"prefix": "Answer:", "description": "${answer}"},
                {"prefix": "Ok:", "description": "${ok}"},
            ],
        },
        "lm": None,
    }
    fields = state["draft.predict"]["signature"]["fields"]
    assert [f["prefix"] for f in fields] == ["Question:", "Context:", "Reasoning:", "Answer:"]
    metadata = state["metadata"]
    # DSPy's load() looks up every key of dependency_versions in its own table: only `python` is safe.
    assert list(metadata["dependency_versions"]) == ["python"]
    dspx = metadata["dspx"]
    assert dspx["optimizer"] == "bootstrap_few_shot" and dspx["score_after"] == 0.8
    assert dspx["program_hash"] == program_hash(runner) and len(dspx["program_hash"]) == 64
    assert dspx["predictors"] == {
        "draft.predict": "question: str, context: str -> reasoning: str, answer: str",
        "verify": "question: str, answer: str -> ok: bool",
    }


def test_round_trip_reproduces_the_prompts(tmp_path: Path) -> None:
    original = runner_for(tmp_path)
    draft = original.modules["draft"].predict
    draft.signature = draft.signature.with_instructions("Answer in one word.").with_updated_field(
        "context", desc="Facts to use."
    )
    draft.demos = [
        {"augmented": True, "question": "Capital of Italy?", "context": "-", "reasoning": "Known.", "answer": "Rome"},
        {"question": "Capital of Spain?", "answer": "Madrid"},
    ]
    verify = original.modules["verify"]
    verify.signature = verify.signature.with_updated_field("ok", desc="True if the answer is right.")
    verify.demos = [{"question": "2+2?", "answer": "4", "ok": True}]

    path = tmp_path / "state.json"
    save_state_file(path, dump_state(original, metadata={"optimizer": "test"}))
    assert path.read_text(encoding="utf-8").endswith("}\n")
    state = read_state_file(path)
    assert state["draft.predict"]["demos"][0]["augmented"] is True
    assert state["draft.predict"]["signature"]["fields"][1] == {"prefix": "Context:", "description": "Facts to use."}

    fresh = runner_for(tmp_path)
    assert messages(fresh) != messages(original)
    load_state(fresh, state, source=str(path))
    assert messages(fresh) == messages(original)
    assert fresh.modules["verify"].demos == verify.demos
    assert dump_state(fresh)["draft.predict"] == dump_state(original)["draft.predict"]


def test_labeled_demos_of_a_multi_predictor_program_load_back(tmp_path: Path) -> None:
    # LabeledFewShot gives every predictor whole training rows, as DSPy does: verify's demos carry
    # `context`, a field of draft only. The state dspx wrote must load; the prompt shows verify's fields.
    original = runner_for(tmp_path)
    row = Example(question="Capital of Peru?", context="Peru is in South America.", answer="Lima", ok=True)
    row = Example(row, source="atlas p. 12")  # a column no predictor has: kept, never shown, as in DSPy
    asyncio.run(labeled_few_shot(original, [row], k=1))
    state = dump_state(original)
    assert state["verify"]["demos"][0]["context"] == "Peru is in South America."

    fresh = runner_for(tmp_path)
    load_state(fresh, state, source="state.json")
    assert messages(fresh) == messages(original)
    assert "Peru is in South America." not in json.dumps(messages(fresh)[1])
    assert "atlas" not in json.dumps(messages(fresh))


def test_state_saved_by_dspy_changes_the_prompt(tmp_path: Path) -> None:
    runner = runner_for(tmp_path)
    load_state(runner, dspy_state(), source="dspy.json")

    draft = runner.modules["draft"].predict
    assert draft.signature.instructions == "Answer the question from the context in one word."
    # `${name}` is DSPy's "no description": it must not reach the prompt.
    assert [f.desc for f in draft.signature.fields.values()] == ["", "Background facts, possibly irrelevant.", "", ""]
    assert len(draft.demos) == 2 and draft.demos[0]["augmented"] is True

    (draft_messages, verify_messages) = messages(runner)
    system = draft_messages[0]["content"]
    assert "2. `context` (str): Background facts, possibly irrelevant." in system
    assert "${" not in system
    assert system.endswith("your objective is: \n        Answer the question from the context in one word.")
    # The complete demo first would be wrong: DSPy puts partial demos (no reasoning) first.
    assert draft_messages[1]["content"].startswith("This is an example of the task")
    assert "Madrid" in draft_messages[2]["content"]
    italy = "[[ ## question ## ]]\nCapital of Italy?\n\n[[ ## context ## ]]\nItaly is in Europe."
    assert draft_messages[3]["content"] == italy
    assert "Rome is the capital." in draft_messages[4]["content"]
    assert "augmented" not in json.dumps(draft_messages) and "7f1" not in json.dumps(draft_messages)
    assert "`ok` (bool): Whether the answer is right." in verify_messages[0]["content"]


def test_failed_load_changes_nothing(tmp_path: Path) -> None:
    runner = runner_for(tmp_path)
    before = messages(runner)
    state = dspy_state()
    state["verify"]["demos"] = [{"question": "q", "verdict": "yes"}]  # draft is fine, verify is not
    with pytest.raises(ProgramError):
        load_state(runner, state, source="dspy.json")
    assert messages(runner) == before


def _without(key: str) -> Any:
    def change(state: dict[str, Any]) -> None:
        del state[key]

    return change


def _set(*path_and_value: Any) -> Any:
    *path, value = path_and_value

    def change(state: dict[str, Any]) -> None:
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _rename_in_metadata(state: dict[str, Any]) -> None:
    state["metadata"]["dspx"] = {"predictors": {"verify": "question: str -> answer: str, ok: bool"}}


MISMATCHES = [
    (
        _set("answer", dspy_state()["verify"]),
        (
            "dspy.json: predictor 'answer' in the state is not in the program; "
            "the program's predictors are 'draft.predict', 'verify'"
        ),
    ),
    (
        _without("verify"),
        (
            "dspy.json: the program's predictor 'verify' is not in the state, which has 'draft.predict'; "
            "the state was saved for a different program"
        ),
    ),
    (
        _set("verify", "signature", "fields", dspy_state()["verify"]["signature"]["fields"][:2]),
        (
            "dspy.json: predictor 'verify' has 2 field(s) in the state, 3 in the program (question, answer, ok); "
            "the state was saved for a different signature"
        ),
    ),
    (
        _set("draft.predict", "signature", "fields", 0, {"prefix": "Context:", "description": "${context}"}),
        (
            "dspy.json: predictor 'draft.predict': field 1 is 'context' in the state, 'question' in the program "
            "(program fields in order: question, context, reasoning, answer)"
        ),
    ),
    (
        _set("verify", "demos", [{"question": "q", "answer": "a", "verdict": True}]),
        (
            "dspy.json: predictor 'verify': demo 1 has key 'verdict', not a field of this predictor; "
            "its fields are question, answer, ok"
        ),
    ),
    (
        _rename_in_metadata,
        (
            "dspy.json: predictor 'verify' was saved for the signature `question: str -> answer: str, ok: bool`, "
            "the program now has `question: str, answer: str -> ok: bool`; compile the program again"
        ),
    ),
    (
        _set("verify", "extended_signature", {}),
        (
            "dspy.json: predictor 'verify': `extended_signature` is the layout of DSPy 2.5 and earlier; "
            "save it again with DSPy 2.6+"
        ),
    ),
    (
        _set("verify", "demos", {"question": "q"}),
        "dspy.json: predictor 'verify': expected `demos` to be a list, got an object",
    ),
    (
        _set("verify", "signature", "fields", 2, {"prefix": "Ok:"}),
        "dspy.json: predictor 'verify': expected field 3 (ok) to have a text `description`",
    ),
    (
        _set("verify", "signature", "fields", 2, {"prefix": 3, "description": "${ok}"}),
        "dspy.json: predictor 'verify': expected field 3 (ok) to have a text `prefix`",
    ),
    (
        _set("verify", "signature", "instructions", None),
        "dspy.json: predictor 'verify': expected `signature.instructions` to be text, got null",
    ),
    (_set("metadata", []), "dspy.json: expected `metadata` to be an object, got a list"),
]


@pytest.mark.parametrize(("change", "message"), MISMATCHES)
def test_mismatches_are_one_line_program_errors(tmp_path: Path, change: Any, message: str) -> None:
    state = copy.deepcopy(dspy_state())
    change(state)
    with pytest.raises(ProgramError) as info:
        load_state(runner_for(tmp_path), state, source="dspy.json")
    assert info.value.exit_code == EXIT_USAGE
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_dspx_state_of_another_program_is_refused(tmp_path: Path) -> None:
    # Same predictor names and field counts, but `answer` is an input of verify in one program and an
    # output in the other: only the signatures dspx records can tell.
    other_text = PROGRAM.replace('"question, answer -> ok: bool"', '"question -> answer, ok: bool"')
    other = runner_for(tmp_path, other_text.replace(", answer: $d.answer}}", "}}"), "other.yaml")
    expected = "predictor 'verify' was saved for the signature `question: str -> answer: str, ok: bool`"
    with pytest.raises(ProgramError, match=expected):
        load_state(runner_for(tmp_path), dump_state(other), source="other.json")
    assert program_hash(other) != program_hash(runner_for(tmp_path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"verify": {', ":1:13: the state file is not valid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", ": expected a JSON object of predictors, got a list"),
        (b"\xff\xfe{}", ": the state file is not UTF-8 text"),
        (None, ": state file not found"),
    ],
)
def test_unreadable_state_files(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    path = tmp_path / "state.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ProgramError) as info:
        read_state_file(path)
    assert str(info.value) == f"{path}{message}"
    assert info.value.exit_code == EXIT_USAGE


def test_save_reports_an_unwritable_path(tmp_path: Path) -> None:
    from dspx_cli.errors import DspxError

    with pytest.raises(DspxError, match="cannot write the state file") as info:
        save_state_file(tmp_path / "missing" / "state.json", {"metadata": {}})
    assert info.value.exit_code == EXIT_USAGE
    assert list(tmp_path.iterdir()) == []


# ----- states DSPy saved from a module on its own (tests/fixtures/bootstrap, recorded from DSPy) --------

FIXTURES = Path(__file__).parent / "fixtures" / "bootstrap"
ONE_PREDICT = """\
lm: {model: openai/test-model}
modules:
  answer: {signature: "question -> answer"}
"""


def test_a_bare_dspy_predict_state_loads_into_a_one_predictor_program(tmp_path: Path) -> None:
    path = FIXTURES / "flat_state.json"
    state = read_state_file(path)
    assert "demos" in state and "signature" in state  # DSPy wrote the predictor's keys at the top level
    runner = runner_for(tmp_path, ONE_PREDICT)
    load_state(runner, state, source=str(path))
    predictor = runner.modules["answer"]
    assert predictor.demos == state["demos"]
    assert predictor.signature.instructions == state["signature"]["instructions"]
    assert dump_state(runner)["answer"]["demos"] == state["demos"]

    done = dspx("inspect", str(tmp_path / "program.yaml"), "-i", "question=Q?", "--json", "--state", str(path))
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)[0]["messages"]
    assert [m["content"] for m in sent[1:5]] == [
        "[[ ## question ## ]]\nq1",
        "[[ ## answer ## ]]\na1\n\n[[ ## completed ## ]]\n",
        "[[ ## question ## ]]\nq2",
        "[[ ## answer ## ]]\na2\n\n[[ ## completed ## ]]\n",
    ]


def test_a_bare_dspy_chain_of_thought_state_loads_into_its_module(tmp_path: Path) -> None:
    path = FIXTURES / "chain_of_thought_state.json"
    state = read_state_file(path)
    assert [name for name in state if name != "metadata"] == ["predict"]
    runner = runner_for(tmp_path, ONE_PREDICT.replace("{signature:", "{type: chain_of_thought, signature:"))
    load_state(runner, state, source=str(path))
    assert runner.modules["answer"].predict.demos == state["predict"]["demos"]


def test_a_bare_predict_state_into_a_multi_predictor_program_is_a_clear_error(tmp_path: Path) -> None:
    path = FIXTURES / "flat_state.json"
    runner = runner_for(tmp_path)
    before = messages(runner)
    with pytest.raises(ProgramError) as info:
        load_state(runner, read_state_file(path), source=str(path))
    assert info.value.exit_code == EXIT_USAGE
    assert str(info.value) == (
        f"{path}: the state holds one predictor saved on its own (DSPy's save() of a bare Predict: `demos` and "
        "`signature` at the top level), but the program has 2 predictors ('draft.predict', 'verify'); save the "
        "whole program in DSPy, or use a program with one predictor"
    )
    assert messages(runner) == before

    program = tmp_path / "program.yaml"
    done = dspx("inspect", str(program), "-i", "question=Q?", "-i", "context=C", "--state", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {info.value}"


def test_a_state_mixing_both_layouts_is_not_taken_for_a_bare_predict(tmp_path: Path) -> None:
    flat = read_state_file(FIXTURES / "flat_state.json")
    mixed = {**flat, "answer": {key: flat[key] for key in ("traces", "train", "demos", "signature", "lm")}}
    with pytest.raises(ProgramError, match="predictor 'traces', 'train', 'demos', 'signature', 'lm' in the state"):
        load_state(runner_for(tmp_path, ONE_PREDICT), mixed, source="mixed.json")


# ----- instructions and prefixes (what MIPROv2 and COPRO change) ---------------------------------

ROUTE_THEN_PRIORITIZE = """\
lm:
  model: openai/test-model
signatures:
  route:
    instructions: Route the customer message to the support queue that should handle it.
    inputs: {message: str}
    outputs:
      queue: {type: str, desc: the name of one support queue}
modules:
  route: {type: chain_of_thought, signature: route}
  prioritize: {signature: "message, queue -> priority"}
flow:
  - {id: route, module: route, with: {message: $input.message}}
  - {id: prioritize, module: prioritize, with: {message: $input.message, queue: $route.queue}}
output: {queue: $route.queue, priority: $prioritize.priority}
"""


def test_instructions_and_prefixes_round_trip(tmp_path: Path) -> None:
    original = runner_for(tmp_path)
    draft = original.modules["draft"].predict
    draft.signature = (
        draft.signature.with_instructions("Think, then answer in one word.")
        .with_updated_field("answer", prefix="Final Answer:")
        .with_updated_field("question", prefix="Q:")
    )
    before_hash = program_hash(original)
    state = dump_state(original)
    fields = state["draft.predict"]["signature"]["fields"]
    assert [f["prefix"] for f in fields] == ["Q:", "Context:", "Reasoning:", "Final Answer:"]
    assert state["draft.predict"]["signature"]["instructions"] == "Think, then answer in one word."

    path = tmp_path / "state.json"
    save_state_file(path, state)
    fresh = runner_for(tmp_path)
    load_state(fresh, read_state_file(path), source=str(path))
    assert fresh.modules["draft"].predict.signature == draft.signature
    assert fresh.modules["draft"].predict.signature.fields["answer"].prefix == "Final Answer:"
    assert dump_state(fresh)["draft.predict"] == state["draft.predict"]
    assert messages(fresh) == messages(original)
    # Instructions and prefixes are what a state changes, not the program's structure.
    assert program_hash(fresh) == before_hash == program_hash(runner_for(tmp_path))


def test_a_prefix_never_reaches_the_prompt(tmp_path: Path) -> None:
    runner = runner_for(tmp_path)
    before = messages(runner)
    verify = runner.modules["verify"]
    verify.signature = verify.signature.with_updated_field("ok", prefix="Verdict 3:")
    assert verify.signature != runner_for(tmp_path).modules["verify"].signature
    assert messages(runner) == before  # DSPy's ChatAdapter shows no prefixes either
    # A prefix equal to the inferred one is no custom prefix: the signature equals the program's.
    same = verify.signature.with_updated_field("ok", prefix="Ok:")
    assert same == runner_for(tmp_path).modules["verify"].signature


def test_a_copro_state_saved_by_dspy_loads_with_its_instructions_and_prefixes(tmp_path: Path) -> None:
    """DSPy 3.4.1's COPRO state for the fixture's route-then-prioritize program (golden.json)."""
    golden = json.loads((FIXTURES.parent / "mipro" / "golden.json").read_text())
    (case,) = [c for c in golden["copro"] if c["id"] == "copro_two_predictors"]
    state = case["final_state"]
    runner = runner_for(tmp_path, ROUTE_THEN_PRIORITIZE)
    plain = messages_for(runner)
    before_hash = program_hash(runner)

    load_state(runner, state, source="copro.json")
    route = runner.modules["route"].predict.signature
    assert route.instructions == "Route it (reply 3); use billing, shipping, returns or account"
    assert route.fields["queue"].prefix == "Queue 3:"
    prioritize = runner.modules["prioritize"].signature
    assert prioritize.instructions == "Route it (reply 2)" and prioritize.fields["priority"].prefix == "Queue 2:"
    assert program_hash(runner) == before_hash

    changed = messages_for(runner)
    for old, new, instructions in zip(plain, changed, [route.instructions, prioritize.instructions], strict=True):
        assert new[0]["content"].endswith("your objective is: \n        " + instructions)
        # Only the instructions moved: the rest of the system message and the user message are as before.
        assert new[0]["content"].split("In adhering")[0] == old[0]["content"].split("In adhering")[0]
        assert new[1:] == old[1:]
    dumped = dump_state(runner)
    for name in ("route.predict", "prioritize"):
        assert dumped[name]["signature"] == state[name]["signature"]


def messages_for(runner: ProgramRunner) -> list[list[dict[str, Any]]]:
    return [[dict(m) for m in step_messages] for _, step_messages in runner.preview({"message": "Where is my parcel?"})]
