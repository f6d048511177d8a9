"""What the LM layer costs per call, beside raw HTTP in the same run.

    python benchmarks/lm_overhead.py [--calls 2000]

1. Per-call overhead with the cache off against a 0 ms loopback server: the full dspx stack
   (history, usage, retries, HTTP client) minus a bare POST of the same body on the same
   transport. The stack has two: calls made one at a time go through httpx (no aiohttp import for
   a one-call `dspx run`), calls that overlap through aiohttp (lm/openai_compat.py). Each is timed
   against its own bare client, the aiohttp one with DSPX_HTTP_TRANSPORT=aiohttp forcing the
   stack's choice; subtracting another transport than the one the stack used would misstate
   dspx's cost (it once printed -0.819 ms, and later +0.62 ms the other way). Target <= 0.25 ms.
2. Memory-cache hit: a repeated request served by the cache. Target <= 30 us.
3. Disk-cache hit in a fresh process (entries written by another process). Target <= 300 us.
DSPy 3.4.1 measured 1.17 ms, 720 us and 802 us for the same three on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table  # noqa: E402
from dspx_cli.lm.base import LMRequest  # noqa: E402
from dspx_cli.lm.cache import CacheMode  # noqa: E402
from dspx_cli.lm.config import LMConfig  # noqa: E402
from dspx_cli.lm.openai_http import TRANSPORT_ENV  # noqa: E402
from dspx_cli.program.context import RunContext  # noqa: E402
from tests.lm_server import LMServer  # noqa: E402

REPLY = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
SYSTEM = "Your input fields are:\n1. `question` (str):\n" + "x" * 1200


def request(i: int) -> LMRequest:
    return LMRequest(
        messages=({"role": "system", "content": SYSTEM}, {"role": "user", "content": f"[[ ## question ## ]]\nq{i}"}),
        temperature=0.0,
        max_tokens=64,
    )


async def per_call_overhead(server: LMServer, calls: int, cache_dir: Path) -> tuple[float, float, float, float]:
    import aiohttp
    import httpx

    context = RunContext(cache_dir=cache_dir, cache_mode=CacheMode.OFF)
    lm = context.lm(LMConfig("openai/bench", api_base=server.api_base, api_key="sk-bench", timeout=30))
    raw_client = httpx.AsyncClient(timeout=30, headers={"Authorization": "Bearer sk-bench"})
    url = f"{server.api_base}/chat/completions"

    async def raw(i: int) -> None:
        r = request(i)
        body = {"model": "bench", "messages": list(r.messages), "temperature": 0.0, "max_tokens": 64, "n": 1}
        response = await raw_client.post(url, json=body)
        response.json()["choices"][0]["message"]["content"]

    session = aiohttp.ClientSession(headers={"Authorization": "Bearer sk-bench"})

    async def raw_aiohttp(i: int) -> None:
        r = request(i)
        body = {"model": "bench", "messages": list(r.messages), "temperature": 0.0, "max_tokens": 64, "n": 1}
        async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as reply:
            (await reply.json())["choices"][0]["message"]["content"]

    pooled_context = RunContext(cache_dir=cache_dir, cache_mode=CacheMode.OFF)
    pooled_lm = pooled_context.lm(LMConfig("openai/bench", api_base=server.api_base, api_key="sk-bench", timeout=30))

    async def stack(i: int) -> None:
        assert _transport(lm) == "httpx"
        await lm.complete(request(i))

    async def stack_aiohttp(i: int) -> None:
        os.environ[TRANSPORT_ENV] = "aiohttp"
        try:
            assert _transport(pooled_lm) == "aiohttp"
            await pooled_lm.complete(request(i))
        finally:
            del os.environ[TRANSPORT_ENV]

    sides = (raw, raw_aiohttp, stack, stack_aiohttp)
    times: list[list[float]] = [[] for _ in sides]
    for block in range(10):  # interleaved blocks: machine noise hits every side alike
        for fn, out in zip(sides, times, strict=True):
            started = time.perf_counter()
            for i in range(calls // 10):
                await fn(block * calls + i)
            out.append((time.perf_counter() - started) / (calls // 10))
    await raw_client.aclose()
    await session.close()
    await context.aclose()
    await pooled_context.aclose()
    httpx_s, aiohttp_s, stack_s, stack_aiohttp_s = (statistics.median(t) for t in times)
    return httpx_s, aiohttp_s, stack_s, stack_aiohttp_s


def _transport(lm: Any) -> str:
    """The transport the stack's next call takes (the HTTP client lies under usage, history, retries)."""
    layer = lm
    while not hasattr(layer, "transport_name"):
        layer = layer.inner
    return str(layer.transport_name)


