"""`dspx evaluate` throughput against a loopback server with 100 ms latency.

    python benchmarks/evaluate_throughput.py [--examples 1000] [--latency 0.1]

Runs the evaluation engine (program runner, LM stack with cache off, metric) on N examples at
64, 256 and 1024 in flight and prints wall time and % of the ideal N x latency / concurrency.
Targets: >= 95% at 64, >= 85% at 256, >= 70% at 1024 (DSPy 3.4.1: 59% at 64 threads, 14% at 256).
Process start-up and program loading are excluded: they are the same for every concurrency and
would dominate the 0.1 s ideal at 1024.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.latency_server import echo_program  # noqa: E402
from dspx_cli.core import Example  # noqa: E402
from dspx_cli.evaluate.evaluator import evaluate  # noqa: E402
from dspx_cli.evaluate.metrics import resolve_metric  # noqa: E402
from dspx_cli.lm.cache import CacheMode  # noqa: E402
from dspx_cli.program.context import RunContext  # noqa: E402
from dspx_cli.program.loader import load_program  # noqa: E402
from dspx_cli.program.runner import ProgramRunner  # noqa: E402

TARGETS = {64: 0.95, 256: 0.85, 1024: 0.70}


async def one_run(program_path: Path, examples: list[Example], concurrency: int, cache_dir: Path) -> float:
    program = load_program(program_path)
    context = RunContext(base_dir=program.base_dir, cache_dir=cache_dir, cache_mode=CacheMode.OFF, history=False)
    runner = ProgramRunner(program, context)
    metric = resolve_metric(program, context)
    started = time.perf_counter()
    evaluation = await evaluate(runner, examples, metric, concurrency=concurrency)
    seconds = time.perf_counter() - started
    await context.aclose()
    assert evaluation.errors == 0 and evaluation.score == 1.0, (evaluation.errors, evaluation.score)
    return seconds


async def raw_client_floor(port: int, count: int, concurrency: int) -> float:
    """The same requests from a bare aiohttp client with no engine at all: what this machine and
    this server allow, so the figures above can be read against it."""
    import aiohttp
    import orjson

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(i: int) -> None:
            body = {"model": "bench", "messages": [{"role": "user", "content": f"[[ ## text ## ]]\nt{i}"}]}
            async with (
                slots,
                session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r,
            ):
                orjson.loads(await r.read())

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument(
        "--compare", action="store_true", help="also run with httpx's own connection pool (DSPX_HTTP_TRANSPORT=httpx)"
    )
    args = parser.parse_args()
    with echo_program(args.latency) as (port, program):
        scratch = program.parent  # the program's temporary folder also holds the cache
        examples = [Example(text=f"t{i}", answer=f"T{i}").with_inputs("text") for i in range(args.examples)]
        print(f"{args.examples} examples, {args.latency * 1000:.0f} ms server latency, cache off")
        transports = ["aiohttp", "httpx"] if args.compare else ["aiohttp"]
        print(f"{'transport':>9} {'in flight':>9} {'wall s':>8} {'ideal s':>8} {'% ideal':>8}  target")
        for transport in transports:
            os.environ["DSPX_HTTP_TRANSPORT"] = transport
            for concurrency, target in TARGETS.items():
                seconds = asyncio.run(one_run(program, examples, concurrency, scratch))
                ideal = args.examples * args.latency / concurrency
                share = ideal / seconds
                verdict = f">= {target:.0%} {'met' if share >= target else 'MISSED'}"
                print(f"{transport:>9} {concurrency:>9} {seconds:8.2f} {ideal:8.3f} {share:8.1%}  {verdict}")
        for concurrency in TARGETS:
            seconds = asyncio.run(raw_client_floor(port, args.examples, concurrency))
            ideal = args.examples * args.latency / concurrency
            print(
                f"{'bare':>9} {concurrency:>9} {seconds:8.2f} {ideal:8.3f} {ideal / seconds:8.1%}  "
                "(aiohttp alone, no dspx: the machine's ceiling)"
            )


if __name__ == "__main__":
    main()
