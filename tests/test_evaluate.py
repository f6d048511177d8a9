"""`dspx evaluate` end to end: scores, run folder, JUnit, exit codes, and resuming a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree

from dspx_cli.lm.cache import ResponseCache
from tests.cli_inprocess import dspx as run_dspx
from tests.cli_process import dspx as run_process
from tests.lm_server import LMServer, Reply, error_body

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-EVAL-SECRET-42"


def setup(tmp_path: Path, count: int = 10) -> Path:
    rows = [{"text": f"t{i}", "answer": f"T{i}" if i % 4 else "wrong"} for i in range(count)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: shout
            lm: {model: openai/m, api_base: "${BASE}", api_key: "${KEY:-}", num_retries: 0}
            modules:
              echo: {signature: "text -> answer"}
            data: {dev: dev.jsonl}
            metric: exact_match
            """
        )
    )
    return path


def shout(body: dict) -> str:
    text = body["messages"][-1]["content"].split("\n")[1]
    return f"[[ ## answer ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"


def dspx(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_dspx("evaluate", *args, **env)


def test_scores_and_writes_the_run_folder(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    out = tmp_path / "run"
    done = dspx(
        str(setup(tmp_path)),
        "--output",
        str(out),
        "--junit",
        str(tmp_path / "junit.xml"),
        BASE=lm_server.api_base,
        KEY=SECRET,
    )
    assert done.returncode == 0, done.stderr
    assert "score     0.7000 (70.0%)" in done.stdout
    assert "evaluate: 10/10 · score 0.700" in done.stderr  # plain progress: stderr is not a terminal
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(10))
    assert records[0] == {
        **records[0],
        "inputs": {"text": "t0"},
        "labels": {"answer": "wrong"},
        "outputs": {"answer": "T0"},
        "score": 0.0,
        "error": None,
    }
    assert records[1]["score"] == 1.0 and records[1]["usage"]["prompt_tokens"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["score"], summary["examples"], summary["errors"]) == (0.7, 10, 0)
    assert summary["usage"]["total"]["calls"] == 10
    program = json.loads((out / "program.json").read_text())
    assert program["lm"]["api_key"] == "<redacted>" and program["lm"]["api_base"] == lm_server.api_base
    for file in out.iterdir():
        assert SECRET not in file.read_text()

    suite = ElementTree.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("10", "3", "0")
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["example-0", "example-4", "example-8"]


def test_min_score_exit_codes_and_json(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    path = setup(tmp_path)
    passing = dspx(str(path), "--min-score", "0.7", "--json", "--output", str(tmp_path / "a"), BASE=lm_server.api_base)
    assert passing.returncode == 0, passing.stderr
    assert json.loads(passing.stdout)["passed"] is True
    failing = run_process(
        "evaluate", str(path), "--min-score", "0.75", "--output", str(tmp_path / "b"), BASE=lm_server.api_base
    )
    assert failing.returncode == 3
    assert "score 0.7000 is below --min-score 0.75" in failing.stderr
    assert dspx(str(path), "--min-score", "70", BASE=lm_server.api_base).returncode == 2


def test_failures_score_failure_score_and_max_errors_stops(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    lm_server.rule = lambda request, attempt: (
        Reply(status=500, json=error_body("down")) if "t3" in json.dumps(request.body) else None
    )
    path = setup(tmp_path)
    done = dspx(str(path), "--failure-score", "0.5", "--json", "--output", str(tmp_path / "a"), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["errors"] == 1 and summary["score"] == (6 + 0.5) / 10

    lm_server.rule = lambda request, attempt: Reply(status=500, json=error_body("down"))
    stopped = dspx(
        str(path),
        "--max-errors",
        "2",
        "-j",
        "1",
        "--output",
        str(tmp_path / "b"),
        "--no-cache",
        BASE=lm_server.api_base,
    )
    assert stopped.returncode == 1
    assert "stopped after 3 failed examples (max_errors is 2)" in stopped.stderr
    assert len((tmp_path / "b" / "examples.jsonl").read_text().splitlines()) == 3


def test_a_failed_example_reports_the_tokens_its_calls_used(lm_server: LMServer, tmp_path: Path) -> None:
    # Neither the chat reply nor the JSON fallback parses: the example fails after two paid calls.
    lm_server.responder = lambda body: "no fields here"
    out = tmp_path / "run"
    done = dspx(str(setup(tmp_path, count=1)), "--output", str(out), BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    [example] = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert example["error"] is not None and example["lm_calls"] == 2
    summary = json.loads((out / "summary.json").read_text())["usage"]["total"]
    assert example["usage"] == {key: summary[key] for key in ("prompt_tokens", "completion_tokens")}
    assert example["usage"]["prompt_tokens"] > 0


def test_limit_and_dataset_override(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    path = setup(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "x", "answer": "X"}\n{"text": "y", "answer": "nope"}\n')
    done = dspx(str(path), "--dataset", str(other), "--json", "--output", str(tmp_path / "a"), BASE=lm_server.api_base)
    assert json.loads(done.stdout)["score"] == 0.5
    done = dspx(str(path), "--limit", "3", "--json", "--output", str(tmp_path / "b"), BASE=lm_server.api_base)
    assert json.loads(done.stdout)["examples"] == 3


def test_killed_run_resumes_from_the_cache(lm_server: LMServer, tmp_path: Path, isolated_cache: Path) -> None:
    lm_server.responder = shout
    lm_server.default_delay = 0.15
    path = setup(tmp_path, count=40)
    env = {**{k: v for k, v in os.environ.items() if k != "DSPX_LM"}, "BASE": lm_server.api_base}
    first = subprocess.Popen(
        [sys.executable, "-m", "dspx_cli", "evaluate", str(path), "-j", "4", "--output", str(tmp_path / "a")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(lm_server.requests) < 16 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    time.sleep(0.3)  # let requests that were in flight reach the server's log
    cache = ResponseCache(isolated_cache)
    finished = cache.stats()["entries"]
    cache.close()
    assert 12 <= finished < 40
    served_before = len(lm_server.requests)

    second = dspx(str(path), "-j", "4", "--json", "--output", str(tmp_path / "b"), BASE=lm_server.api_base)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["finished"] == 40 and summary["score"] == 0.75
    assert summary["usage"]["total"]["cached_calls"] == finished
    assert len(lm_server.requests) - served_before == 40 - finished  # only unfinished examples are asked again


def test_progress_bar_only_on_a_terminal(lm_server: LMServer, tmp_path: Path) -> None:
    import pty

    lm_server.responder = shout
    path = setup(tmp_path)
    leader, follower = pty.openpty()
    env = {**{k: v for k, v in os.environ.items() if k != "DSPX_LM"}, "BASE": lm_server.api_base, "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "dspx_cli", "evaluate", str(path), "--output", str(tmp_path / "a")],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert done.returncode == 0
    text = shown.decode(errors="replace")
    assert "10/10" in text and "score 0.700" in text and "━" in text  # rich's bar
    assert "evaluate: 10/10 ·" not in text  # not the plain lines used off a terminal
    assert "━" not in dspx(str(path), "--output", str(tmp_path / "b"), BASE=lm_server.api_base).stderr


def test_progress_lines_come_on_a_clock_before_any_example_finishes(lm_server: LMServer, tmp_path: Path) -> None:
    # Each call takes 1.5 s: with a line every 0.2 s, lines must come while nothing has finished,
    # and they count calls (not examples) with tokens per second.
    lm_server.responder = shout
    lm_server.default_delay = 1.5
    done = dspx(
        str(setup(tmp_path, count=4)),
        "-j",
        "2",
        "--output",
        str(tmp_path / "a"),
        BASE=lm_server.api_base,
        DSPX_PROGRESS_INTERVAL="0.2",
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("evaluate: ")]
    before_any = [line for line in lines if line.startswith("evaluate: 0/4 · 0 errors · 0 calls · 0.0 tok/s")]
    assert len(before_any) >= 3, done.stderr
    finished = [line for line in lines if line.startswith("evaluate: 4/4 · score 0.750 · 0 errors · 4 calls · ")]
    assert finished and finished[-1].endswith("~0 s left")
    # After the first two calls (two examples of four, one call each) the ETA is from calls.
    halfway = [line for line in lines if line.startswith("evaluate: 2/4 ")]
    assert halfway and all(" · 2 calls · " in line and " s left" in line for line in halfway)
    assert "━" not in done.stderr and "\x1b[" not in done.stderr  # plain lines: no bar, no colour


def test_default_concurrency_fits_the_model(lm_server: LMServer, tmp_path: Path) -> None:
    from dspx_cli.program.batch import default_concurrency
    from dspx_cli.program.loader import load_program

    lm_server.responder = shout
    path = setup(tmp_path, count=2)
    done = dspx(str(path), "--json", "--output", str(tmp_path / "a"), BASE=lm_server.api_base)
    assert json.loads(done.stdout)["settings"]["concurrency"] == 16  # a remote endpoint
    local = tmp_path / "local.yaml"
    local.write_text(path.read_text().replace('openai/m, api_base: "${BASE}"', "local/smollm2"))
    assert default_concurrency(load_program(local)) == 2
    assert "default: 2 when a module runs a local model, else 16" in " ".join(
        run_dspx("evaluate", "--help").stdout.split()
    )


def test_the_usage_line_is_one_line_off_a_terminal(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    path = setup(tmp_path, count=2)
    long_name = "openai/" + "a-model-with-a-rather-long-name-" * 3
    path.write_text(path.read_text().replace("openai/m", long_name))
    done = dspx(str(path), "--output", str(tmp_path / "a"), BASE=lm_server.api_base)
    usage = [line for line in done.stderr.splitlines() if line.startswith(long_name)]
    assert len(usage) == 1 and len(usage[0]) > 100
    assert usage[0].endswith(" s") and " · 2 calls · " in usage[0]


def test_compile_shows_progress_while_bootstrapping(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    lm_server.default_delay = 0.6
    path = setup(tmp_path, count=3)
    path.write_text(
        path.read_text().replace("data: {dev: dev.jsonl}", "data: {train: dev.jsonl}")
        + "optimizer: {type: bootstrap_few_shot, max_bootstrapped_demos: 2}\n"
    )
    done = run_dspx(
        "compile",
        str(path),
        "-j",
        "1",
        "-o",
        str(tmp_path / "state.json"),
        BASE=lm_server.api_base,
        DSPX_PROGRESS_INTERVAL="0.2",
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("compile (bootstrap_few_shot): ")]
    assert any(" 0 calls · 0.0 tok/s · " in line for line in lines), done.stderr
    assert any(" 1 call · " in line for line in lines)
