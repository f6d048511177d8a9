"""One JSON-lines reader (core/jsonl.py) behind batch input, datasets and corpora: the same bad
line gets the same problem text from all three, with its line number, and spoils only itself."""

from __future__ import annotations

import asyncio
import io
import textwrap
from pathlib import Path

import pytest

from dspx_cli.core.json_values import json_kind, jsonable
from dspx_cli.core.jsonl import BadLine, parse_object, read_objects
from dspx_cli.evaluate.datasets import BadRow, load_rows
from dspx_cli.program.batch import RowResult, run_batch
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner
from dspx_cli.retrieval.base import CorpusError
from dspx_cli.retrieval.corpus import load_corpus

BAD_LINES = {
    b'{"text": "caf\xe9"}': "not UTF-8 text (invalid continuation byte at column 14)",
    b'{"text": ': "expected a JSON object, got invalid JSON (Expecting value at column 10)",
    b"[" * 5000 + b"]" * 5000: "expected a JSON object, got JSON nested too deeply",
    b'{"n": '
    + b"7" * 5000
    + b"}": "expected a JSON object, got invalid JSON (Exceeds the limit (4300 digits) for integer string conversion",
    b'["text"]': "expected a JSON object, got a list",
    b"3": "expected a JSON object, got a number",
}


def test_the_reader_names_each_problem_and_keeps_line_numbers() -> None:
    good = b'\xef\xbb\xbf{"text": "first"}'  # a byte-order mark on line 1 is not an error
    data = b"\n".join([good, b"", *BAD_LINES, b'{"text": "last \xe2\x80\xa8 line"}'])
    read = list(read_objects(data))
    assert read[0] == (1, {"text": "first"}) and [number for number, _ in read] == [1, 3, 4, 5, 6, 7, 8, 9]
    problems = [value.problem for _, value in read[1:-1] if isinstance(value, BadLine)]
    assert all(p.startswith(e) for p, e in zip(problems, BAD_LINES.values(), strict=True)), problems
    assert read[-1] == (9, {"text": "last \u2028 line"})  # U+2028 inside a string is not a line break


@pytest.mark.parametrize(("line", "problem"), BAD_LINES.items(), ids=range(len(BAD_LINES)))
def test_batch_datasets_and_corpora_report_a_bad_line_alike(tmp_path: Path, line: bytes, problem: str) -> None:
    content = b'{"text": "ok"}\n' + line + b"\n"
    program_path = tmp_path / "p.yaml"
    program_path.write_text(
        textwrap.dedent("""\
        lm: {model: openai/m, api_base: "http://127.0.0.1:9", num_retries: 0}
        modules:
          echo: {signature: "text -> answer"}
        data: {dev: rows.jsonl}
        """)
    )
    (tmp_path / "rows.jsonl").write_bytes(content)
    program = load_program(program_path, env={})

    rows = load_rows(program, "dev")
    assert isinstance(rows[1], BadRow) and rows[1].where.endswith(":2") and rows[1].message.startswith(problem)

    (tmp_path / "corpus.jsonl").write_bytes(content)
    with pytest.raises(CorpusError) as raised:
        load_corpus(tmp_path / "corpus.jsonl")
    assert str(raised.value) == f"{tmp_path / 'corpus.jsonl'}:2: {raised.value.detail}"
    assert raised.value.detail.startswith(problem)

    # Only the bad line is run: it fails before any LM call, so no server is needed.
    results: list[RowResult] = []
    asyncio.run(run_batch(ProgramRunner(program, None), io.BytesIO(line + b"\n"), results.append))
    assert results[0].line == 1 and results[0].error is not None and results[0].error.startswith(problem)


def test_one_json_value_helper() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert jsonable({1: (1, 2), "o": Odd(), "s": {3}}) == {"1": [1, 2], "o": "odd", "s": [3]}
    assert jsonable("text") == "text"
    assert [json_kind(v) for v in (None, True, 1.5, "s", [1], {})] == [
        "null",
        "a boolean",
        "a number",
        "a string",
        "a list",
        "an object",
    ]
    with pytest.raises(BadLine, match="got a string"):
        parse_object('"just text"')
