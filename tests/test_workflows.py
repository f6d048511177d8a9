"""The application layer called directly, as the CLI calls it: no process, no rendering."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from xml.etree import ElementTree

import pytest

from dspx_cli.errors import ScoreBelowMinimum
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.workflows import evaluate as evaluate_workflow
from dspx_cli.workflows import run as run_workflow
from dspx_cli.workflows.context import CacheOptions
from dspx_cli.workflows.evaluate import EvaluateOptions
from dspx_cli.workflows.hooks import Hooks
from tests.lm_server import LMServer
from tests.test_evaluate import setup, shout

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "dspx_cli" / "workflows"


@pytest.fixture
def base(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> LMServer:
    lm_server.responder = shout
    monkeypatch.setenv("BASE", lm_server.api_base)
    monkeypatch.delenv("DSPX_LM", raising=False)
    return lm_server


def test_run_one_returns_the_outputs_and_writes_the_usage_file(base: LMServer, tmp_path: Path) -> None:
    usage = tmp_path / "usage.json"
    loaded = run_workflow.load(setup(tmp_path), None, usage_file=usage)
    outcome = run_workflow.run_one(loaded, ["text=hello"])
    assert outcome.outputs == {"answer": "HELLO"}
    assert json.loads(usage.read_text())["total"]["calls"] == 1


def test_run_rows_hands_each_record_over_in_order(base: LMServer, tmp_path: Path) -> None:
    import io

    records: list[dict] = []
    rows = io.BytesIO(b'{"text": "a"}\nnot json\n{"text": "b"}\n')
    outcome = run_workflow.run_rows(run_workflow.load(setup(tmp_path), None, batch=True), rows, records.append)
    assert (outcome.rows, outcome.failed) == (3, 1)
    assert records[0] == {"answer": "A"} and records[2] == {"answer": "B"} and records[1]["error"]["line"] == 2
    with pytest.raises(run_workflow.RowsFailedError, match="1 of 3 rows failed"):
        outcome.check()


def test_evaluate_returns_the_summary_and_its_verdict(base: LMServer, tmp_path: Path) -> None:
    options = EvaluateOptions(output=tmp_path / "run", min_score=0.75, junit=tmp_path / "junit.xml")
    job = evaluate_workflow.prepare(setup(tmp_path), None, options, CacheOptions(no_cache=True))
    result = evaluate_workflow.execute(job)
    assert result.summary["score"] == 0.7 and result.summary["passed"] is False
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["finished"] == 10
    assert ElementTree.parse(tmp_path / "junit.xml").getroot()[0].get("tests") == "10"
    with pytest.raises(ScoreBelowMinimum):
        result.check()


class _CancelAfterFirst:
    """A progress display that cancels every task of the loop once an example finishes: what the
    CLI's SIGINT handler does (cli/interrupt.py)."""

    def __init__(self, meter: UsageMeter, label: str, **_: object) -> None:
        pass

    def __enter__(self) -> _CancelAfterFirst:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        pass

    def update(self, score: float | None, failed: bool) -> None:
        loop = asyncio.get_running_loop()
        for task in asyncio.all_tasks(loop):
            task.cancel()


def test_an_interrupted_evaluation_leaves_its_partial_summary_and_junit(base: LMServer, tmp_path: Path) -> None:
    base.default_delay = 0.05
    options = EvaluateOptions(output=tmp_path / "run", junit=tmp_path / "junit.xml", concurrency=1)
    job = evaluate_workflow.prepare(setup(tmp_path), None, options, CacheOptions(no_cache=True))
    with pytest.raises(asyncio.CancelledError):
        evaluate_workflow.execute(job, Hooks(progress=_CancelAfterFirst))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["aborted"] == "interrupted" and summary["finished"] == len(job.finished) >= 1
    assert job.stopped == "interrupted"
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()[0]
    assert int(suite.get("skipped")) == 10 - summary["finished"]


def test_workflows_import_neither_the_cli_nor_typer_nor_rich() -> None:
    for path in WORKFLOWS.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert not name.startswith(("dspx_cli.cli", "typer", "rich", "click")), f"{path.name} imports {name}"
    code = (
        "import sys\nimport dspx_cli.workflows.evaluate, dspx_cli.workflows.compile, dspx_cli.workflows.run\n"
        "print(sorted(m for m in ('typer', 'rich', 'click', 'dspx_cli.cli') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ}, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_in_process_cli_puts_back_what_a_process_keeps_to_itself(tmp_path: Path) -> None:
    import logging

    from tests.cli_inprocess import dspx

    engine = logging.getLogger("dspx_cli")
    before = (dict(os.environ), os.getcwd(), sys.stdout, sys.stderr, engine.handlers[:], engine.propagate)
    (tmp_path / "p.yaml").write_text("modules: {m: {signature: 'q -> a'}}\n")
    done = dspx("validate", "p.yaml", cwd=tmp_path, EXTRA_VARIABLE="1")
    assert done.returncode == 0 and done.stdout.startswith("ok: p.yaml"), done.stderr
    assert (dict(os.environ), os.getcwd(), sys.stdout, sys.stderr, engine.handlers, engine.propagate) == before
