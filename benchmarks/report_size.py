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

from dspx_cli.workflows.report import write_report  # noqa: E402
from tests.browser import Browser, find_chromium  # noqa: E402

TARGETS = {"render_s": 5.0, "first_render_s": 3.0, "filter_s": 0.3}

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
        figures = {
            "examples": args.examples,
            "examples_jsonl_mb": round(sizes["examples.jsonl"] / 2**20, 2),
            "calls_jsonl_mb": round(sizes["calls.jsonl"] / 2**20, 2),
            "report_mb": round(result.bytes / 2**20, 2),
            "render_s": round(result.seconds, 2),
        }
        if find_chromium() is None:
            print("chromium is not installed: browser figures skipped", file=sys.stderr)
        else:
            with Browser() as browser:
                started = time.perf_counter()
                page = browser.open(result.path)
                page.wait_for("window.dspxReport && window.dspxReport.ready", timeout=120)
                figures["open_to_ready_wall_s"] = round(time.perf_counter() - started, 2)
                figures["first_render_s"] = round(page.evaluate("window.dspxReport.readyAt") / 1000, 2)
                frame = "new Promise(r => requestAnimationFrame(() => setTimeout(r)))"
                filtered = page.evaluate(
                    "(async () => { const t = performance.now(); document.querySelector('.only-failed').click();"
                    f" await {frame}; return [performance.now() - t,"
                    " window.dspxReport.current.table.getDataCount('active')]; })()"
                )
                figures["filter_s"] = round(filtered[0] / 1000, 3)
                figures["failures_shown"] = filtered[1]
                searched = page.evaluate(
                    "(async () => { const c = window.dspxReport.current; c.onlyFailed.click(); await "
                    f"{frame}; c.search.value = 'order #1042'; const t = performance.now(); c.refilter(); await {frame};"
                    " return [performance.now() - t, c.table.getDataCount('active')]; })()"
                )
                figures["search_s"] = round(searched[0] / 1000, 3)
                figures["search_hits"] = searched[1]
                figures["errors"] = page.errors
        for name, value in figures.items():
            target = f"  (target <= {TARGETS[name]})" if name in TARGETS else ""
            print(f"{name:22} {value}{target}")


if __name__ == "__main__":
    main()
