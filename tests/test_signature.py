"""Signature string and structured forms, type strings, errors, and derived signatures."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import pytest

from dspx_cli.core import Field, Signature, annotation_name, parse_type
from dspx_cli.errors import SignatureError

# ----- type strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("str", str),
        ("int", int),
        ("float", float),
        ("bool", bool),
        ("Any", Any),
        ("list", list),
        ("dict", dict),
        ("list[str]", list[str]),
        ("List[str]", list[str]),
        ("dict[str, int]", dict[str, int]),
        (" dict [ str ,list[ int ] ] ", dict[str, list[int]]),
        ("tuple[int, str]", tuple[int, str]),
        ("tuple[int, ...]", tuple[int, ...]),
        ("Literal['a', \"b\", 1]", Literal["a", "b", 1]),
        ("Literal['a, b', 'c]']", Literal["a, b", "c]"]),
        ("Optional[str]", Optional[str]),
        ("str | None", Optional[str]),
        ("None | str", Optional[str]),
        ("Union[int, str]", Union[int, str]),
        ("int | str | None", Union[int, str, None]),
        ("list[Literal['x', 'y']] | None", Optional[list[Literal["x", "y"]]]),
        ("typing.Optional[int]", Optional[int]),
        ("Union[str, NoneType]", Optional[str]),
    ],
)
def test_parse_type(text: str, expected: Any) -> None:
    assert parse_type(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Foo", "unknown type 'Foo' in 'Foo'; supported: str, int"),
        ("list[Foo]", "unknown type 'Foo' in 'list[Foo]'"),
        ("list[str", "a missing ']'"),
        ("Optional", "Optional needs arguments"),
        ("str[int]", "str takes no type arguments"),
        ("dict[str]", "dict takes 2 type arguments, got 1"),
        ("Literal[x]", "Literal values must be quoted strings"),
        ("", "expected a type"),
        ("__import__('os')", "unexpected '('"),
        ("tuple[..., int]", "'...' is only allowed as the second argument"),
    ],
)
def test_parse_type_errors(text: str, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        parse_type(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("annotation", "name"),
    [
        (str, "str"),
        (list[str], "list[str]"),
        (dict[str, int], "dict[str, int]"),
        (Optional[str], "Union[str, NoneType]"),
        (Union[int, str], "Union[int, str]"),
        (Literal["positive", "negative"], "Literal['positive', 'negative']"),
        (Literal["it's"], 'Literal["it\'s"]'),
        (Literal['say "hi"'], "Literal['say \"hi\"']"),
        (Literal['it\'s "x"'], "Literal['it\\'s \"x\"']"),
        (Literal[1, True, None], "Literal[1, True, None]"),
        (Any, "Any"),
        (tuple[int, ...], "tuple[int, Ellipsis]"),
        (list[dict[str, Optional[int]]], "list[dict[str, Union[int, NoneType]]]"),
    ],
)
def test_annotation_name_and_round_trip(annotation: Any, name: str) -> None:
    assert annotation_name(annotation) == name
    assert parse_type(name) == annotation


# ----- string form -------------------------------------------------------------------------------


def test_parse_string_form() -> None:
    signature = Signature.parse("question, context: list[str] -> answer")
    assert list(signature.input_fields) == ["question", "context"]
    assert signature.input_fields["context"].annotation == list[str]
    assert signature.output_fields["answer"] == Field("answer", str, "")
    assert signature.instructions == "Given the fields `question`, `context`, produce the fields `answer`."


def test_parse_commas_inside_brackets_and_quotes() -> None:
    signature = Signature.parse("a, b: dict[str, list[int]] -> c: int, d: Literal['x, y', 'z->w']")
    assert [f.name for f in signature.inputs] == ["a", "b"]
    assert signature.input_fields["b"].annotation == dict[str, list[int]]
    assert signature.output_fields["d"].annotation == Literal["x, y", "z->w"]
    assert str(signature) == "a: str, b: dict[str, list[int]] -> c: int, d: Literal['x, y', 'z->w']"


def test_parse_without_inputs_and_with_instructions() -> None:
    signature = Signature.parse(" -> answer", instructions="  Say something.\n")
    assert signature.inputs == ()
    assert signature.instructions == "Say something."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("question answer", 'expected "inputs -> outputs", got "question answer"'),
        ("a -> b -> c", 'with one "->", got 2 in "a -> b -> c"'),
        ("question ->", 'expected at least one output field after "->", got "question ->"'),
        ("a, , b -> c", 'got an empty name in "a, , b -> c"'),
        ("a: -> b", 'expected a type after "a:"'),
        ("1x -> y", 'invalid field name "1x": expected a Python identifier'),
        ("my field -> y", 'invalid field name "my field"'),
        ("class -> y", 'invalid field name "class"'),
        ("a, a -> b", 'field "a" is declared twice among the inputs'),
        ("a -> b, b", 'field "b" is declared twice among the outputs'),
        ("a -> a", 'field "a" is both an input and an output'),
        ("a: Foo -> b", "field \"a\": unknown type 'Foo'"),
        ("a: list[str -> b", "unbalanced brackets"),
        ("a] -> b", "unbalanced brackets"),
        ("a: Literal['x -> b", "unclosed quote"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        Signature.parse(text)
    assert message in str(info.value)


# ----- structured form ---------------------------------------------------------------------------


def test_from_spec_mapping_layout() -> None:
    signature = Signature.from_spec(
        {
            "instructions": "Answer questions with short factoid answers.",
            "inputs": {"question": "str", "context": None},
            "outputs": {"answer": {"type": "Literal['a', 'b']", "desc": "one letter"}, "why": {"desc": "short"}},
        }
    )
    assert signature.instructions == "Answer questions with short factoid answers."
    assert signature.inputs == (Field("question", str), Field("context", str))
    assert signature.outputs == (Field("answer", Literal["a", "b"], "one letter"), Field("why", str, "short"))


def test_from_spec_list_layout_and_string() -> None:
    spec = {
        "inputs": [{"name": "context", "type": "list[str]", "desc": "facts"}, "question"],
        "outputs": [{"name": "answer"}, "score: float"],
    }
    signature = Signature.from_spec(spec)
    assert signature.inputs == (Field("context", list[str], "facts"), Field("question", str))
    assert signature.outputs == (Field("answer", str), Field("score", float))
    assert signature.instructions == "Given the fields `context`, `question`, produce the fields `answer`, `score`."
    assert Signature.from_spec("document -> summary: str") == Signature.parse("document -> summary")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"inputs": {"q": "str"}}, "expected at least one output field, got none"),
        ({"inputs": {"q": "str"}, "outputs": {}}, "expected at least one output field"),
        ({"outputs": {"a": "Foo"}}, "field \"a\": unknown type 'Foo'"),
        ({"outputs": {"a b": "str"}}, 'invalid field name "a b"'),
        ({"outputs": {"a": {"typ": "str"}}}, 'field "a" in outputs: unknown key(s) typ; expected type, desc'),
        ({"outputs": {"a": 3}}, 'field "a" in outputs: expected a type string'),
        ({"outputs": [{"type": "str"}]}, 'expected a "name" in each of the outputs'),
        ({"outputs": "a"}, "expected outputs to be a mapping of name to type, or a list"),
        ({"output": {"a": "str"}}, "unknown signature key(s) output; expected instructions, inputs, outputs"),
        ({"inputs": {"a": "str"}, "outputs": {"a": "int"}}, 'field "a" is both an input and an output'),
        (42, "expected a signature string or mapping"),
    ],
)
def test_from_spec_errors(spec: Any, message: str) -> None:
    with pytest.raises(SignatureError) as info:
        Signature.from_spec(spec)
    assert message in str(info.value)


def test_signature_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Signature.parse("nothing here")


# ----- fields, instructions and derived signatures -----------------------------------------------


def test_dspy_placeholder_description_is_empty() -> None:
    assert Field("reasoning", str, "${reasoning}").desc == ""
    assert Field("reasoning", str, "${other}").desc == "${other}"


def test_field_prefix_matches_dspy_inference() -> None:
    assert Field("question").prefix == "Question:"
    assert Field("snake_case_text").prefix == "Snake Case Text:"
    assert Field("camelCaseText").prefix == "Camel Case Text:"
    assert Field("HTMLParser").prefix == "HTML Parser:"
    assert Field("text2number").prefix == "Text 2 Number:"


def test_empty_instructions_resolve_to_default() -> None:
    inputs, outputs = (Field("a"), Field("b")), (Field("c"),)
    expected = "Given the fields `a`, `b`, produce the fields `c`."
    assert Signature(inputs, outputs, "").instructions == expected
    assert Signature(inputs, outputs).instructions == expected
    assert Signature.parse("a, b -> c").with_instructions("New.").with_instructions("").instructions == expected


def test_prepend_output_keeps_instructions() -> None:
    signature = Signature.parse("question -> answer")
    cot = signature.prepend_output("reasoning", str)
    assert list(cot.output_fields) == ["reasoning", "answer"]
    assert cot.instructions == "Given the fields `question`, produce the fields `answer`."
    # Explicit instructions survive too, and the original is untouched.
    custom = signature.with_instructions("Think.").prepend_output("reasoning", str, "step by step")
    assert custom.instructions == "Think."
    assert custom.output_fields["reasoning"].desc == "step by step"
    assert list(signature.output_fields) == ["answer"]


def test_prepend_output_rejects_clash() -> None:
    with pytest.raises(SignatureError, match='field "question" is both an input and an output'):
        Signature.parse("question -> answer").prepend_output("question", str)


def test_with_updated_field_and_delete() -> None:
    signature = Signature.parse("question -> answer")
    updated = signature.with_updated_field("answer", desc="short")
    assert updated.output_fields["answer"].desc == "short"
    assert updated.instructions == signature.instructions
    retyped = updated.with_updated_field("answer", annotation=int)
    assert retyped.output_fields["answer"] == Field("answer", int, "short")
    with pytest.raises(SignatureError, match='no field "nope"; fields are: question, answer'):
        signature.with_updated_field("nope", desc="x")
    widened = signature.append_input("context", list[str]).append_output("score", float)
    assert list(widened.fields) == ["question", "context", "answer", "score"]
    assert list(widened.delete("context").fields) == ["question", "answer", "score"]


def test_to_dict_round_trip() -> None:
    signature = Signature.from_spec(
        {
            "instructions": "Rate it.\n\nBe fair.",
            "inputs": {"review": {"type": "str", "desc": "a review"}, "tags": "list[str] | None"},
            "outputs": {"label": "Literal['it\\'s ok', \"bad\"]", "score": "dict[str, tuple[int, ...]]"},
        }
    ).prepend_output("reasoning", str)
    data = signature.to_dict()
    assert data["outputs"][0] == {"name": "reasoning", "type": "str", "desc": ""}
    assert data["inputs"][1] == {"name": "tags", "type": "Union[list[str], NoneType]", "desc": ""}
    restored = Signature.from_dict(data)
    assert restored == signature
    assert restored.instructions == "Rate it.\n\nBe fair."


def test_signatures_are_immutable_and_hashable() -> None:
    signature = Signature.parse("a -> b")
    with pytest.raises(AttributeError):
        signature.instructions = "x"  # type: ignore[misc]
    assert hash(signature) == hash(Signature.parse("a -> b"))
