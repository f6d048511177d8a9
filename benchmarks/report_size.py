"""`dspx report` on 10,000 examples: file size, render time, and in headless chromium the time to
first render and to filter.

    python benchmarks/report_size.py [--examples 10000] [--demos 3]

Builds a synthetic evaluate run folder (examples.jsonl and calls.jsonl as `dspx evaluate` writes
them: one call per example whose system prompt carries `--demos` demos, a fifth of the examples
failing), renders the report, then opens it in Debian's chromium (tests/browser.py) and measures
from navigation start to the table being built, the "failures only" filter and a search, each
until the next frame. Targets: render <= 5 s, first render <= 3 s, filter <= 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table  # noqa: E402
from dspx_cli.workflows.report import write_report  # noqa: E402
from tests.browser import Browser, find_chromium  # noqa: E402

TARGETS = {"render": 5.0, "first render in chromium": 3.0, "failures-only filter": 0.3}

SYSTEM = (
    "Your input fields are:\n1. `ticket` (str):\nYour output fields are:\n1. `queue` (str):\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
    "[[ ## ticket ## ]]\n{ticket}\n\n[[ ## queue ## ]]\n{queue}\n\n[[ ## completed ## ]]\n"
    "In adhering to this structure, your objective is: \n        Route the support ticket to one queue."
)
QUEUES = ["billing", "shipping", "returns", "account", "technical"]


def build(folder: Path, count: int, demos: int) -> None:
    demo_messages = []
    for d in range(demos):
        demo_messages += [
            {"role": "user", "content": f"[[ ## ticket ## ]]\nDemo ticket {d}: my parcel never came.\n\nRespond ..."},
            {"role": "assistant", "content": f"[[ ## queue ## ]]\n{QUEUES[d % 5]}\n\n[[ ## completed ## ]]"},
        ]
    with (folder / "examples.jsonl").open("w") as examples, (folder / "calls.jsonl").open("w") as calls:
        for i in range(count):
            ticket = f"Ticket {i}: order #{100000 + i} was charged twice and the box arrived damaged."
            label = QUEUES[i % 5]
            answer = label if i % 5 else QUEUES[(i + 1) % 5]  # every fifth is wrong
            seconds = 0.2 + (i * 7919 % 1000) / 1000
            record = {
                "index": i,
                "inputs": {"ticket": ticket},
                "labels": {"queue": label},
                "outputs": {"queue": answer},
                "score": 1.0 if answer == label else 0.0,
                "error": None,
                "usage": {"prompt_tokens": 180 + 60 * demos, "completion_tokens": 12},
                "seconds": seconds,
                "lm_calls": 1,
                "cached": i % 3 == 0,
            }
            examples.write(json.dumps(record) + "\n")
            messages = [{"role": "system", "content": SYSTEM}, *demo_messages]
            messages.append({"role": "user", "content": f"[[ ## ticket ## ]]\n{ticket}\n\nRespond with ..."})
            call = {
                "predictor": "route.predict",
                "phase": "program",
                "timestamp": "2026-11-28T06:00:00.000+00:00",
                "model": "openai/gpt-4o-mini",
                "messages": messages,
                "params": {"temperature": 0.0, "max_tokens": 512, "n": 1, "extra": {}, "rollout_id": None},
                "latency_s": seconds,
                "cache_key": f"{i:064x}",
                "outputs": [f"[[ ## queue ## ]]\n{answer}\n\n[[ ## completed ## ]]"],
                "usage": record["usage"],
                "cached": record["cached"],
            }
            calls.write(json.dumps({"index": i, "calls": [call]}) + "\n")
    summary = {
        "program": "support.yaml",
        "program_name": "support",
        "split": "dev",
        "examples": count,
        "finished": count,
        "errors": 0,
        "score": 0.8,
        "seconds": 321.0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--demos", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "run"
        folder.mkdir()
        build(folder, args.examples, args.demos)
        sizes = {name: (folder / name).stat().st_size for name in ("examples.jsonl", "calls.jsonl")}
        result = write_report([folder])
        figures = [
            Figure("examples.jsonl", sizes["examples.jsonl"] / 2**20, "MB"),
            Figure("calls.jsonl", sizes["calls.jsonl"] / 2**20, "MB"),
            Figure("report.html", result.bytes / 2**20, "MB"),
            Figure("render", result.seconds, "s", TARGETS["render"]),
        ]
        if find_chromium() is None:
            print("chromium is not installed: browser figures skipped", file=sys.stderr)
            print_table(figures)
            return
        with Browser() as browser:
            started = time.perf_counter()
            page = browser.open(result.path)
            page.wait_for("window.dspxReport && window.dspxReport.ready", timeout=120)
            wall = time.perf_counter() - started
            first = page.evaluate("window.dspxReport.readyAt") / 1000
            frame = "new Promise(r => requestAnimationFrame(() => setTimeout(r)))"
            filtered = page.evaluate(
                "(async () => { const t = performance.now(); document.querySelector('.only-failed').click();"
                f" await {frame}; return [performance.now() - t,"
                " window.dspxReport.current.table.getDataCount('active')]; })()"
            )
            searched = page.evaluate(
                "(async () => { const c = window.dspxReport.current; c.onlyFailed.click(); await "
                f"{frame}; c.search.value = 'order #1042'; const t = performance.now(); c.refilter(); await {frame};"
                " return [performance.now() - t, c.table.getDataCount('active')]; })()"
            )
            errors = page.errors
        figures += [
            Figure(
                "first render in chromium",
                first,
                "s",
                TARGETS["first render in chromium"],
                "navigation start to table built",
            ),
            Figure("open to ready (from this process)", wall, "s"),
            Figure(
                "failures-only filter",
                filtered[0] / 1000,
                "s",
                TARGETS["failures-only filter"],
                f"{filtered[1]} rows shown",
            ),
            Figure("search", searched[0] / 1000, "s", None, f"{searched[1]} rows shown"),
        ]
        print_table(figures)
        print(f"console errors: {errors or 'none'}")


if __name__ == "__main__":
    main()
