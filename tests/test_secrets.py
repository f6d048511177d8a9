"""No secret in any output: a marker key in every place a program can hold one (its LM, a judge
metric's LM, a teacher LM, an embeddings retriever) is sent to the server, and found nowhere
else: not in any command's stdout or stderr, nor in any file under the run folders, state, usage
file, cache folder or history."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dspx_cli.core.redact import REDACTED, is_secret_name, redact
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, Reply, error_body

MARKER = "sk-MARKER-123"


def test_the_rule() -> None:
    for name in (
        "api_key",
        "API_KEY",
        "OPENAI_API_KEY",
        "x-api-key",
        "apikey",
        "key",
        "token",
        "access_token",
        "secret",
        "client_secret",
        "password",
        "Authorization",
        "credentials",
    ):
        assert is_secret_name(name), name
    for name in ("max_tokens", "prompt_tokens", "model", "keys", "tokenizer", "k", "monkey", "text_field", "cache_key"):
        assert not is_secret_name(name), name
    settings = {"lm": {"model": "m", "api_key": MARKER}, "teachers": [{"Token": MARKER}], "extra": {"key": ""}}
    assert redact(settings) == {
        "lm": {"model": "m", "api_key": REDACTED},
        "teachers": [{"Token": REDACTED}],
        "extra": {"key": ""},
    }
    assert settings["lm"]["api_key"] == MARKER  # a copy: the settings themselves are untouched


PROGRAM = f"""\
lm: {{model: openai/student, api_base: "${{BASE}}", api_key: {MARKER}, num_retries: 0,
     extra: {{metadata: {{session_token: {MARKER}}}}}}}
modules:
  find:
    type: retrieve
    corpus: corpus.jsonl
    k: 1
    embeddings: {{model: openai/embed, api_base: "${{BASE}}", api_key: {MARKER}}}
  shout: {{signature: "text, passages: list[str] -> answer"}}
flow:
  - {{id: find, module: find, with: {{query: $input.text}}}}
  - {{id: shout, module: shout, with: {{text: $input.text, passages: $find.passages}}}}
output: {{answer: $shout.answer}}
data: {{train: train.jsonl, dev: dev.jsonl}}
metric:
  judge:
    signature: "text, answer, gold_answer -> correct: bool"
    lm: {{model: openai/judge, api_base: "${{BASE}}", api_key: {MARKER}}}
optimizer:
  type: bootstrap_few_shot
  max_bootstrapped_demos: 1
  max_labeled_demos: 1
  teacher: {{lm: {{model: openai/teacher, api_base: "${{BASE}}", api_key: {MARKER}}}}}
"""


def respond(body: dict) -> str:
    system = body["messages"][0]["content"]
    if "`correct`" in system:
        return "[[ ## correct ## ]]\nTrue\n\n[[ ## completed ## ]]"
    text = body["messages"][-1]["content"].split("\n")[1]
    return f"[[ ## answer ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rows = [{"text": f"w{i}", "answer": f"W{i}"} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows[:3]))
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": f"w{i} is a word"}) + "\n" for i in range(6)))
    (tmp_path / "p.yaml").write_text(textwrap.dedent(PROGRAM))
    return tmp_path


def test_a_marker_key_reaches_the_server_and_no_output(lm_server: LMServer, project: Path) -> None:
    lm_server.responder = respond
    cache = project / "cache"
    env = {"BASE": lm_server.api_base, "DSPX_CACHE_DIR": str(cache)}

    def call(*args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = dspx(*args, cwd=project, **env)
        assert done.returncode in ok, (args, done.stderr)
        return done.stdout + done.stderr

    outputs = [
        call("validate", "p.yaml", "--graph"),
        call("inspect", "p.yaml", "-i", "text=w1"),
        call("inspect", "p.yaml", "-i", "text=w1", "--json"),
        call("run", "p.yaml", "-i", "text=w1", "--trace", "--usage-file", "usage.json"),
        call("run", "p.yaml", "-i", "text=w2", "--json"),
        call("run", "p.yaml", "--batch", "rows.jsonl", "--usage-file", "batch-usage.json"),
        call("evaluate", "p.yaml", "--json", "--junit", "junit.xml"),
        call("compile", "p.yaml", "--json"),
        call("compile", "p.yaml", "--json", "-o", "state.json"),
        call("evaluate", "p.yaml", "--state", "state.json", "--json", "--output", "evaluated"),
        call("history", "-n", "500", "--json"),
        call("history", "-n", "3"),
        call("cache", "stats", "--json"),
        call("cache", "stats"),
    ]
    # A server that quotes the key back in its error: the message users see must not repeat it.
    lm_server.push(Reply(status=401, json=error_body(f"Incorrect API key provided: {MARKER}")))
    outputs.append(call("run", "p.yaml", "-i", "text=never cached", "--no-cache", ok=(1,)))

    # The test is real only if the key did travel where it belongs: in the Authorization header.
    sent = {
        (request.path, (request.body or {}).get("model"))
        for request in lm_server.requests
        if request.headers.get("authorization") == f"Bearer {MARKER}"
    }
    assert {("/v1/chat/completions", m) for m in ("student", "judge", "teacher")} <= sent
    assert ("/v1/embeddings", "embed") in sent
    assert list(project.glob("runs/*/summary.json")) and list(project.glob("runs/*/state.json"))
    history = [json.loads(line) for line in (cache / "history.jsonl").read_text().splitlines()]
    assert {"session_token": REDACTED} in [r["params"]["extra"].get("metadata") for r in history]
    assert any(MARKER in json.dumps(request.body) for request in lm_server.requests)  # extra is sent as written

    for text in outputs:
        assert MARKER not in text
    written = [path for path in project.rglob("*") if path.is_file()]
    assert len(written) > 15
    leaks = [
        str(path.relative_to(project))
        for path in written
        if path.name != "p.yaml" and (MARKER.encode() in path.read_bytes() or MARKER in str(path))
    ]
    assert leaks == []
    program_json = json.loads(next(project.glob("runs/*/program.json")).read_text())
    assert program_json["metric"]["judge"]["lm"]["api_key"] == REDACTED
    assert program_json["optimizer"]["teacher"]["lm"]["api_key"] == REDACTED
    assert program_json["modules"]["find"]["embeddings"]["api_key"] == REDACTED


def test_an_error_message_does_not_quote_a_secret_value(tmp_path: Path) -> None:
    from dspx_cli.errors import ProgramError
    from dspx_cli.program.loader import load_program

    path = tmp_path / "p.yaml"
    path.write_text(f"lm: {{model: openai/x, api_key: [{MARKER}]}}\nmodules: {{m: {{signature: 'q -> a'}}}}\n")
    with pytest.raises(ProgramError) as info:
        load_program(path, env={})
    assert "lm.api_key: expected a string" in str(info.value) and MARKER not in str(info.value)
