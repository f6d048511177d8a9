"""`dspx compare BASE_RUN NEW_RUN` and `dspx evaluate --baseline`: two real evaluate runs against the
loopback server, whose answers change for some examples between the runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

# Index: text, label. Row 10 repeats row 0's inputs with another label: one of the two always fails.
ROWS = [(f"t{i}", f"T{i}") for i in range(10)] + [("t0", "zero")]
# What the server gets wrong in each run (the text asked -> the answer given), and whom it fails.
BASE_WRONG = {"t1": "X", "t2": "X"}
BASE_DOWN = {"t3"}
NEW_WRONG = {"t2": "X", "t4": "X", "t5": "X", "t0": "zero"}
NEW_DOWN = {"t6"}
# So: t0 (index 0) passes then fails while index 10 fails then passes (occurrence order matters);
# t4, t5 regress; t6 regresses by an error; t1 and t3 (an error before) are fixed; t2 fails twice.
REGRESSIONS = [0, 4, 5, 6]
FIXES = [1, 3, 10]


def write_program(directory: Path, rows: list[tuple[str, str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dev.jsonl").write_text("".join(json.dumps({"text": t, "answer": a}) + "\n" for t, a in rows))
    path = directory / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: shout
            lm: {model: openai/m, api_base: "${BASE}", api_key: "sk-COMPARE-SECRET", num_retries: 0}
            modules:
              echo: {signature: "text -> answer"}
            data: {dev: dev.jsonl}
            metric: exact_match
            """
        )
    )
    return path


def script(server: LMServer, wrong: dict[str, str], down: set[str]) -> None:
    def asked(body: dict) -> str:
        return str(body["messages"][-1]["content"].split("\n")[1])

    def respond(body: dict) -> str:
        text = asked(body)
        return f"[[ ## answer ## ]]\n{wrong.get(text, text.upper())}\n\n[[ ## completed ## ]]"

    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        return Reply(status=500, json=error_body("down")) if asked(request.body) in down else None

    server.responder = respond
    server.rule = rule


