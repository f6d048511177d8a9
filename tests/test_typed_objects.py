"""Typed objects (`types:`): DSPy 3.4.1's prompts, parses and response_format for pydantic field
types, byte for byte (tests/fixtures/typed_objects), and the program-file side (run, validate)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core import Signature
from dspx_cli.core.json_values import jsonable
from dspx_cli.core.object_types import ObjectTypeError, build_object_types
from dspx_cli.errors import AdapterParseError
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "typed_objects" / "golden.json").read_text())
CASES: list[dict[str, Any]] = GOLDEN["cases"]
ADAPTERS = {"chat": ChatAdapter(), "json": JSONAdapter()}
PARAMS = [(case, kind) for case in CASES for kind in ADAPTERS]
IDS = [f"{case['id']}-{kind}" for case, kind in PARAMS]


def signature(case: dict[str, Any]) -> Signature:
    return Signature.from_spec(case["signature"], named_types=build_object_types(case["types"]))


def test_fixture_has_its_cases() -> None:
    assert [c["id"] for c in CASES] == ["flat_output", "nested_output", "list_output_optional_field", "object_input"]


@pytest.mark.parametrize(("case", "kind"), PARAMS, ids=IDS)
def test_messages_match_dspy(case: dict[str, Any], kind: str) -> None:
    messages = ADAPTERS[kind].format(signature(case), [], case["inputs"])
    assert messages == case[kind]["messages"]


@pytest.mark.parametrize(("case", "kind"), PARAMS, ids=IDS)
def test_parses_match_dspy(case: dict[str, Any], kind: str) -> None:
    sig = signature(case)
    for expected in case[kind]["parses"]:
        if "error" in expected:
            with pytest.raises(AdapterParseError):
                ADAPTERS[kind].parse(sig, expected["completion"])
        else:
            assert jsonable(ADAPTERS[kind].parse(sig, expected["completion"])) == expected["outputs"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_response_format_matches_dspy(case: dict[str, Any]) -> None:
    response_format = JSONAdapter().response_format(signature(case))
    expected = case["json"]["response_format"]
    assert response_format == expected
    # Key order too: the request body is what the provider reads.
    assert json.dumps(response_format["json_schema"]["schema"]) == json.dumps(expected["json_schema"]["schema"])


def test_parsed_values_are_model_instances() -> None:
    case = CASES[0]
    parsed = ChatAdapter().parse(signature(case), case["chat"]["parses"][0]["completion"])
    assert type(parsed["order"]).__name__ == "Order" and parsed["order"].total == 42.5


# ----- declaration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"A": {"b": "Nope"}}, ("A", "b"), "unknown type 'Nope'"),
        ({"A": {"b": {"type": "list[B]"}}, "B": {"a": "A"}}, ("B", "a"), "cycle (A -> B -> A)"),
        ({"A": {"a": "Optional[A]"}}, ("A", "a"), "cycle (A -> A)"),
        ({"str": {"a": "int"}}, ("str",), "built-in type"),
        ({"A": {"_x": "int"}}, ("A", "_x"), "reserved"),
        ({"A": {"b": "A[int]"}, "B": {"x": "int"}}, ("A", "b"), "cycle"),
        ({"A": {"b": "B[int]"}, "B": {"x": "int"}}, ("A", "b"), "B takes no type arguments"),
    ],
)
def test_declaration_errors_name_where(section: dict[str, Any], path: tuple[str, ...], message: str) -> None:
    with pytest.raises(ObjectTypeError) as caught:
        build_object_types(section)
    assert message in str(caught.value) and caught.value.path == path


# ----- program files ------------------------------------------------------------------------------

PROGRAM = """\
lm: {{model: openai/gpt-4o-mini, api_base: "${{BASE}}", num_retries: 0}}
types:
  Order:
    items: {{type: "list[Item]", desc: every line}}
    total: float
  Item:
    name: {{type: str, desc: product name}}
    qty: int
    note: {{type: str, optional: true}}
modules:
  extract:
    signature:
      inputs: {{receipt: str}}
      outputs: {{order: {order_type}}}
    adapter: {adapter}
