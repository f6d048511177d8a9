"""Hostile rows in batch inputs and datasets: each bad line spoils only itself, never the batch.

Rows nested 100,000 deep, bytes that are not UTF-8, integers past Python's digit limit, NUL bytes
and over-long lines each get an error record (or a failed example, or a skip with a warning) that
names their line, while every other row still gets its result.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from dspx_cli.errors import ProgramError
from dspx_cli.evaluate.datasets import BadRow, load_examples, load_rows
from dspx_cli.program.loader import load_program
from tests.cli_process import dspx
from tests.lm_server import LMServer

DEEP = ("[" * 100_000 + "]" * 100_000).encode()
DEEP_OBJECT = b'{"text": ' + DEEP + b"}"
NOT_UTF8 = b'{"text": "caf\xe9"}'
HUGE_INT = b'{"text": "x", "n": ' + b"7" * 5000 + b"}"
NUL = b'{"text": "a\x00b"}'


def shout(body: dict) -> str:
    text = body["messages"][-1]["content"].split("\n")[1]
    return f"[[ ## answer ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"


def program(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent("""\
        lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
        modules:
          echo: {signature: "text -> answer"}
        """)
        + extra
    )
    return path


def test_a_batch_keeps_every_row_whatever_the_bad_ones_hold(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(
        b"\n".join(
            [
                b'\xef\xbb\xbf{"text": "first"}',  # a byte-order mark on line 1 is not an error
                DEEP,
                DEEP_OBJECT,
                NOT_UTF8,
                HUGE_INT,
                b'{"text": "middle"}',
                NUL,
                b"[1, 2]",
                b'{"text": "last"}',
            ]
        )
        + b"\n"
    )
    started = time.monotonic()
    done = dspx("run", str(program(tmp_path)), "--batch", str(rows), BASE=lm_server.api_base)
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 9
    assert records[0] == {"answer": "FIRST"} and records[5] == {"answer": "MIDDLE"} and records[8] == {"answer": "LAST"}
    errors = {r["error"]["line"]: r["error"]["message"] for r in records if "error" in r}
    assert sorted(errors) == [2, 3, 4, 5, 7, 8]
    assert "nested too deeply" in errors[2] and "nested too deeply" in errors[3]
    assert errors[4].startswith("not UTF-8 text") and "column 14" in errors[4]
    assert "expected a JSON object" in errors[5] and "digits" in errors[5]
    assert "Invalid control character" in errors[7]  # a raw NUL inside a JSON string
    assert "6 of 9 rows failed" in done.stderr


def test_a_batch_from_stdin_survives_a_bad_byte(lm_server: LMServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cli_process import ROOT

    lm_server.responder = shout
    data = b'{"text": "a"}\n' + NOT_UTF8 + b'\n{"text": "b"}\n'
    done = subprocess.run(
        [sys.executable, "-m", "dspx_cli", "run", str(program(tmp_path)), "--batch", "-"],
        input=data,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        env={**__import__("os").environ, "BASE": lm_server.api_base, "NO_COLOR": "1"},
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [line.get("answer") for line in lines] == ["A", None, "B"]
    assert lines[1]["error"]["line"] == 2 and done.returncode == 1


def test_an_over_long_line_is_refused_without_being_held(lm_server: LMServer, tmp_path: Path) -> None:
    from dspx_cli.program import batch

    lm_server.responder = shout
    rows = tmp_path / "rows.jsonl"
    size = batch.MAX_LINE_BYTES + 1024
    with rows.open("wb") as handle:
        handle.write(b'{"text": "a"}\n{"text": "')
        handle.write(b"x" * size)
        handle.write(b'"}\n{"text": "b"}\n')
    done = dspx("run", str(program(tmp_path)), "--batch", str(rows), BASE=lm_server.api_base)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0] == {"answer": "A"} and records[2] == {"answer": "B"}
    assert records[1]["error"]["line"] == 2 and "longer than" in records[1]["error"]["message"]


# ----- datasets ----------------------------------------------------------------------------------


def write_dataset(tmp_path: Path) -> Path:
    path = tmp_path / "dev.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                b'{"text": "t0", "answer": "T0"}',
                DEEP_OBJECT,
                b'{"text": "t2", "answer": "T2"}',
                NOT_UTF8,
                b'{"answer": "no input"}',
                b'{"text": "t5", "answer": "T5"}',
            ]
        )
        + b"\n"
    )
    return path


def test_load_rows_puts_each_bad_row_in_its_place_and_load_examples_refuses_them(tmp_path: Path) -> None:
    data = write_dataset(tmp_path)
    loaded = load_program(program(tmp_path, "data: {dev: dev.jsonl}\nmetric: exact_match\n"))
    rows = load_rows(loaded)
    assert [type(row).__name__ for row in rows] == ["Example", "BadRow", "Example", "BadRow", "BadRow", "Example"]
    bad = [row for row in rows if isinstance(row, BadRow)]
    assert [row.where for row in bad] == [f"{data}:2", f"{data}:4", f"{data}:5"]
    assert "nested too deeply" in bad[0].message and bad[1].message.startswith("not UTF-8 text")
    assert "no input 'text'" in bad[2].message
    try:
        load_examples(loaded)
    except ProgramError as error:
        assert str(error).startswith(f"{data}:2: expected a JSON object, got JSON nested too deeply")
    else:
        raise AssertionError("load_examples accepted a bad row")


def test_csv_rows_with_bad_bytes_are_bad_rows_alone(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_bytes(b'text,answer\nt0,T0\n"caf\xe9\nmore",X\nt2,T2\n')
    loaded = load_program(program(tmp_path, "data: {dev: dev.csv}\n"))
    rows = load_rows(loaded)
    assert [row.where if isinstance(row, BadRow) else row.text for row in rows] == [
        "t0",
        f"{tmp_path / 'dev.csv'}:3",
        "t2",
    ]


def test_evaluate_counts_a_bad_row_as_a_failed_example_naming_its_line(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    data = write_dataset(tmp_path)
    path = program(tmp_path, "data: {dev: dev.jsonl}\nmetric: exact_match\n")
    out = tmp_path / "run"
    done = dspx("evaluate", str(path), "--json", "--output", str(out), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["examples"], summary["finished"], summary["errors"], summary["score"]) == (6, 6, 3, 0.5)
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["error"] is not None for r in records] == [False, True, False, True, True, False]
    assert records[1]["error"].startswith(f"{data}:2: ") and records[3]["error"].startswith(f"{data}:4: not UTF-8")


def test_compile_skips_a_bad_row_with_a_warning_naming_file_and_line(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    data = write_dataset(tmp_path)
    (tmp_path / "train.jsonl").write_bytes(data.read_bytes())
    path = program(tmp_path, "data: {train: train.jsonl}\nmetric: exact_match\n")
    done = dspx(
        "compile",
        str(path),
        "--optimizer",
        "labeled_few_shot",
        "--set",
        "k=10",
        "-o",
        str(tmp_path / "state.json"),
        "--json",
        BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    train = tmp_path / "train.jsonl"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: skipping")]
    assert [line.split(": ")[1].split(" ")[-1] for line in warnings] == [f"{train}:2", f"{train}:4", f"{train}:5"]
    assert json.loads(done.stdout)["demos"] == {"echo": 3}


def test_a_json_dataset_nested_too_deeply_or_with_a_huge_integer_is_a_located_error(tmp_path: Path) -> None:
    loaded = load_program(program(tmp_path, "data: {dev: dev.json}\n"))
    for content, expected in [(b"[" + DEEP_OBJECT + b"]", "nested too deeply"), (b"[" + HUGE_INT + b"]", "digits")]:
        (tmp_path / "dev.json").write_bytes(content)
        started = time.monotonic()
        try:
            load_rows(loaded)
        except ProgramError as error:
            assert str(error).startswith(f"{tmp_path / 'dev.json'}: invalid JSON") and expected in str(error)
        else:
            raise AssertionError("accepted")
        assert time.monotonic() - started < 10


def test_a_bad_row_in_a_shared_file_fails_every_strict_split_and_moves_no_row(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"t{i}", "answer": f"T{i}"}).encode() for i in range(20)]
    path = tmp_path / "all.jsonl"
    loaded = load_program(program(tmp_path, "data: {path: all.jsonl, split: {train: 0.5, dev: 0.5, seed: 3}}\n"))
    path.write_bytes(b"\n".join(lines) + b"\n")
    clean = {split: [row.text for row in load_rows(loaded, split)] for split in ("train", "dev")}
    path.write_bytes(b"\n".join([*lines[:7], NOT_UTF8, *lines[8:]]) + b"\n")
    for split in ("train", "dev"):  # wherever the bad row falls, a strict read refuses the file
        try:
            load_examples(loaded, split)
        except ProgramError as error:
            assert str(error).startswith(f"{path}:8: not UTF-8 text")
        else:
            raise AssertionError(f"{split}: accepted a file with a bad row")
    spoiled = {split: [getattr(row, "text", "BAD") for row in load_rows(loaded, split)] for split in ("train", "dev")}
    for split in ("train", "dev"):  # the bad row takes t7's place; every other row stays in its split
        assert spoiled[split] == ["BAD" if text == "t7" else text for text in clean[split]]
