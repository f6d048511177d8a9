"""`dspx run --batch`: many rows, concurrently, streamed back in input order with per-row errors."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from tests import cli_process
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, Reply, error_body

ROOT = Path(__file__).resolve().parent.parent


def program(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
            modules:
              echo: {signature: "text -> shout"}
            """
        )
    )
    return path


def shout(body: dict) -> str:
    text = body["messages"][-1]["content"].split("\n")[1]
    return f"[[ ## shout ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"


def run(tmp_path: Path, server: LMServer, rows: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Through a real process: rows arrive on a pipe, results leave through one."""
    return cli_process.dspx("run", str(program(tmp_path)), "--batch", "-", *args, input=rows, BASE=server.api_base)


def test_rows_come_back_in_input_order_despite_latency(lm_server: LMServer, tmp_path: Path) -> None:
    # Earlier rows are slower, so they finish last: the output must still follow the input.
    def respond(body: dict) -> str:
        return shout(body)

    lm_server.responder = respond
    lm_server.rule = lambda request, attempt: Reply(
        delay=0.3 - 0.01 * int(request.body["messages"][-1]["content"].split("\n")[1][1:])
    )
    rows = "".join(json.dumps({"text": f"r{i}", "label": "ignored"}) + "\n" for i in range(20))
    done = run(tmp_path, lm_server, rows, "-j", "8")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"shout": f"R{i}"} for i in range(20)]
    assert lm_server.max_in_flight == 8


def test_failed_rows_keep_their_place_and_fail_the_exit_code(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    lm_server.rule = lambda request, attempt: (
        Reply(status=500, json=error_body("boom")) if "bad-server" in json.dumps(request.body) else None
    )
    rows = '{"text": "a"}\nnot json\n\n{"other": 1}\n{"text": "bad-server"}\n{"text": "b"}\n'
    done = run(tmp_path, lm_server, rows)
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0] == {"shout": "A"} and records[-1] == {"shout": "B"}
    assert [r["error"]["line"] for r in records[1:4]] == [2, 4, 5]
    assert "expected a JSON object" in records[1]["error"]["message"]
    assert "missing input(s) text" in records[2]["error"]["message"]
    assert "500" in records[3]["error"]["message"] and records[3]["error"]["type"] == "LMRequestError"
    assert "3 of 5 rows failed" in done.stderr


def test_input_file_errors(tmp_path: Path) -> None:
    path = str(program(tmp_path))
    missing = dspx("run", path, "--batch", str(tmp_path / "nope.jsonl"), BASE="http://127.0.0.1:9/v1")
    assert missing.returncode == 2 and "--batch" in missing.stderr
    both = dspx("run", path, "--batch", "-", "-i", "text=x", input="", BASE="http://127.0.0.1:9/v1")
    assert both.returncode == 2 and "not both" in both.stderr


def test_progress_lines_while_rows_run(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    lm_server.default_delay = 1.0
    rows = "".join(json.dumps({"text": f"r{i}"}) + "\n" for i in range(2))
    done = dspx(
        "run",
        str(program(tmp_path)),
        "--batch",
        "-",
        "-j",
        "1",
        input=rows,
        BASE=lm_server.api_base,
        DSPX_PROGRESS_INTERVAL="0.2",
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("run: ")]
    assert sum(line.startswith("run: 0 rows · 0 errors · 0 calls · ") for line in lines) >= 2, done.stderr
    assert any(line.startswith("run: 1 rows · 0 errors · 1 call · ") for line in lines)
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"shout": "R0"}, {"shout": "R1"}]


TYPED = """\
lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
modules:
  echo: {signature: "text: str, n: int, mood: Literal['calm', 'loud'], tags: list[str] -> shout"}
"""
GOOD_ROW = {"text": "ok", "n": 3, "mood": "calm", "tags": ["a"]}


def test_batch_rows_are_type_checked_like_cli_inputs(lm_server: LMServer, tmp_path: Path) -> None:
    """A row whose value does not fit its input's type is that row's error record, before any LM
    call, with the reason `-i` gives; the rows around it still run."""
    lm_server.responder = lambda body: "[[ ## shout ## ]]\nOK\n\n[[ ## completed ## ]]"
    path = tmp_path / "p.yaml"
    path.write_text(TYPED)
    bad = [
        ({"n": "abc"}, "input 'n': expected int ('abc' is not an int)"),
        ({"n": 3.5}, "input 'n': expected int (3.5 is not an int)"),
        ({"mood": "angry"}, "input 'mood': expected Literal['calm', 'loud'] ('angry' is not one of 'calm', 'loud')"),
        ({"tags": "a,b"}, "input 'tags': expected list[str] ('a,b' is not a list)"),
        ({"tags": ["a", 2]}, "input 'tags': expected list[str] (item [1]: 2 is not a str)"),
    ]
    rows = [GOOD_ROW, *({**GOOD_ROW, **change} for change, _ in bad), GOOD_ROW]
    stdin = "".join(json.dumps(row) + "\n" for row in rows)
    done = dspx("run", str(path), "--batch", "-", "--no-cache", input=stdin, BASE=lm_server.api_base)
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0] == records[-1] == {"shout": "OK"}
    for line, (record, (_, message)) in enumerate(zip(records[1:-1], bad, strict=True), start=2):
        assert record == {"error": {"line": line, "type": "UsageError", "message": message}}
    assert len(lm_server.requests) == 2
    # The same values through -i are refused for the same reason.
    for change, message in bad[:3]:
        args = [
            a for k, v in {**GOOD_ROW, **change}.items() for a in ("-i", f"{k}={json.dumps(v) if k != 'text' else v}")
        ]
        single = dspx("run", str(path), *args, "--no-cache", BASE=lm_server.api_base)
        assert single.returncode == 2 and message.split(" (")[-1].rstrip(")") in single.stderr, single.stderr


def test_a_number_or_boolean_for_a_text_input_is_sent_as_its_json_text(lm_server: LMServer, tmp_path: Path) -> None:
    """`"text": 12345` in a row is what `-i text=12345` gives: the text "12345", not an error."""
    lm_server.responder = lambda body: "[[ ## shout ## ]]\nOK\n\n[[ ## completed ## ]]"
    path = tmp_path / "p.yaml"
    path.write_text(TYPED.replace("text: str,", "text: str, note: Optional[str],"))
    rows = [{**GOOD_ROW, "text": 12345, "note": 2}, {**GOOD_ROW, "text": True}, {**GOOD_ROW, "text": None}]
    stdin = "".join(json.dumps(row) + "\n" for row in rows)
    done = dspx("run", str(path), "--batch", "-", "--no-cache", input=stdin, BASE=lm_server.api_base)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[:2] == [{"shout": "OK"}, {"shout": "OK"}]
    assert records[2]["error"]["line"] == 3  # null is no text
    sent = sorted(request.body["messages"][-1]["content"] for request in lm_server.requests)
    assert len(sent) == 2  # rows may run concurrently: the order of requests is not the rows'
    assert any("[[ ## text ## ]]\n12345\n" in s and "[[ ## note ## ]]\n2\n" in s for s in sent)
    assert any("[[ ## text ## ]]\ntrue\n" in s for s in sent)
