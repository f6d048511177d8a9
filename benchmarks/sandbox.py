"""What the code sandbox costs: starting an interpreter, one execute, many at once.

    python benchmarks/sandbox.py [--executes 300] [--pool 4]

1. Cold start: a Deno process loading Pyodide until it answers (median of 3 starts).
2. Warm execute round trip: `x + 1` on a started interpreter, host to sandbox and back, with and
   without a host tool call in the code. Target <= 5 ms.
3. Throughput of 16 concurrent sessions, each running a small loop of code 10 times, on a pool of
   1 and of --pool processes (started before timing): CPU-bound code, so on a 2-core machine the
   pool cannot do much better than one process.
4. The same 16 sessions, each execute calling a host tool that takes 50 ms (an LM or a search):
   a process waits with its caller, so here the pool's processes overlap.
Pyodide must be fetched already (the first use does it; `dspx` keeps it in its cache dir).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table  # noqa: E402
from dspx_cli.sandbox import Sandbox, SandboxLimits  # noqa: E402

LOOP = "total = 0\nfor i in range(1000):\n    total += i * i\ntotal"


class Slow:
    name = "lookup"
    args: dict[str, Any] = {"key": {"type": "string"}}  # noqa: RUF012 - the SandboxTool shape

    async def acall(self, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return kwargs["key"]


class Echo:
    name = "echo"
    args: dict[str, Any] = {"text": {"type": "string"}}  # noqa: RUF012 - the SandboxTool shape

    async def acall(self, **kwargs: Any) -> Any:
        return kwargs["text"]


async def cold_start(starts: int) -> float:
    timings = []
    for _ in range(starts):
        sandbox = Sandbox(SandboxLimits(pool_size=1))
        await sandbox.start()  # fetch check outside the timing
        await sandbox.aclose()
        sandbox = Sandbox(SandboxLimits(pool_size=1))
        started = time.perf_counter()
        async with sandbox.session() as session:
            result = await session.execute("1")
        timings.append(time.perf_counter() - started)
        assert result.output == 1, result
        await sandbox.aclose()
    return statistics.median(timings)


async def round_trip(executes: int) -> tuple[float, float]:
    sandbox = Sandbox(SandboxLimits(pool_size=1))
    try:
        async with sandbox.session({"echo": Echo()}) as session:
            await session.execute("x = 1")
            medians = []
            for code in ("x + 1", "echo('hi')"):
                timings = []
                for _ in range(executes):
                    started = time.perf_counter()
                    result = await session.execute(code)
                    timings.append(time.perf_counter() - started)
                assert result.error is None, result
                medians.append(statistics.median(timings))
            return medians[0], medians[1]
    finally:
        await sandbox.aclose()


async def throughput(pool: int, sessions: int = 16, each: int = 10, waiting: bool = False) -> float:
    sandbox = Sandbox(SandboxLimits(pool_size=pool))
    await sandbox.start()
    code, expected = ("lookup('k')", "k") if waiting else (LOOP, 332833500)

    async def one() -> None:
        async with sandbox.session({"lookup": Slow()}) as session:
            for _ in range(each):
                result = await session.execute(code)
                assert result.output == expected, result

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(sessions)))
        return sessions * each / (time.perf_counter() - started)
    finally:
        await sandbox.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executes", type=int, default=300)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()

    cold = await cold_start(args.starts)
    warm, with_tool = await round_trip(args.executes)
    one_process = await throughput(1)
    pooled = await throughput(args.pool)
    waiting_one = await throughput(1, each=3, waiting=True)
    waiting_pooled = await throughput(args.pool, each=3, waiting=True)
    print_table(
        [
            Figure("cold start (Deno + Pyodide, first execute)", cold, "s"),
            Figure("warm execute round trip", warm * 1000, "ms", 5.0),
            Figure("warm execute with one host tool call", with_tool * 1000, "ms", None),
            Figure("16 sessions x 10 executes, pool of 1", one_process, "/s"),
            Figure(f"16 sessions x 10 executes, pool of {args.pool}", pooled, "/s"),
            Figure("16 x 3 executes with a 50 ms tool, pool of 1", waiting_one, "/s"),
            Figure(f"16 x 3 executes with a 50 ms tool, pool of {args.pool}", waiting_pooled, "/s"),
        ],
        width=48,
    )


if __name__ == "__main__":
    asyncio.run(main())
