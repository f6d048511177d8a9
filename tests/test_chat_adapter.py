"""ChatAdapter against DSPy's golden prompts and parses (tests/fixtures), plus edge cases of our own."""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

import pytest

from dspx_cli.adapters import ChatAdapter
from dspx_cli.adapters.values import format_field_value, json_schema, parse_value
from dspx_cli.core import Example, Field, Signature
from dspx_cli.errors import AdapterParseError
from tests.golden import case_signature, format_cases, parse_cases

FORMAT_CASES = format_cases("chat")
PARSE_CASES = parse_cases("chat")

adapter = ChatAdapter()


_signature = case_signature


def test_fixtures_are_present() -> None:
    # Guard against a fixture file silently losing its chat cases (the parametrized tests would vanish).
    assert len(FORMAT_CASES) >= 15
    assert len(PARSE_CASES) >= 11


@pytest.mark.parametrize("case", FORMAT_CASES, ids=[c["id"] for c in FORMAT_CASES])
def test_format_matches_dspy(case: dict[str, Any]) -> None:
    messages = adapter.format(_signature(case), case["demos"], case["inputs"])
    assert messages == case["expected_messages"]


@pytest.mark.parametrize("case", PARSE_CASES, ids=[c["id"] for c in PARSE_CASES])
def test_parse_matches_dspy(case: dict[str, Any]) -> None:
    signature = _signature(case)
    if case.get("expected_error"):
        assert case["expected_error"] == "AdapterParseError"
        with pytest.raises(AdapterParseError) as info:
            adapter.parse(signature, case["completion"])
        assert info.value.lm_response == case["completion"]
        assert json.dumps(case["completion"], ensure_ascii=False) in str(info.value)
    else:
        assert adapter.parse(signature, case["completion"]) == case["expected"]


def test_demos_accept_examples() -> None:
    case = next(c for c in FORMAT_CASES if c["id"] == "demos_complete__chat")
    demos = [Example(d).with_inputs("review") for d in case["demos"]]
    assert adapter.format(_signature(case), demos, case["inputs"]) == case["expected_messages"]


def test_demo_without_any_output_is_dropped() -> None:
    signature = Signature.parse("question -> answer")
    messages = adapter.format(signature, [{"question": "lonely"}, {"answer": "orphan"}], {"question": "q"})
    assert [m["role"] for m in messages] == ["system", "user"]


# ----- parsing: our own cases ------------------------------------------------------------------


def _parse(spec: str, completion: str) -> dict[str, Any]:
    return adapter.parse(Signature.parse(spec), completion)


def test_int_text_becomes_float() -> None:
    result = _parse("q -> x: float", "[[ ## x ## ]]\n3\n\n[[ ## completed ## ]]")
    assert result == {"x": 3.0} and isinstance(result["x"], float)


def test_nested_list() -> None:
    result = _parse("q -> m: list[list[int]]", "[[ ## m ## ]]\n[[1, 2], [3]]\n\n[[ ## completed ## ]]")
    assert result == {"m": [[1, 2], [3]]}


def test_python_literal_fallback() -> None:
    result = _parse("q -> ok: bool, d: dict[str, list[str]]", "[[ ## ok ## ]]\nFalse\n[[ ## d ## ]]\n{'k': ('a',)}")
    assert result == {"ok": False, "d": {"k": ["a"]}}


@pytest.mark.parametrize("written", ["Literal['x']", "  x ", '"x"', "str['x']"])
def test_literal_spellings(written: str) -> None:
    assert _parse("q -> c: Literal['x', 'y']", f"[[ ## c ## ]]\n{written}\n[[ ## completed ## ]]") == {"c": "x"}


def test_literal_rejects_other_values() -> None:
    with pytest.raises(AdapterParseError, match=r'"c" to be a valid Literal\[\'x\', \'y\'\]'):
        _parse("q -> c: Literal['x', 'y']", "[[ ## c ## ]]\nz")


def test_header_with_text_on_same_line_and_indent() -> None:
    completion = "  [[ ## a ## ]] first line\nsecond line\n[[ ## b ## ]]   42"
    assert _parse("q -> a, b: int", completion) == {"a": "first line\nsecond line", "b": 42}


def test_completion_without_completed_marker() -> None:
    assert _parse("q -> a, b", "[[ ## a ## ]]\none\n\n[[ ## b ## ]]\ntwo\n") == {"a": "one", "b": "two"}


def test_unknown_headers_are_ignored_and_order_follows_signature() -> None:
    completion = "[[ ## b ## ]]\n2\n[[ ## notes ## ]]\nextra\n[[ ## a ## ]]\n1"
    assert list(_parse("q -> a, b", completion).items()) == [("a", "1"), ("b", "2")]