"""


def write(tmp_path: Path, adapter: str = "json", order_type: str = "Order") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(PROGRAM.format(adapter=adapter, order_type=order_type))
    return path


def test_run_prints_the_object(lm_server: LMServer, tmp_path: Path) -> None:
    reply = {"order": {"items": [{"name": "apple", "qty": 2, "note": None}], "total": 3.5}}
    lm_server.responder = lambda body: json.dumps(reply)
    done = dspx("run", str(write(tmp_path)), "-i", "receipt=2x apple", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == reply
    (request,) = lm_server.requests
    schema = request.body["response_format"]["json_schema"]["schema"]
    assert schema["$defs"]["Order"]["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
    assert schema["$defs"]["Item"]["required"] == ["name", "qty", "note"]
    assert "(must be formatted as a valid Python Order)" in request.body["messages"][-1]["content"]


def test_run_with_invalid_object_reply_fails_with_the_reason(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: '{"order": {"items": [{"name": "apple", "qty": "two"}], "total": 1}}'
    done = dspx("run", str(write(tmp_path)), "-i", "receipt=x", BASE=lm_server.api_base)
    assert done.returncode == 1
    assert "items.0.qty" in done.stderr


def test_chat_run_prints_the_object(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: '[[ ## order ## ]]\n{"items": [], "total": 0}\n\n[[ ## completed ## ]]'
    done = dspx("run", str(write(tmp_path, "chat")), "-i", "receipt=x", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"order": {"items": [], "total": 0.0}}


def test_validate_reports_an_unknown_type_in_a_signature(tmp_path: Path) -> None:
    done = dspx("validate", str(write(tmp_path, order_type="Ordr")), BASE="http://127.0.0.1:9/v1")
    assert done.returncode == 2
    assert "p.yaml:14" in done.stderr and "Ordr" in done.stderr and "declared type (Order, Item)" in done.stderr


def test_validate_reports_a_bad_field_type_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("qty: int", "qty: integer"))
    done = dspx("validate", str(path), BASE="http://127.0.0.1:9/v1")
    assert done.returncode == 2
    assert "p.yaml:8" in done.stderr and "integer" in done.stderr and "Traceback" not in done.stderr


def test_validate_reports_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("qty: int", "qty: Order"))
    done = dspx("validate", str(path), BASE="http://127.0.0.1:9/v1")
    assert done.returncode == 2
    assert "p.yaml:8" in done.stderr and "cycle (Order -> Item -> Order)" in done.stderr


def test_an_object_input_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:9/v1"}
            types:
              Point: {x: int, y: int}
            modules:
              m: {signature: "p: Point -> d: float"}
            """
        )
    )
    done = dspx("inspect", str(path), "-i", 'p={"x": 1}')
    assert done.returncode == 2 and "y: Field required" in done.stderr
    done = dspx("inspect", str(path), "-i", 'p={"x": 1, "y": 2}', "--json")
    assert done.returncode == 0, done.stderr
    assert '[[ ## p ## ]]\n{"x": 1, "y": 2}' in json.loads(done.stdout)[0]["messages"][-1]["content"]


def test_an_object_output_feeds_an_object_input(lm_server: LMServer, tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/gpt-4o-mini, api_base: "${BASE}", num_retries: 0}
            types:
              Point: {x: int, y: {type: int, desc: height}}
            modules:
              a: {signature: "q -> p: Point"}
              b: {signature: "p: Point -> d: float"}
            flow:
              - {id: a, module: a, with: {q: "$input.q"}}
              - {id: b, module: b, with: {p: "$a.p"}}
            output: {p: "$a.p", d: "$b.d"}
            """
        )
    )

    def reply(body: dict[str, Any]) -> str:
        if "[[ ## q ## ]]" in body["messages"][-1]["content"]:
            return '[[ ## p ## ]]\n{"x": 1, "y": "2"}\n\n[[ ## completed ## ]]'
        return "[[ ## d ## ]]\n2.2\n\n[[ ## completed ## ]]"

    lm_server.responder = reply
    done = dspx("run", str(path), "-i", "q=hi", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"p": {"x": 1, "y": 2}, "d": 2.2}
    # The second module reads the validated object (the LM's "2" became 2), as JSON.
    assert '[[ ## p ## ]]\n{"x": 1, "y": 2}' in lm_server.requests[-1].body["messages"][-1]["content"]


def test_an_object_type_with_an_open_ended_field_gets_json_mode() -> None:
    named = build_object_types({"Stats": {"counts": "dict[str, int]"}, "Box": {"stats": "list[Stats]"}})
    signature = Signature.from_spec({"inputs": {"q": "str"}, "outputs": {"box": "Box"}}, named_types=named)
    assert JSONAdapter().response_format(signature) == {"type": "json_object"}


def test_exact_match_compares_an_object_with_its_json_label(lm_server: LMServer, tmp_path: Path) -> None:
    program = tmp_path / "e.yaml"
    program.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/gpt-4o-mini, api_base: "${BASE}", num_retries: 0}
            types:
              Point: {x: int, y: int}
            modules:
              m: {signature: "q -> p: Point"}
            metric: exact_match
            """
        )
    )
    data = tmp_path / "dev.jsonl"
    data.write_text('{"q": "a", "p": {"x": 1, "y": 2}}\n{"q": "b", "p": {"x": 5, "y": 5}}\n')
    lm_server.responder = lambda body: '[[ ## p ## ]]\n{"x": 1, "y": 2}\n\n[[ ## completed ## ]]'
    done = dspx("evaluate", str(program), "--dataset", str(data), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == 0.5