def evaluate(server: LMServer, program: Path, out: Path, *args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return dspx(
        "evaluate",
        str(program),
        "--output",
        str(out),
        "--no-cache",
        *args,
        BASE=server.api_base,
        DSPX_CACHE_DIR=str(cache),
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LMServer]:
    with LMServer() as lm:
        yield lm


@pytest.fixture(scope="module")
def runs(server: LMServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The base run and the new run of the same program on the same 11 examples."""
    root = tmp_path_factory.mktemp("runs")
    program = write_program(root / "program", ROWS)
    script(server, BASE_WRONG, BASE_DOWN)
    base = evaluate(server, program, root / "base", cache=root / "cache")
    assert base.returncode == 0, base.stderr
    script(server, NEW_WRONG, NEW_DOWN)
    new = evaluate(server, program, root / "new", cache=root / "cache")
    assert new.returncode == 0, new.stderr
    return root / "base", root / "new"


def compare(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return dspx("compare", *map(str, args))


def document(*args: str | Path) -> dict:
    done = compare(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def indexes(changes: list[dict]) -> list[tuple[int, int]]:
    return [(change["base"]["index"], change["new"]["index"]) for change in changes]


def test_lists_the_regressions_and_fixes_of_two_runs(runs: tuple[Path, Path]) -> None:
    base, new = runs
    doc = document(base, new)
    assert indexes(doc["regressions"]) == [(i, i) for i in REGRESSIONS]
    assert indexes(doc["fixes"]) == [(i, i) for i in FIXES]
    assert (doc["matched"], doc["only_in_base"], doc["only_in_new"], doc["notes"]) == (11, 0, 0, [])
    assert doc["dspx_compare"] == 1 and doc["pass_score"] == 1.0 and doc["exceeded"] is False
    assert doc["base"]["complete"] and doc["base"]["program"] == "shout"
    assert doc["base"]["program_sha256"] == doc["new"]["program_sha256"]
    assert doc["base"]["dataset_sha256"] == doc["new"]["dataset_sha256"]
    six = doc["regressions"][3]
    assert six["inputs"] == {"text": "t6"} and six["labels"] == {"answer": "T6"}
    assert six["base"] == {"index": 6, "outputs": {"answer": "T6"}, "score": 1.0, "error": None}
    assert six["new"]["outputs"] is None and six["new"]["score"] == 0.0 and "500" in six["new"]["error"]
    assert doc["fixes"][1]["base"]["error"] is not None and doc["fixes"][1]["new"]["outputs"] == {"answer": "T3"}
    # base: 1,2 wrong, 3 an error, 10 wrong: 7 of 11 pass; new: 0,2,4,5 wrong, 6 an error: 6 pass.
    shared = doc["shared"]
    assert shared["base"] == {"score": round(7 / 11, 6), "passed": 7, "errors": 1}
    assert shared["new"] == {"score": round(6 / 11, 6), "passed": 6, "errors": 1}
    assert shared["delta"] == {"score": round(6 / 11 - 7 / 11, 6), "passed": -1, "errors": 0}
    totals = doc["totals"]
    assert totals["base"]["calls"] == 10 and totals["new"]["calls"] == 10  # the errors got no reply
    assert totals["base"]["tokens"] > 0 and totals["delta"]["calls"] == 0
    assert totals["delta"]["seconds"] == pytest.approx(totals["new"]["seconds"] - totals["base"]["seconds"])


def test_prints_tables_of_both_lists_and_the_deltas(runs: tuple[Path, Path]) -> None:
    base, new = runs
    done = compare(base, new)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "11 matched examples; pass: no error and score ≥ 1" in out
    assert "Regressions (pass → fail): 4" in out and "Fixes (fail → pass): 3" in out
    regressions = out.split("Regressions")[1].split("Fixes")[0]
    assert '{"text": "t4"}' in regressions and "error: " in regressions and '{"text": "t1"}' not in regressions
    assert "score (matched)" in out and "-0.0909" in out
    assert "\x1b[" not in out  # NO_COLOR (set by the test harness)


def test_max_regressions_exits_4_when_more_examples_regressed(runs: tuple[Path, Path]) -> None:
    base, new = runs
    assert compare(base, new, "--max-regressions", "4").returncode == 0
    over = compare(base, new, "--max-regressions", "3", "--json")
    assert over.returncode == 4
    assert json.loads(over.stdout)["exceeded"] is True  # the document is printed all the same
    assert over.stderr.strip() == "error: 4 examples regressed (pass to fail), more than --max-regressions 3"
    # The other way round, the fixes are the regressions.
    assert compare(new, base, "--max-regressions", "2").returncode == 4
    assert indexes(document(new, base)["regressions"]) == [(i, i) for i in FIXES]


def test_pass_score_decides_what_passes(runs: tuple[Path, Path]) -> None:
    base, new = runs
    doc = document(base, new, "--pass-score", "0")  # every example without an error passes
    assert indexes(doc["regressions"]) == [(6, 6)] and indexes(doc["fixes"]) == [(3, 3)]


def test_markdown_for_a_job_summary(runs: tuple[Path, Path]) -> None:
    base, new = runs
    done = compare(base, new, "--markdown")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "### dspx compare: 4 regressions, 3 fixes"
    assert "| score (matched) | 0.6364 | 0.5455 | -0.0909 |" in lines
    assert "| passed (matched) | 7 | 6 | -1 |" in lines
    start = lines.index("#### Regressions (pass → fail): 4")
    assert lines[start + 2 : start + 4] == [
        "| # | inputs | base output | new output | base | new |",
        "|---:|---|---|---|---:|---:|",
    ]
    rows = lines[start + 4 : start + 8]
    assert rows[1] == '| 4 | {"text": "t4"} | T4 | X | 1 | 0 |'
    assert rows[3].startswith('| 6 | {"text": "t6"} | T6 | error: ') and rows[3].endswith(" | 1 | 0 (error) |")
    fixes = lines.index("#### Fixes (fail → pass): 3")
    assert [row.split(" | ")[0] for row in lines[fixes + 4 : fixes + 7]] == ["| 1", "| 3", "| 10"]


def test_runs_on_different_datasets_compare_on_the_examples_they_share(
    server: LMServer, runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, _ = runs
    # Another copy of the program on t4..t9 (t4, t5 now wrong) and two examples of its own.
    program = write_program(tmp_path / "other", [*ROWS[4:10], ("u1", "U1"), ("u2", "U2")])
    program.write_text(program.read_text() + "# another version\n")
    script(server, NEW_WRONG, set())
    done = evaluate(server, program, tmp_path / "run", "--limit", "7", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    doc = document(base, tmp_path / "run")
    assert (doc["matched"], doc["only_in_base"], doc["only_in_new"]) == (6, 5, 1)
    assert doc["base"]["program_sha256"] != doc["new"]["program_sha256"]
    assert indexes(doc["regressions"]) == [(4, 0), (5, 1)] and doc["fixes"] == []
    assert doc["notes"] == [
        f"different program files: base shout ({doc['base']['program_sha256']}), new shout ({doc['new']['program_sha256']})",
        "different examples: the datasets the runs read differ",
        "compared on the 6 examples both runs have: 5 only in base, 1 only in new",
    ]
    text = compare(base, tmp_path / "run").stdout
    assert "note: compared on the 6 examples both runs have: 5 only in base, 1 only in new" in text
    assert "4→0" in text  # an example that moved in the dataset shows both indexes


def test_evaluate_with_a_baseline_compares_at_the_end(
    server: LMServer, runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, _ = runs
    program = write_program(tmp_path / "program", ROWS)
    script(server, NEW_WRONG, NEW_DOWN)
    plain = evaluate(server, program, tmp_path / "a", "--baseline", str(base), cache=tmp_path / "cache")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("program ") and "Regressions (pass → fail): 4" in plain.stdout

    gated = evaluate(
        server,
        program,
        tmp_path / "b",
        "--baseline",
        str(base),
        "--max-regressions",
        "3",
        "--json",
        cache=tmp_path / "c",
    )
    assert gated.returncode == 4
    summary = json.loads(gated.stdout)
    assert summary["score"] == round(6 / 11, 6) or summary["score"] == pytest.approx(6 / 11)
    assert indexes(summary["comparison"]["regressions"]) == [(i, i) for i in REGRESSIONS]
    assert "more than --max-regressions 3" in gated.stderr

    # evaluate's own verdict comes first: below --min-score is exit 3, even with too many regressions.
    below = evaluate(
        server,
        program,
        tmp_path / "c",
        "--baseline",
        str(base),
        "--max-regressions",
        "0",
        "--min-score",
        "0.9",
        cache=tmp_path / "c",
    )
    assert below.returncode == 3 and "Regressions (pass → fail): 4" in below.stdout

    # A run stopped by --max-errors is compared on what it finished, and exits 1 as it would alone.
    script(server, {}, {text for text, _ in ROWS})
    aborted = evaluate(
        server,
        program,
        tmp_path / "e",
        "--baseline",
        str(base),
        "--max-errors",
        "1",
        "--max-regressions",
        "0",
        "--json",
        cache=tmp_path / "c",
    )
    assert aborted.returncode == 1 and "partial results in" in aborted.stderr
    comparison = json.loads(aborted.stdout)["comparison"]
    assert comparison["new"]["complete"] is False and comparison["exceeded"] is True
    # Every example was in flight when the run stopped (-j 16), so all finished, and failed: the
    # base run's 7 passes regressed.
    assert (comparison["matched"], len(comparison["regressions"])) == (11, 7)
    assert any(note.startswith("new run did not finish (") for note in comparison["notes"])

    # A bad baseline stops before any LM call; so does --max-regressions without one.
    before = len(server.requests)
    missing = evaluate(server, program, tmp_path / "d", "--baseline", str(tmp_path / "nowhere"), cache=tmp_path / "c")
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such run folder"
    alone = evaluate(server, program, tmp_path / "d", "--max-regressions", "1", cache=tmp_path / "c")
    assert alone.returncode == 2 and "--max-regressions needs --baseline" in alone.stderr
    same = evaluate(server, program, tmp_path / "a", "--baseline", str(tmp_path / "a"), cache=tmp_path / "c")
    assert same.returncode == 2 and "is the --output folder" in same.stderr
    assert (tmp_path / "a" / "summary.json").is_file()  # not written over
    assert len(server.requests) == before


def test_malformed_run_folders_are_one_line_errors(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, new = runs
    broken = tmp_path / "broken"
    shutil.copytree(new, broken)

    def error(*args: str | Path) -> str:
        done = compare(*args)
        assert done.returncode == 2, done.stdout
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        return done.stderr.strip()

    assert error(base, tmp_path / "nowhere") == f"error: {tmp_path / 'nowhere'}: no such run folder"
    (tmp_path / "empty").mkdir()
    assert error(base, tmp_path / "empty") == (
        f"error: {tmp_path / 'empty' / 'examples.jsonl'}: not found; expected the folder of a `dspx evaluate` run"
    )
    (tmp_path / "compiled").mkdir()
    (tmp_path / "compiled" / "compile.json").write_text("{}")
    assert "a compile run folder keeps no per-example results" in error(base, tmp_path / "compiled")
    assert error(base, base) == f"error: {base} and {base} are the same run folder"
    (broken / "summary.json").write_text('{"score": 0.5,\n  oops}')
    assert (
        error(base, broken)
        == f"error: {broken / 'summary.json'}:2:3: not valid JSON (Expecting property name enclosed in double quotes)"
    )
    (broken / "summary.json").write_text("[1]")
    assert "expected a JSON object" in error(base, broken)


def test_bad_lines_are_skipped_and_an_interrupted_run_compares_what_it_has(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, new = runs
    partial = tmp_path / "partial"
    shutil.copytree(new, partial)
    (partial / "summary.json").unlink()  # killed before it could write one
    lines = (partial / "examples.jsonl").read_text().splitlines()
    lines[1] = '{"index": 1, "inputs": "t1"}'  # not a record
    lines[7] = lines[7][:20]  # half a line
    (partial / "examples.jsonl").write_text("\n".join(lines[:9]) + "\n")  # 9 of 11 examples written
    done = compare(base, partial, "--json")
    assert done.returncode == 0, done.stderr
    file = partial / "examples.jsonl"
    assert done.stderr.splitlines() == [
        f"warning: {file}:2: skipped: expected an object 'inputs'",
        f"warning: {file}:8: skipped: not valid JSON (column 14: Unterminated string starting at)",
    ]
    doc = json.loads(done.stdout)
    assert (doc["matched"], doc["only_in_base"], doc["only_in_new"]) == (7, 4, 0)
    assert indexes(doc["regressions"]) == [(0, 0), (4, 4), (5, 5), (6, 6)] and indexes(doc["fixes"]) == [(3, 3)]
    assert doc["new"]["complete"] is False and doc["new"]["aborted"] == "no summary.json"
    assert doc["totals"]["new"]["calls"] is None and doc["totals"]["delta"]["calls"] is None
    assert "new run has no summary.json (still running, or killed): compared the 7 examples it finished" in doc["notes"]
    assert "new run: 2 lines of examples.jsonl skipped (not records)" in doc["notes"]


def test_an_aborted_run_is_compared_and_said_to_be(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, new = runs
    stopped = tmp_path / "stopped"
    shutil.copytree(base, stopped)
    summary = json.loads((stopped / "summary.json").read_text())
    (stopped / "summary.json").write_text(json.dumps({**summary, "aborted": "interrupted"}))
    lines = (stopped / "examples.jsonl").read_text().splitlines(keepends=True)
    (stopped / "examples.jsonl").write_text("".join(reversed(lines[:5])))  # finishing order, not index order
    doc = document(stopped, new)
    assert "base run did not finish (interrupted): 5 of 11 examples" in doc["notes"]
    assert (doc["matched"], doc["only_in_new"]) == (5, 6)
    assert indexes(doc["regressions"]) == [(0, 0), (4, 4)] and indexes(doc["fixes"]) == [(1, 1), (3, 3)]
    assert doc["base"]["complete"] is False and doc["base"]["aborted"] == "interrupted"
    both = compare(stopped, new, "--json", "--markdown")
    assert both.returncode == 2 and both.stderr.strip() == "error: --json and --markdown: choose one"


def test_inputs_that_look_like_markup_are_shown_as_they_are(runs: tuple[Path, Path], tmp_path: Path) -> None:
    copies = []
    for run in runs:
        copy = tmp_path / run.name
        shutil.copytree(run, copy)
        file = copy / "examples.jsonl"
        file.write_text(file.read_text().replace('"t4"', '"[/b][red]t4 | <x>"'))
        copies.append(copy)
    text = compare(*copies)
    assert text.returncode == 0, text.stderr
    assert "[/b][red]t4 | <x>" in text.stdout
    markdown = compare(*copies, "--markdown").stdout
    assert '| 4 | {"text": "[/b][red]t4 \\| &lt;x&gt;"} | T4 | X | 1 | 0 |' in markdown.splitlines()
