"""One rule for the shape of a History value (core/media.py `history_value`), checked the same way
wherever such a value comes in: `-i`, a `--batch` row, a dataset row, a program file's demo and
the adapter formatting the prompt. Each shape gets the same verdict and the same reason at each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.adapters import ChatAdapter
from dspx_cli.core import Signature
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

TURN = {"question": "Hi?", "answer": "Hello."}
# (value, None when it is a History, else the reason every entry point gives)
SHAPES: list[tuple[Any, str | None]] = [
    ({"messages": []}, None),
    ({"messages": [TURN]}, None),
    ([], None),
    ([TURN, {"answer": "only an output"}], None),
    ({"turns": []}, 'expected a History {"messages": [...]}, got the key(s) turns'),
    ({"messages": [], "extra": 1}, 'expected a History {"messages": [...]}, got the key(s) messages, extra'),
    ({}, 'expected a History {"messages": [...]}, got an empty object'),
    ({"messages": "hi"}, 'expected "messages" to be a list of messages, got a string'),
    ({"messages": None}, 'expected "messages" to be a list of messages, got null'),
    ({"messages": {"question": "q"}}, 'expected "messages" to be a list of messages, got an object'),
    (3, 'expected a History {"messages": [...]} or a list of messages, got a number'),
    ("hello", 'expected a History {"messages": [...]} or a list of messages, got a string'),
    ([TURN, 1], "expected each History message to be an object of field values, got a number at [1]"),
    ({"messages": [["q", "a"]]}, "expected each History message to be an object of field values, got a list at [0]"),
]
IDS = [json.dumps(value) for value, _ in SHAPES]
SIGNATURE = "question: str, history: History -> answer: str"
PROGRAM = (
    f'lm: {{model: openai/m, api_base: "${{BASE}}", num_retries: 0}}\nmodules:\n  m:\n    signature: "{SIGNATURE}"\n'
)


def _program(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(PROGRAM + extra)
    return path


def _verdict(returncode_ok: bool, message: str, reason: str | None) -> None:
    if reason is None:
        assert returncode_ok, message
    else:
        assert not returncode_ok and reason in message, message


@pytest.mark.parametrize(("value", "reason"), SHAPES, ids=IDS)
def test_cli_input(tmp_path: Path, value: Any, reason: str | None) -> None:
    path = _program(tmp_path)
    done = dspx("inspect", str(path), "-i", "question=q", "-i", f"history={json.dumps(value)}", BASE="http://x/v1")
    _verdict(done.returncode == 0, done.stderr, reason)
    if reason is not None:
        assert done.returncode == 2 and done.stderr.startswith("error: -i history: ")
        assert len(done.stderr.strip().splitlines()) == 1


def test_batch_rows(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
    path = _program(tmp_path)
    rows = "".join(json.dumps({"question": "q", "history": value}) + "\n" for value, _ in SHAPES)
    done = dspx("run", str(path), "--batch", "-", "--no-cache", input=rows, BASE=lm_server.api_base)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == len(SHAPES), done.stderr
    for line, (record, (_, reason)) in enumerate(zip(records, SHAPES, strict=True), start=1):
        error = record.get("error")
        _verdict(error is None, error["message"] if error else "", reason)
        if error is not None:
            assert error["line"] == line and error["message"].startswith("input 'history': "), error


def test_dataset_rows(tmp_path: Path) -> None:
    from dspx_cli.evaluate.datasets import BadRow, load_rows
    from dspx_cli.program.loader import load_program

    rows = "".join(json.dumps({"question": "q", "history": value, "answer": "a"}) + "\n" for value, _ in SHAPES)
    (tmp_path / "dev.jsonl").write_text(rows)
    path = _program(tmp_path, "data: {dev: dev.jsonl}\n")
    loaded = load_rows(load_program(path, env={"BASE": "http://x/v1"}))
    for line, (row, (_, reason)) in enumerate(zip(loaded, SHAPES, strict=True), start=1):
        _verdict(not isinstance(row, BadRow), str(row), reason)
        if isinstance(row, BadRow):
            assert str(row).startswith(f"{tmp_path / 'dev.jsonl'}:{line}: input 'history': "), str(row)


@pytest.mark.parametrize(("value", "reason"), SHAPES, ids=IDS)
def test_program_file_demo(tmp_path: Path, value: Any, reason: str | None) -> None:
    demo = json.dumps({"question": "q", "history": value, "answer": "a"})
    path = _program(tmp_path, f"    demos:\n      - {demo}\n")
    done = dspx("validate", str(path), BASE="http://x/v1")
    _verdict(done.returncode == 0, done.stderr, reason)
    if reason is not None:
        assert done.returncode == 2 and done.stderr.startswith(f"error: {path}:6:"), done.stderr


@pytest.mark.parametrize(("value", "reason"), SHAPES, ids=IDS)
def test_adapter(value: Any, reason: str | None) -> None:
    """What reaches the adapter has passed one of the entry points; it holds the same rule."""
    signature = Signature.parse(SIGNATURE)
    try:
        ChatAdapter().format(signature, [], {"question": "q", "history": value})
    except ValueError as exc:
        _verdict(False, str(exc), reason)
    else:
        _verdict(True, "", reason)
