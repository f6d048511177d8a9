"""`dspx report` opened in a real headless browser (Debian's chromium, tests/browser.py): the page
renders with no console errors, the table holds every example, filtering and search work, a row
shows its messages and reply, hostile outputs stay text, compile and finetune runs get charts.
Skipped when chromium is not installed (.ci/run installs it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Browser, Page, find_chromium
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer
from tests.report_runs import evaluate_run, finetune_run, mipro_run, refuse_boom, shout, texts, write_program

pytest.importorskip("jinja2", reason="dspx report needs the report extra: pip install -e '.[report]'")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)")

COUNT = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An evaluate run against the loopback server and its report."""
    root = tmp_path_factory.mktemp("report")
    env = {"DSPX_CACHE_DIR": str(root / "cache")}
    with LMServer() as server:
        server.responder = shout
        server.rule = refuse_boom
        program = write_program(root, COUNT)
        evaluate_run(program, root / "run", server.api_base, "--max-errors", "5", **env)
    done = dspx("report", str(root / "run"))
    assert done.returncode == 0, done.stderr
    return {"root": root, "evaluate": root / "run", "single": root / "run" / "report.html"}


@pytest.fixture(scope="module")
def combined(runs: dict[str, Path]) -> tuple[Path, Path]:
    """A real mipro_v2 compile (tests/test_mipro_cli.py's scripted server), a finetune folder and the
    evaluate run in one report; (the report, the mipro run folder)."""
    root = runs["root"]
    compiled = mipro_run(root / "mipro")  # skipped without optuna
    tuned = finetune_run(root / "tuned")
    done = dspx("report", str(compiled), str(tuned), str(runs["evaluate"]), "-o", str(root / "all.html"))
    assert done.returncode == 0, done.stderr
    return root / "all.html", compiled


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser, runs: dict[str, Path]) -> Page:
    opened = browser.open(runs["single"])
    opened.wait_for("window.dspxReport && window.dspxReport.ready")
    return opened


def active(page: Page) -> int:
    return int(page.evaluate("window.dspxReport.current.table.getDataCount('active')"))


def test_the_page_renders_every_example_without_console_errors(page: Page, runs: dict[str, Path]) -> None:
    assert page.errors == []
    assert active(page) == COUNT
    assert page.evaluate("document.querySelector('.count').textContent") == f"{COUNT} of {COUNT} examples"
    facts = page.evaluate("[...document.querySelectorAll('dl.facts dt')].map(e => e.textContent)")
    assert {"program", "model", "split", "score", "errors", "calls", "tokens", "cost", "time"} <= set(facts)
    charts = page.evaluate("[...document.querySelectorAll('canvas')].map(c => !!Chart.getChart(c))")
    assert charts == [True, True]  # score distribution, latency histogram
    indexes = page.evaluate("window.dspxReport.current.table.getData().map(r => r.index)")
    assert sorted(indexes) == list(range(COUNT))


def test_filtering_to_failures_and_search(page: Page, runs: dict[str, Path]) -> None:
    records = [json.loads(line) for line in (runs["evaluate"] / "examples.jsonl").read_text().splitlines()]
    failures = sum(1 for r in records if r["error"] is not None or r["score"] < 1)
    assert 0 < failures < COUNT
    page.evaluate("document.querySelector('.only-failed').click()")
    assert active(page) == failures
    rows = page.evaluate("document.querySelectorAll('.tabulator-row').length")
    assert rows == failures  # the rows shown, not only the count
    assert page.evaluate("document.querySelector('.count').textContent") == f"{failures} of {COUNT} examples"
    page.evaluate("document.querySelector('.only-failed').click()")
    page.evaluate(
        "(() => { const s = document.querySelector('.search'); s.value = 'T1'; s.dispatchEvent(new Event('input')); })()"
    )
    expected = sum(1 for text in texts(COUNT) if "t1" in text)  # t1, t10..t19
    page.wait_for(f"window.dspxReport.current.table.getDataCount('active') === {expected}", timeout=10)
    assert page.errors == []


def test_a_row_shows_the_messages_sent_and_the_raw_reply(page: Page, runs: dict[str, Path]) -> None:
    calls = {json.loads(line)["index"]: json.loads(line)["calls"] for line in (runs["evaluate"] / "calls.jsonl").open()}
    page.evaluate("window.dspxReport.current.table.getRow(5).getElement().click()")
    detail = page.evaluate("document.querySelector('.detail').innerText")
    [call] = calls[5]
    assert call["messages"][0]["content"].splitlines()[0] in detail
    assert call["messages"][-1]["content"].splitlines()[0] in detail and "T5" in detail
    roles = page.evaluate("[...document.querySelectorAll('.detail .message .role')].map(e => e.textContent)")
    assert roles == ["system", "user", "reply"]


def test_a_hostile_output_stays_text(page: Page) -> None:
    xss = texts(COUNT).index("xss")
    table = "window.dspxReport.current.table"
    page.evaluate(f"{table}.scrollToRow({xss}, 'top', false).then(() => {table}.getRow({xss}).getElement().click())")
    detail = page.evaluate("document.querySelector('.detail').innerText")
    assert "</script><script>alert(1)</script><img src=x" in detail
    cell = page.evaluate(f"window.dspxReport.current.table.getRow({xss}).getElement().innerText")
    assert "<script>alert(1)" in cell
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("document.querySelectorAll('#injected, img').length") == 0
    assert page.errors == []


def test_compile_finetune_and_evaluate_runs_in_one_page(browser: Browser, combined: tuple[Path, Path]) -> None:
    report, mipro = combined
    page = browser.open(report)
    page.wait_for("window.dspxReport && window.dspxReport.ready")
    buttons = page.evaluate("[...document.querySelectorAll('nav button')].map(b => b.textContent)")
    assert buttons == ["run", "tuned", "run"]  # the mipro run's folder, the finetune's, the evaluate's
    caption = page.evaluate("document.querySelector('#run-0 figcaption').textContent")
    trials = [json.loads(line)["score"] for line in (mipro / "trials.jsonl").read_text().splitlines()]
    chart = "Chart.getChart(document.querySelector('#run-0 canvas')).data.datasets[0].data"
    assert caption.startswith("Trials") and page.evaluate(chart) == trials
    page.evaluate("document.querySelectorAll('nav button')[1].click()")
    assert page.evaluate("Chart.getChart(document.querySelector('#run-1 canvas')).data.datasets[0].data")[-1] == 0.8
    page.evaluate("document.querySelectorAll('nav button')[2].click()")
    page.wait_for("window.dspxReport.current.table !== undefined")
    page.wait_for(f"window.dspxReport.current.table.getDataCount('active') === {COUNT}", timeout=10)
    assert page.evaluate("document.querySelector('#run-0').hidden") is True
    assert page.errors == []
