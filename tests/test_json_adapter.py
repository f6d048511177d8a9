"""JSONAdapter against DSPy's golden prompts (tests/fixtures), JSON reply parsing, and response_format.

The response_format expectations were obtained by running DSPy's `_get_structured_outputs_response_format`
steps (pydantic.create_model + its enforce_required pass) followed by what LiteLLM sends for a
pydantic response_format (`openai.lib._pydantic.to_strict_json_schema`, name, strict=True).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from dspx_cli.adapters import JSONAdapter
from dspx_cli.core import Example, Signature
from dspx_cli.errors import AdapterParseError
from tests.golden import case_signature, format_cases

FORMAT_CASES = format_cases("json")

adapter = JSONAdapter()


_signature = case_signature


# ----- format: DSPy's golden prompts -----------------------------------------------------------


def test_fixtures_are_present() -> None:
    # Guard against the fixture file silently losing its json cases (the parametrized test would vanish).
    assert len(FORMAT_CASES) >= 15


@pytest.mark.parametrize("case", FORMAT_CASES, ids=[c["id"] for c in FORMAT_CASES])
def test_format_matches_dspy(case: dict[str, Any]) -> None:
    messages = adapter.format(_signature(case), case["demos"], case["inputs"])
    assert messages == case["expected_messages"]


def test_demos_accept_examples() -> None:
    case = next(c for c in FORMAT_CASES if c["id"] == "demos_complete__json")
    demos: list[Any] = [Example(d).with_inputs("review") for d in case["demos"]]
    assert adapter.format(_signature(case), demos, case["inputs"]) == case["expected_messages"]


def test_assistant_message_renders_missing_output_as_null() -> None:
    # DSPy looks outputs up with a None default, which json.dumps writes as null.
    signature = Signature.parse("q -> answer, n: int")
    assert adapter.format_assistant_message(signature, {"n": 2}) == '{\n  "answer": null,\n  "n": 2\n}'


def test_assistant_message_keeps_non_ascii() -> None:
    signature = Signature.parse("q -> answer")
    assert adapter.format_assistant_message(signature, {"answer": "café"}) == '{\n  "answer": "café"\n}'


def test_signature_without_inputs_keeps_dspy_blank_block() -> None:
    # DSPy joins an empty inputs block like any other part, leaving four newlines in a row.
    system = adapter.format_system_message(Signature.parse("-> answer"))
    assert "Inputs will have the following structure:\n\n\n\nOutputs will be a JSON object" in system


def test_finetune_record_ends_with_json_reply() -> None:
    signature = Signature.parse("question -> answer, n: int")
    data = adapter.format_finetune_data(signature, [], {"question": "q"}, {"answer": "a", "n": 1})
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant"]
    assert data["messages"][-1]["content"] == '{\n  "answer": "a",\n  "n": 1\n}'


# ----- parse -------------------------------------------------------------------------------------


def _parse(spec: str, completion: str) -> dict[str, Any]:
    return adapter.parse(Signature.parse(spec), completion)


def _parse_error(spec: str, completion: str) -> AdapterParseError:
    with pytest.raises(AdapterParseError) as info:
        _parse(spec, completion)
    error = info.value
    # The reply travels with the error, and the message stays on one line.
    assert error.lm_response == completion
    assert json.dumps(completion, ensure_ascii=False) in str(error)
    assert "\n" not in str(error)
    return error


def test_simple_object() -> None:
    assert _parse("question -> answer", '{"answer": "Paris"}') == {"answer": "Paris"}


@pytest.mark.parametrize(
    "completion",
    [
        '```json\n{"answer": "Paris"}\n```',
        'Sure! Here you go:\n```json\n{\n  "answer": "Paris"\n}\n```\nAnything else?',
        'The answer is {"answer": "Paris"} as requested.',
        '[{"answer": "Paris"}, {"answer": "Lyon"}]',
    ],
    ids=["fenced", "preamble_and_fence", "inline_preamble", "list_of_objects"],
)
def test_object_is_found_in_surrounding_text(completion: str) -> None:
    assert _parse("question -> answer", completion) == {"answer": "Paris"}


def test_typed_coercion() -> None:
    completion = json.dumps(
        {
            "stars": "4",
            "score": 3,
            "ok": "true",
            "tags": ["a", "b"],
            "d": {"x": "1"},
            "label": "'yes'",
            "note": 42,
        }
    )
    spec = (
        "r -> stars: int, score: float, ok: bool, tags: list[str], d: dict[str, int], label: Literal['yes', 'no'], note"
    )
    result = _parse(spec, completion)
    assert result == {
        "stars": 4,
        "score": 3.0,
        "ok": True,
        "tags": ["a", "b"],
        "d": {"x": 1},
        "label": "yes",
        "note": "42",
    }
    assert isinstance(result["score"], float)


def test_values_written_as_json_text_are_decoded() -> None:
    # Some LMs put a nested value inside a string; parse_value decodes it for non-text types.
    result = _parse("r -> tags: list[str], d: dict[str, int]", '{"tags": "[\\"a\\", \\"b\\"]", "d": "{\'k\': 2}"}')
    assert result == {"tags": ["a", "b"], "d": {"k": 2}}


def test_chain_of_thought_reply() -> None:
    signature = Signature.parse("question -> answer: int").prepend_output("reasoning", str)
    completion = '{"reasoning": "2 and 2 make 4.", "answer": 4}'
    assert adapter.parse(signature, completion) == {"reasoning": "2 and 2 make 4.", "answer": 4}


def test_extra_keys_are_dropped_and_order_follows_signature() -> None:
    result = _parse("q -> a, b", '{"b": "2", "notes": "x", "a": "1"}')
    assert list(result.items()) == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize(
    "completion",
    [
        "{'answer': 'Paris', 'n': 3,}",
        '{answer: "Paris", n: 3}',
        '{"answer": "Paris", "n": 3',
        '```json\n{"answer": "Paris",\n "n": 3\n```',
    ],
    ids=["python_quotes_trailing_comma", "unquoted_keys", "truncated", "truncated_in_fence"],
)
def test_broken_json_is_repaired(completion: str) -> None:
    assert _parse("q -> answer, n: int", completion) == {"answer": "Paris", "n": 3}


def test_brace_inside_string_does_not_cut_the_object() -> None:
    # A list reply takes the first-object fallback; the quoted "}" must not end that object.
    assert _parse("q -> answer", '[{"answer": "a } b"}, {"x": 1}]') == {"answer": "a } b"}


def test_missing_optional_field_is_none() -> None:
    assert _parse("q -> a, b: Optional[str], c: int | None", '{"a": "x"}') == {"a": "x", "b": None, "c": None}


def test_explicit_null_for_optional_field() -> None:
    assert _parse("q -> a: Optional[int]", '{"a": null}') == {"a": None}


def test_missing_required_field() -> None:
    error = _parse_error("q -> a, b: int, c: list[str]", '{"a": "hello"}')
    assert str(error).startswith(
        'expected output fields "b" (int), "c" (list[str]) as keys of the JSON object in the LM reply; got only "a"'
    )
    assert error.parsed == {"a": "hello"}


def test_object_without_output_fields_names_its_keys() -> None:
    error = _parse_error("q -> answer", '{"result": "Paris"}')
    assert str(error).startswith(
        'expected output field "answer" (str) as key of the JSON object in the LM reply; '
        'got no output field, only the keys "result"'
    )


def test_empty_object() -> None:
    assert "got an empty object" in str(_parse_error("q -> answer", "{}"))


@pytest.mark.parametrize(
    "completion",
    ["Paris is the capital of France.", "", '"Paris"', "[1, 2, 3]"],
    ids=["prose", "empty", "string", "list"],
)
def test_reply_without_object(completion: str) -> None:
    error = _parse_error("q -> answer, n: int", completion)
    assert str(error).startswith(
        'expected a JSON object with the output fields "answer" (str), "n" (int); the LM reply contains no JSON object'
    )
    assert error.parsed == {}


def test_unparseable_value() -> None:
    error = _parse_error("q -> a, n: int", '{"a": "ok", "n": "seven"}')
    assert str(error).startswith('expected output field "n" to be a valid int; got "seven" (')
    assert error.parsed == {"a": "ok"}


def test_fractional_float_for_int_is_rejected() -> None:
    assert 'expected output field "n" to be a valid int; got 3.5' in str(_parse_error("q -> n: int", '{"n": 3.5}'))


def test_literal_rejects_other_values() -> None:
    message = str(_parse_error("q -> c: Literal['x', 'y']", '{"c": "z"}'))
    assert message.startswith("expected output field \"c\" to be a valid Literal['x', 'y']; got \"z\"")


# ----- response_format ---------------------------------------------------------------------------

JSON_MODE = {"type": "json_object"}


def _strict(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "DSPyProgramOutputs",
            "strict": True,
            "schema": {
                "additionalProperties": False,
                "properties": properties,
                "required": list(properties),
                "title": "DSPyProgramOutputs",
                "type": "object",
            },
        },
    }


def _response_format(spec: str, structured: bool = True) -> dict[str, Any]:
    return adapter.response_format(Signature.parse(spec), structured=structured)


def test_response_format_str() -> None:
    assert _response_format("question -> answer") == _strict({"answer": {"title": "Answer", "type": "string"}})


def test_response_format_scalars() -> None:
    assert _response_format("q -> stars: int, score: float, recommend: bool") == _strict(
        {
            "stars": {"title": "Stars", "type": "integer"},
            "score": {"title": "Score", "type": "number"},
            "recommend": {"title": "Recommend", "type": "boolean"},
        }
    )


def test_response_format_lists() -> None:
    assert _response_format("q -> tags: list[str], m: list[list[int]]") == _strict(
        {
            "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array"},
            "m": {"items": {"items": {"type": "integer"}, "type": "array"}, "title": "M", "type": "array"},
        }
    )


def test_response_format_literal() -> None:
    assert _response_format("q -> sentiment: Literal['positive', 'negative', 'neutral']") == _strict(
        {"sentiment": {"enum": ["positive", "negative", "neutral"], "title": "Sentiment", "type": "string"}}
    )


def test_response_format_chain_of_thought_with_optional() -> None:
    signature = Signature.parse("question -> answer: Optional[str]").prepend_output("reasoning", str)
    assert adapter.response_format(signature) == _strict(
        {
            "reasoning": {"title": "Reasoning", "type": "string"},
            "answer": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Answer"},
        }
    )


def test_response_format_mixed_literal_set_tuple_union() -> None:
    assert _response_format("q -> k: Literal['a', 1], s: set[int], t: tuple[int, ...], u: int | float") == _strict(
        {
            "k": {"enum": ["a", 1], "title": "K"},
            "s": {"items": {"type": "integer"}, "title": "S", "type": "array", "uniqueItems": True},
            "t": {"items": {"type": "integer"}, "title": "T", "type": "array"},
            "u": {"anyOf": [{"type": "integer"}, {"type": "number"}], "title": "U"},
        }
    )


def test_response_format_dict_output_uses_json_mode() -> None:
    # DSPy: an open-ended mapping cannot be a strict schema, so it asks for plain JSON mode.
    assert _response_format("q -> answer, counts: dict[str, int]") == JSON_MODE


@pytest.mark.parametrize("type_text", ["Optional[dict[str, int]]", "list[dict[str, int]]", "dict", "Any", "list"])
def test_response_format_other_open_ended_types_use_json_mode(type_text: str) -> None:
    # Beyond DSPy's top-level check: these have no strict schema either (DSPy would send one that
    # providers reject, or that forces empty objects).
    assert _response_format(f"q -> x: {type_text}") == JSON_MODE


def test_response_format_unstructured() -> None:
    assert _response_format("q -> answer, n: int", structured=False) == JSON_MODE


@pytest.mark.parametrize("name", ["_hidden", "model_config"])
def test_response_format_falls_back_when_pydantic_cannot_model_a_field(name: str) -> None:
    # pydantic would silently drop such a field from the schema; JSON mode is the safe answer.
    assert _response_format(f"q -> answer, {name}") == JSON_MODE


def test_response_format_field_names_shadowing_basemodel_attributes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _response_format("q -> json, schema: int")
    assert result == _strict(
        {"json": {"title": "Json", "type": "string"}, "schema": {"title": "Schema", "type": "integer"}}
    )


def test_response_format_returns_fresh_dicts() -> None:
    first = _response_format("q -> d: dict[str, int]")
    first["type"] = "changed"
    assert _response_format("q -> d: dict[str, int]") == JSON_MODE


def test_nested_objects_are_closed_like_dspy_and_openai_do() -> None:
    from dspx_cli.adapters.json import _close_objects

    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "p": {
                "anyOf": [
                    {"type": "object", "properties": {"a": {"type": "string", "default": None}}},
                    {"type": "null"},
                ]
            },
            "q": {"type": "array", "items": {"type": "object"}},
        },
    }
    _close_objects(schema)
    assert schema == {
        "type": "object",
        "properties": {
            "p": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"a": {"type": "string"}},
                        "required": ["a"],
                        "additionalProperties": False,
                    },
                    {"type": "null"},
                ]
            },
            "q": {
                "type": "array",
                "items": {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
            },
        },
        "required": ["p", "q"],
        "additionalProperties": False,
    }


def test_response_format_is_built_once_and_each_caller_gets_its_own_copy() -> None:
    signature = Signature.parse("question -> answer, confidence: float")
    adapter = JSONAdapter()
    first = adapter.response_format(signature)
    first["json_schema"]["schema"]["properties"].clear()
    second = adapter.response_format(signature)
    assert second["json_schema"]["schema"]["properties"] == {
        "answer": {"title": "Answer", "type": "string"},
        "confidence": {"title": "Confidence", "type": "number"},
    }
    assert JSONAdapter().response_format(signature) == second
    assert adapter.response_format(signature, structured=False) == {"type": "json_object"}
