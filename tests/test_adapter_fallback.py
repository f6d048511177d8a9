"""Adapters at run time: JSON mode, response_format negotiation and the ChatAdapter -> JSON fallback."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.cli_process import dspx
from tests.lm_server import LMServer, Reply, error_body

ROOT = Path(__file__).resolve().parent.parent


def program(tmp_path: Path, adapter: str = "chat") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            lm: {{model: openai/m, api_base: "${{BASE}}", num_retries: 0}}
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
    done = dspx("run", str(path), "-i", "review=nice", "--json", "--usage-file", str(usage), BASE=lm_server.api_base)
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
