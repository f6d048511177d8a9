"""Adapters at run time: JSON mode, response_format negotiation and the ChatAdapter -> JSON fallback."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

ROOT = Path(__file__).resolve().parent.parent


def program(tmp_path: Path, adapter: str = "chat", model: str = "openai/gpt-4o-mini", retries: int = 0) -> Path:
    # gpt-4o-mini: a model DSPy sends the JSON schema to (see structured_outputs.py).
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            lm: {{model: {model}, api_base: "${{BASE}}", num_retries: {retries}}}
            modules:
              rate:
                signature: "review -> stars: int, label: Literal['good', 'bad']"
                adapter: {adapter}
            """
        )
    )
    return path


def json_reply(body: dict) -> str:
    return 'Here you go: {"stars": 4, "label": "good"}'


def test_unparseable_chat_reply_falls_back_to_json_once(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: json_reply(body) if "response_format" in body else "four stars, good"
    path, usage = program(tmp_path), tmp_path / "usage.json"
    done = dspx(
        "run",
        str(path),
        "-i",
        "review=nice",
        "--json",
        "--usage-file",
        str(usage),
        BASE=lm_server.api_base,
        COLUMNS="200",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"stars": 4, "label": "good"}
    chat, fallback = (r.body for r in lm_server.requests)
    assert "response_format" not in chat and "[[ ## stars ## ]]" in chat["messages"][0]["content"]
    assert fallback["response_format"]["type"] == "json_schema"
    assert "JSON object" in fallback["messages"][-1]["content"]
    assert json.loads(usage.read_text())["adapter_fallbacks"] == 1
    assert "1 JSON fallback" in done.stderr

    again = dspx("run", str(path), "-i", "review=nice", "--json", BASE=lm_server.api_base)
    assert again.returncode == 0 and json.loads(again.stdout) == {"stars": 4, "label": "good"}
    # The chat reply that did not parse was not cached, so it is asked again; the JSON answer is a hit.
    assert len(lm_server.requests) == 3 and "response_format" not in lm_server.requests[2].body


def test_parsed_chat_reply_is_not_asked_again(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: "[[ ## stars ## ]]\n2\n\n[[ ## label ## ]]\nbad\n\n[[ ## completed ## ]]"
    done = dspx("run", str(program(tmp_path)), "-i", "review=meh", "--json", BASE=lm_server.api_base)
    assert json.loads(done.stdout) == {"stars": 2, "label": "bad"}
    assert len(lm_server.requests) == 1 and "JSON fallback" not in done.stderr


def test_json_adapter_falls_back_from_json_schema_to_json_object(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.push(Reply(status=400, json=error_body("response_format json_schema is not supported by this server")))
    lm_server.responder = json_reply
    done = dspx("run", str(program(tmp_path, "json")), "-i", "review=nice", "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"stars": 4, "label": "good"}
    formats = [r.body["response_format"]["type"] for r in lm_server.requests]
    assert formats == ["json_schema", "json_object"]


def test_json_mode_failure_is_a_runtime_error_with_the_reply(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: "no json here"
    done = dspx("run", str(program(tmp_path, "json")), "-i", "review=x", BASE=lm_server.api_base)
    assert done.returncode == 1
    assert "no json here" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert len(lm_server.requests) == 1  # JSON mode has nothing to fall back to


def test_inspect_shows_json_adapter_messages(tmp_path: Path) -> None:
    done = dspx("inspect", str(program(tmp_path, "json")), "-i", "review=x", "--json", BASE="http://127.0.0.1:9/v1")
    assert done.returncode == 0, done.stderr
    messages = json.loads(done.stdout)[0]["messages"]
    assert messages[-1]["content"].endswith(
        "Respond with a JSON object in the following order of fields: `stars` (must be formatted as a valid "
        "Python int), then `label` (must be formatted as a valid Python Literal['good', 'bad'])."
    )


def test_a_server_that_answers_the_schema_with_500_gets_json_object_without_spending_retries(
    lm_server: LMServer, tmp_path: Path
) -> None:
    # What llama-cpp-python's server does with response_format json_schema.
    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        if (request.body.get("response_format") or {}).get("type") == "json_schema":
            return Reply(status=500, json=error_body("Internal Server Error"))
        return None

    lm_server.rule = rule
    lm_server.responder = lambda body: json_reply(body) if "response_format" in body else "four stars, good"
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"review": f"nice {i}"}) + "\n" for i in range(3)))
    done = dspx("run", str(program(tmp_path, retries=3)), "--batch", str(rows), "-j", "1", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"stars": 4, "label": "good"}] * 3
    formats = [(r.body.get("response_format") or {}).get("type") for r in lm_server.requests]
    # Each row: a chat call that does not parse, then the JSON fallback. Only the first fallback
    # offers the schema; the endpoint's refusal is remembered for the rest of the run.
    assert formats == [None, "json_schema", "json_object", None, "json_object", None, "json_object"]
    assert done.stderr.count("refused response_format json_schema") == 1
    assert "HTTP 500" in done.stderr and "retries" not in done.stderr


def test_models_dspy_gives_no_response_format_get_none(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = json_reply
    done = dspx(
        "run",
        str(program(tmp_path, "json", model="openai/my-local-model")),
        "-i",
        "review=nice",
        "--json",
        BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"stars": 4, "label": "good"}
    (request,) = lm_server.requests
    assert "response_format" not in request.body and "n" not in request.body