def test_optional_str_keeps_text_as_written() -> None:
    # DSPy validates text-or-None fields without JSON decoding: "42" stays a string.
    assert _parse("q -> a: Optional[str]", "[[ ## a ## ]]\n42") == {"a": "42"}


def test_missing_fields_message_names_fields_and_keeps_partial() -> None:
    signature = Signature.parse("q -> a, b: int, c: list[str]")
    completion = "[[ ## a ## ]]\nhello"
    with pytest.raises(AdapterParseError) as info:
        adapter.parse(signature, completion)
    assert 'expected output fields "b" (int), "c" (list[str]) in the LM reply; got only "a"' in str(info.value)
    assert info.value.parsed == {"a": "hello"}


def test_unparseable_value_message() -> None:
    with pytest.raises(AdapterParseError) as info:
        _parse("q -> n: int", "[[ ## n ## ]]\nseven")
    message = str(info.value)
    assert message.startswith("expected output field \"n\" to be a valid int; got 'seven'")
    assert "\n" not in message


# ----- helpers -----------------------------------------------------------------------------------


def test_user_and_assistant_helpers() -> None:
    signature = Signature.parse("question -> answer: int")
    assert adapter.format_user_message(signature, {"question": "q?"}, prefix="P") == "P\n\n[[ ## question ## ]]\nq?"
    assert adapter.format_assistant_message(signature, {"answer": 7}) == (
        "[[ ## answer ## ]]\n7\n\n[[ ## completed ## ]]\n"
    )
    # A missing output without a replacement message renders as None, as in DSPy.
    assert adapter.format_assistant_message(signature, {}) == "[[ ## answer ## ]]\nNone\n\n[[ ## completed ## ]]\n"


def test_finetune_data_appends_the_reply() -> None:
    signature = Signature.parse("question -> answer")
    data = adapter.format_finetune_data(signature, [], {"question": "q"}, {"answer": "a"})
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant"]
    assert data["messages"][-1]["content"] == "[[ ## answer ## ]]\na\n\n[[ ## completed ## ]]\n"


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (str, ["one", "two"], "[1] «one»\n[2] «two»"),
        (str, ["only"], "«only»"),
        (str, [], "N/A"),
        (str, ["multi\nline", "x"], "[1] «««\n    multi\n    line\n»»»\n[2] «x»"),
        (list[str], ["é", "b"], '["é", "b"]'),
        (dict[str, int], {"a": 1}, '{"a": 1}'),
        (str, "plain", "plain"),
        (bool, True, "True"),
        (float, 0.5, "0.5"),
        (Optional[str], None, "None"),
    ],
)
def test_format_field_value(annotation: Any, value: Any, expected: str) -> None:
    assert format_field_value(annotation, value) == expected


def test_json_schema_puts_type_first() -> None:
    assert list(json_schema(dict[str, list[int]])) == ["type", "additionalProperties"]
    assert list(json_schema(dict[str, list[int]])["additionalProperties"]) == ["type", "items"]


def test_system_message_notes_for_literal_and_optional_int() -> None:
    signature = Signature((Field("q"),), (Field("k", Literal["a", 1]), Field("n", Optional[int])))
    system = adapter.format_system_message(signature)
    assert "{k}        # note: the value you produce must exactly match (no extra characters) one of: a; 1" in system
    assert '{n}        # note: the value you produce must adhere to the JSON schema: {"anyOf": ' in system
    assert "2. `n` (Union[int, NoneType]):\n" in system


def test_parse_value_direct() -> None:
    assert parse_value("[1, 2]", tuple[int, ...]) == (1, 2)
    assert parse_value("null", Optional[int]) is None
    with pytest.raises(ValueError):
        parse_value("maybe", Literal["yes", "no"])


def test_system_messages_are_kept_per_signature_object_not_per_equal_signature() -> None:
    # Optional[int] == int | None, yet they print differently: a cache by equality would mix them up.
    written_optional = Signature((Field("q"),), (Field("x", Optional[int]),))
    written_union = Signature((Field("q"),), (Field("x", int | None),))
    assert written_optional == written_union
    adapter = ChatAdapter()
    for _ in range(2):  # the second round is served from the adapter's cache
        for signature in (written_optional, written_union):
            assert adapter.format(signature, [], {"q": "?"}) == ChatAdapter().format(signature, [], {"q": "?"})
    assert adapter.format(written_optional, [], {})[0] != adapter.format(written_union, [], {})[0]
