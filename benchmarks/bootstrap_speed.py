"""BootstrapFewShot on 50 training examples that all fail the metric (a full pass), 50 ms server.

    python benchmarks/bootstrap_speed.py [--examples 50] [--latency 0.05] [-j 16]

Prints the wall time beside the sequential ideal (N x latency). Target: <= 0.5 s.
DSPy 3.4.1 measured 2.875 s here (it bootstraps sequentially).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.latency_server import echo_program  # noqa: E402
from dspx_cli.core import Example  # noqa: E402
from dspx_cli.evaluate.metrics import resolve_metric  # noqa: E402
from dspx_cli.lm.cache import CacheMode  # noqa: E402
from dspx_cli.optimizers.bootstrap import bootstrap_few_shot  # noqa: E402
from dspx_cli.program.context import RunContext  # noqa: E402
from dspx_cli.program.loader import load_program  # noqa: E402
from dspx_cli.program.runner import ProgramRunner  # noqa: E402

TARGET_S = 0.5
DSPY_S = 2.875


async def run(program_path: Path, examples: list[Example], concurrency: int, scratch: Path) -> tuple[float, int]:
    program = load_program(program_path)
    context = RunContext(base_dir=program.base_dir, cache_dir=scratch, cache_mode=CacheMode.OFF, history=False)
    runner = ProgramRunner(program, context)
    metric = resolve_metric(program, context)
    started = time.perf_counter()
    report = await bootstrap_few_shot(runner, examples, metric, max_labeled_demos=0, concurrency=concurrency)
    seconds = time.perf_counter() - started
    await context.aclose()
    return seconds, report.examples_tried


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("-j", "--concurrency", type=int, default=16)
    args = parser.parse_args()
    with echo_program(args.latency) as (_port, program):
        scratch = program.parent  # the program's temporary folder also holds the cache
        # The server upper-cases; lower-case labels never match, so every example is tried.
        examples = [Example(text=f"t{i}", answer=f"t{i}").with_inputs("text") for i in range(args.examples)]
        ideal = args.examples * args.latency
        print(f"BootstrapFewShot, {args.examples} examples that all fail, {args.latency * 1000:.0f} ms server")
        for concurrency in (1, args.concurrency):
            seconds, tried = asyncio.run(run(program, examples, concurrency, scratch))
            assert tried == args.examples
            verdict = f"<= {TARGET_S} s {'met' if seconds <= TARGET_S else 'MISSED'}" if concurrency > 1 else ""
            print(
                f"  -j {concurrency:<3} {seconds:6.3f} s   {seconds / ideal:5.2f}x the sequential ideal "
                f"({ideal:.2f} s)   {verdict}"
            )
        print(f"  DSPy 3.4.1: {DSPY_S} s (sequential)")


if __name__ == "__main__":
    main()
