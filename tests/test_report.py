"""Evaluate's calls.jsonl and `dspx report` without a browser: the calls kept per example, secrets
kept out, exit codes, hostile run folders, and the page's escaping (tests/test_report_browser.py
opens the page in chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.report_runs import SECRET, XSS, evaluate_run, refuse_boom, shout, texts, write_program

pytest.importorskip("jinja2", reason="dspx report needs the report extra: pip install -e '.[report]'")


@pytest.fixture
def evaluated(lm_server: LMServer, tmp_path: Path) -> tuple[Path, LMServer]:
    lm_server.responder = shout
    lm_server.rule = refuse_boom
    program = write_program(tmp_path, 8)
    evaluate_run(program, tmp_path / "run", lm_server.api_base, "-j", "4")
    return tmp_path / "run", lm_server


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_calls_jsonl_holds_each_examples_messages_and_raw_reply(evaluated: tuple[Path, LMServer]) -> None:
    run, server = evaluated
    examples = {r["index"]: r for r in lines(run / "examples.jsonl")}
    calls = {r["index"]: r["calls"] for r in lines(run / "calls.jsonl")}
    assert sorted(calls) == sorted(examples) == list(range(8))
    sent = {r.body["messages"][-1]["content"].split("\n")[1]: r.body["messages"] for r in server.requests}
    for index, text in enumerate(texts(8)):
        [call] = calls[index]
        assert call["messages"] == sent[text]  # exactly what reached the server, this example's own
        assert (call["predictor"], call["phase"], call["model"], call.get("cached")) == (
            "echo",
            "program",
            "openai/m",
            None if text == "boom" else False,
        )
        assert call["latency_s"] > 0 and "lm" not in call
        assert examples[index]["lm_calls"] == 1 and examples[index]["cached"] is False
        if text == "boom":
            assert "boom is refused" in call["error"] and "outputs" not in call
        else:
            assert call["outputs"] == [shout({"messages": sent[text]})]
            assert call["usage"]["prompt_tokens"] > 0


def test_a_rerun_from_the_cache_is_marked_cached(evaluated: tuple[Path, LMServer], tmp_path: Path) -> None:
    _, server = evaluated
    evaluate_run(tmp_path / "p.yaml", tmp_path / "again", server.api_base)
    examples = {r["index"]: r for r in lines(tmp_path / "again" / "examples.jsonl")}
    calls = {r["index"]: r["calls"] for r in lines(tmp_path / "again" / "calls.jsonl")}
    boom = texts(8).index("boom")
    assert all(examples[i]["cached"] is True for i in examples if i != boom)
    assert examples[boom]["cached"] is False  # a refused call is not cached: asked again
    assert all(c["cached"] for i in calls if i != boom for c in calls[i])


def test_concurrent_examples_keep_their_own_calls(lm_server: LMServer, tmp_path: Path) -> None:
    """16 examples in flight, each reply delayed: no example's calls land in another's list."""
    lm_server.responder = shout
    lm_server.default_delay = 0.05
    program = write_program(tmp_path, 24)
    evaluate_run(program, tmp_path / "run", lm_server.api_base, "-j", "16", "--max-errors", "5")
    assert lm_server.max_in_flight > 4
    for record in lines(tmp_path / "run" / "calls.jsonl"):
        [call] = record["calls"]
        assert call["messages"][-1]["content"].split("\n")[1] == texts(24)[record["index"]]


def test_no_api_key_reaches_the_run_folder_or_the_report(evaluated: tuple[Path, LMServer]) -> None:
    """The key is in the environment (api_key) and in the program file (a `token` setting)."""
    run, server = evaluated
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was really used
    done = dspx("report", str(run))
    assert done.returncode == 0, done.stderr
    files = [p for p in run.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"calls.jsonl", "examples.jsonl", "summary.json", "program.json", "report.html"}
    for path in files:
        assert SECRET not in path.read_text(), path.name


def test_report_writes_one_page_beside_the_run(evaluated: tuple[Path, LMServer]) -> None:
    run, _ = evaluated
    done = dspx("report", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{run / 'report.html'} (1 run, 8 examples, ")
    html = (run / "report.html").read_text()
    # Self-contained: no reference to anything outside the file.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html
    data = json.loads(re.search(r'<script type="application/json" id="dspx-data">(.*?)</script>', html, re.S)[1])
    [page] = data["runs"]
    assert [e["index"] for e in page["examples"]] == list(range(8))
    # The system prompt, the same for every call, is written once.
    system = {call["messages"][0][1] for calls in page["calls"].values() for call in calls}
    assert len(system) == 1


def test_hostile_outputs_are_escaped_in_the_page(evaluated: tuple[Path, LMServer]) -> None:
    run, _ = evaluated
    assert XSS.split(" onerror")[0] in (run / "examples.jsonl").read_text()
    dspx("report", str(run))
    html = (run / "report.html").read_text()
    assert "alert(1)" in html  # the text is there, escaped:
    assert "</script><script>alert" not in html and "<img src=x" not in html
    assert html.count("</script>") == html.count("<script")  # every script element is the page's own


def test_report_of_several_runs_and_default_output(evaluated: tuple[Path, LMServer], tmp_path: Path) -> None:
    run, server = evaluated
    evaluate_run(tmp_path / "p.yaml", tmp_path / "again", server.api_base)
    done = dspx("report", str(run), str(tmp_path / "again"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").exists() and "2 runs, 16 examples" in done.stdout


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_a_missing_or_invalid_run_dir_is_one_line_exit_2(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "x"
    if kind == "file":
        target.write_text("{}")
    elif kind == "empty":
        target.mkdir()
    done = dspx("report", str(target))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and str(target) in done.stderr, done.stderr


def test_malformed_lines_are_skipped_with_file_and_line(evaluated: tuple[Path, LMServer]) -> None:
    run, _ = evaluated
    examples = run / "examples.jsonl"
    rows = examples.read_text().splitlines()
    examples.write_text("\n".join([rows[0], "{not json", "[1, 2]", *rows[1:]]) + "\n")
    with (run / "calls.jsonl").open("a") as handle:
        handle.write('{"index": "x"}\n')
    done = dspx("report", str(run))
    assert done.returncode == 0, done.stderr
    assert f"{examples}:2: not a JSON object; skipped" in done.stderr
    assert f"{examples}:3: not a JSON object; skipped" in done.stderr
    assert f"{run / 'calls.jsonl'}:9: expected" in done.stderr
    assert "8 examples" in done.stdout


def test_a_huge_line_is_skipped_without_being_held(
    evaluated: tuple[Path, LMServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dspx_cli.workflows import report_data

    run, _ = evaluated
    monkeypatch.setattr(report_data, "MAX_LINE_BYTES", 1000)
    with (run / "examples.jsonl").open("a") as handle:
        handle.write('{"index": 99, "inputs": {"text": "' + "x" * 5000 + '"}}\n')
    done = dspx("report", str(run))
    assert done.returncode == 0, done.stderr
    assert f"{run / 'examples.jsonl'}:9: a line over 0 MB; skipped" in done.stderr


def test_too_many_examples_is_a_clear_error_and_limit_reads_the_first(
    evaluated: tuple[Path, LMServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dspx_cli.workflows import report_data

    run, _ = evaluated
    monkeypatch.setattr(report_data, "MAX_KEPT_BYTES", 1000)
    done = dspx("report", str(run))
    assert done.returncode == 2 and "MB of examples; report the first ones with --limit N" in done.stderr
    limited = dspx("report", str(run), "--limit", "3")
    assert limited.returncode == 0, limited.stderr
    assert "1 run, 3 examples" in limited.stdout
    assert "calls; the later examples' calls are left out" in limited.stderr


def test_compile_and_finetune_folders(lm_server: LMServer, tmp_path: Path) -> None:
    from tests.report_runs import compile_run, finetune_run, mipro_run

    pytest.importorskip("optuna")
    lm_server.responder = shout
    program = write_program(tmp_path, 6)
    compiled = compile_run(program, lm_server.api_base)
    mipro = mipro_run(tmp_path / "mipro")
    tuned = finetune_run(tmp_path / "tuned")
    done = dspx("report", str(compiled), str(mipro), str(tuned), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "r.html").read_text()
    data = json.loads(re.search(r'id="dspx-data">(.*?)</script>', html, re.S)[1])
    bootstrap_page, mipro_page, finetune_page = data["runs"]
    assert bootstrap_page["kind"] == "compile" and bootstrap_page["trials"] == []
    assert ["optimizer", "bootstrap_few_shot"] in bootstrap_page["facts"]
    trials = [json.loads(line) for line in (mipro / "trials.jsonl").read_text().splitlines()]
    assert [t["score"] for t in mipro_page["trials"]] == [t["score"] for t in trials] and len(trials) > 3
    assert ["optimizer", "mipro_v2"] in mipro_page["facts"]  # from state.json: -o wrote no summary.json
    assert finetune_page["kind"] == "finetune" and finetune_page["loss"][-1] == 0.8
    assert ["dev score", "0.2500 → 0.5000"] in finetune_page["facts"]


def test_help_does_not_import_jinja2() -> None:
    import subprocess
    import sys

    code = "import sys\nfrom dspx_cli.cli.app import app\ntry: app(args=['--help'])\nexcept SystemExit: pass\nprint('jinja2' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("False")


def test_an_lm_judges_calls_are_kept_as_the_metric_phase(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict) -> str:
        if "`correct` (bool)" in body["messages"][0]["content"]:
            return "[[ ## correct ## ]]\nTrue\n\n[[ ## completed ## ]]"
        return shout(body)

    lm_server.responder = respond
    program = write_program(tmp_path, 4)
    text = program.read_text().replace(
        "metric: exact_match", 'metric:\n  judge: {signature: "text, answer, gold_answer -> correct: bool"}'
    )
    program.write_text(text)
    evaluate_run(program, tmp_path / "run", lm_server.api_base, "--limit", "2")
    for record in lines(tmp_path / "run" / "calls.jsonl"):
        program_call, judge_call = record["calls"]
        assert (program_call["predictor"], program_call["phase"]) == ("echo", "program")
        assert (judge_call["predictor"], judge_call["phase"]) == (None, "metric")
        assert judge_call["outputs"] == ["[[ ## correct ## ]]\nTrue\n\n[[ ## completed ## ]]"]
    assert all(r["lm_calls"] == 2 and r["score"] == 1.0 for r in lines(tmp_path / "run" / "examples.jsonl"))


def test_a_run_folder_from_before_calls_were_kept(evaluated: tuple[Path, LMServer]) -> None:
    run, _ = evaluated
    (run / "calls.jsonl").unlink()
    examples = run / "examples.jsonl"
    old = [{k: v for k, v in r.items() if k not in ("lm_calls", "cached")} for r in lines(examples)]
    examples.write_text("".join(json.dumps(r) + "\n" for r in old))
    done = dspx("report", str(run))
    assert done.returncode == 0, done.stderr
    html = (run / "report.html").read_text()
    [page] = json.loads(re.search(r'id="dspx-data">(.*?)</script>', html, re.S)[1])["runs"]
    assert page["calls"] == {} and len(page["examples"]) == 8
    assert page["notes"] == ["no calls.jsonl: this run folder does not keep the messages sent"]
    assert {e["cached"] for e in page["examples"]} == {None}


def test_under_limit_only_the_shown_examples_calls_count_against_the_budget(
    evaluated: tuple[Path, LMServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The calls of examples --limit leaves out are not kept, so they must not use up the bytes
    allowed for the calls that are: here the one shown example's calls come last in calls.jsonl."""
    from dspx_cli.workflows import report_data

    run, _ = evaluated
    [first] = lines(run / "examples.jsonl")[:1]
    calls = (run / "calls.jsonl").read_text().splitlines(keepends=True)
    mine = [line for line in calls if json.loads(line)["index"] == first["index"]]
    others = [line for line in calls if json.loads(line)["index"] != first["index"]]
    hostile = '{"index": [0], "calls": []}\n'  # an unhashable index is a skipped line, not a crash
    (run / "calls.jsonl").write_text("".join([*others, hostile, *mine]))
    budget = max(len(mine[0].encode()), len(json.dumps(first)) + 1) + 10  # room for one line of each, not two
    monkeypatch.setattr(report_data, "MAX_KEPT_BYTES", budget)
    done = dspx("report", str(run), "--limit", "1", "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    assert "left out" not in done.stderr and f"{run / 'calls.jsonl'}:{len(others) + 1}: expected" in done.stderr
    [page] = json.loads(re.search(r'id="dspx-data">(.*?)</script>', (tmp_path / "r.html").read_text(), re.S)[1])["runs"]
    assert [row["index"] for row in page["examples"]] == [first["index"]]
    assert list(page["calls"]) == [str(first["index"])] and len(page["calls"][str(first["index"])]) == 1
    assert page["notes"] == []