async def memory_hit(server: LMServer, cache_dir: Path, repeats: int) -> tuple[float, float]:
    context = RunContext(cache_dir=cache_dir)  # with the history log, as in a real run
    lm = context.lm(LMConfig("openai/bench", api_base=server.api_base, timeout=30))
    cached_lm = lm.inner  # type: ignore[attr-defined]  # the CachedLM below usage and history
    one = request(-1)
    await lm.complete(one)  # the miss that fills the cache
    timings = []
    for target in (cached_lm, lm):
        started = time.perf_counter()
        for _ in range(repeats):
            await target.complete(one)
        timings.append((time.perf_counter() - started) / repeats)
    await context.aclose()
    return timings[0], timings[1]


READER = """
import sys, time, json
from pathlib import Path
from typing import Any
from dspx_cli.lm.cache import ResponseCache, request_key
sys.path.insert(0, sys.argv[3])
from benchmarks.lm_overhead import request
cache = ResponseCache(Path(sys.argv[1]))
count = int(sys.argv[2])
keys = [request_key("openai/bench", request(i)) for i in range(count)]
started = time.perf_counter()
cache.get(keys[0])
opened = time.perf_counter() - started
started = time.perf_counter()
for key in keys[1:]:
    assert cache.get(key) is not None
per_hit = (time.perf_counter() - started) / (count - 1)
print(json.dumps({"open_and_first": opened, "per_hit": per_hit}))
"""


def disk_hit(server: LMServer, cache_dir: Path, count: int) -> dict[str, float]:
    async def fill() -> None:
        context = RunContext(cache_dir=cache_dir, history=False)
        lm = context.lm(LMConfig("openai/bench", api_base=server.api_base, timeout=30))
        for i in range(count):
            await lm.complete(request(i))
        await context.aclose()

    asyncio.run(fill())
    done = subprocess.run(
        [sys.executable, "-c", READER, str(cache_dir), str(count), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with LMServer() as server, tempfile.TemporaryDirectory() as scratch:
        server.responder = lambda body: REPLY
        httpx_s, aiohttp_s, stack_s, stack_aiohttp_s = asyncio.run(
            per_call_overhead(server, args.calls, Path(scratch) / "off")
        )
        cache_s, full_s = asyncio.run(memory_hit(server, Path(scratch) / "mem", 20000))
        disk = disk_hit(server, Path(scratch) / "disk", 500)
    print(f"bare POST, 0 ms server: httpx {httpx_s * 1000:.3f} ms, aiohttp {aiohttp_s * 1000:.3f} ms (same run)")
    print(
        f"dspx stack, cache off : {stack_s * 1000:.3f} ms one at a time (httpx), {stack_aiohttp_s * 1000:.3f} ms on aiohttp"
    )
    figures = [
        Figure(
            "per-call overhead, one at a time (httpx)",
            (stack_s - httpx_s) * 1000,
            "ms",
            0.25,
            f"bare httpx POST {httpx_s * 1000:.3f} ms; DSPy 1.17 ms",
        ),
        Figure(
            "per-call overhead, overlapping calls (aiohttp)",
            (stack_aiohttp_s - aiohttp_s) * 1000,
            "ms",
            0.25,
            f"bare aiohttp POST {aiohttp_s * 1000:.3f} ms",
        ),
        Figure("memory-cache hit (cache layer)", cache_s * 1e6, "us", 30, "DSPy 720 us"),
        Figure("memory-cache hit (+usage, history)", full_s * 1e6, "us", None, ""),
        Figure("disk-cache hit, fresh process", disk["per_hit"] * 1e6, "us", 300, "DSPy 802 us"),
        Figure("  opening the cache + first hit", disk["open_and_first"] * 1000, "ms", None, ""),
    ]
    print_table(figures)


if __name__ == "__main__":
    main()
