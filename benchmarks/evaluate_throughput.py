"""`dspx evaluate`'s loop beside a bare aiohttp client (and DSPy 3.4.1) on one loopback server.

    python benchmarks/evaluate_throughput.py [--compare] [--examples 1000] [--latency 0.1]
        [--rounds 7] [--in-flight 64 256] [--httpx]

The server (benchmarks/latency_server.py, its own process) answers every request after 100 ms.
Each contender evaluates the same N examples (`text -> answer`, gold answer the upper-cased text)
with the cache off, and only its loop is timed (imports, start-up and program loading are not):

- bare: aiohttp alone, no dspx. Per example it builds the ChatAdapter prompt (the system message
  once, as the adapters do per signature; the user message per example), POSTs it with orjson,
  takes the `[[ ## answer ## ]]` section of the reply and scores it by exact match. What this
  machine and this server allow: the baseline the targets are ratios of.
- dspx: `evaluate()` over a `ProgramRunner` with the run context `dspx evaluate --no-cache` makes
  (history on: one JSON line per call in history.jsonl), the program's `exact_match` metric.
- DSPy (`--compare`): `dspy.Evaluate` with `num_threads` = in flight on `dspy.Predict`, its
  ChatAdapter, cache off (benchmarks/dspy_evaluate.py), from a venv this script makes under
  ~/.cache/dspx-bench/dspy-3.4.1 (`python -m venv` + `pip install dspy==3.4.1`) the first time.
- dspx over httpx (`--httpx`): dspx with DSPX_HTTP_TRANSPORT=httpx, for context.

Client CPU per example (process CPU time of the loop / N; DSPy's counts all its threads) is printed
beside the wall times: it is what a contender costs, and is less noisy than wall time when other
work shares the cores.

The first example's messages are checked to be the same bytes in all three before anything is
timed. Each round runs every contender once at each in-flight count, in an order that rotates
from round to round, after one untimed warm-up round; figures are medians over rounds, ratios the
median of each round's ratio. Targets: dspx / bare <= 1.15 at 64 and 256 in flight; DSPy at least
2x dspx's time at 256 (dspx / DSPy <= 0.5). The load average is printed: on a shared machine read
the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table  # noqa: E402
from benchmarks.latency_server import echo_program  # noqa: E402
from dspx_cli.core import Example  # noqa: E402
from dspx_cli.evaluate.evaluator import evaluate  # noqa: E402
from dspx_cli.evaluate.metrics import resolve_metric  # noqa: E402
from dspx_cli.lm.cache import CacheMode  # noqa: E402
from dspx_cli.program.context import RunContext  # noqa: E402
from dspx_cli.program.loader import load_program  # noqa: E402
from dspx_cli.program.runner import ProgramRunner  # noqa: E402

DSPY_VERSION = "3.4.1"
DSPY_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dspx-bench" / f"dspy-{DSPY_VERSION}"
TARGET_BARE = 1.15  # dspx / bare, at every in-flight count
TARGET_DSPY = 0.5  # dspx / DSPy at 256 in flight: DSPy takes at least twice as long


# ----- dspx --------------------------------------------------------------------------------------


async def dspx_run(
    program_path: Path, examples: list[Example], concurrency: int, cache_dir: Path
) -> tuple[float, float]:
    program = load_program(program_path)
    context = RunContext(base_dir=program.base_dir, cache_dir=cache_dir, cache_mode=CacheMode.OFF)
    runner = ProgramRunner(program, context)
    metric = resolve_metric(program, context)
    started, cpu = time.perf_counter(), time.process_time()
    evaluation = await evaluate(runner, examples, metric, concurrency=concurrency)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await context.aclose()
    assert evaluation.errors == 0 and evaluation.score == 1.0, (evaluation.errors, evaluation.score)
    return seconds, cpu


def dspx_messages(program_path: Path) -> list[dict[str, str]]:
    program = load_program(program_path)
    runner = ProgramRunner(program, None)
    return [dict(message) for message in runner.modules["echo"].messages({"text": "t0"})]


# ----- bare aiohttp ------------------------------------------------------------------------------

SYSTEM = (
    "Your input fields are:\n1. `text` (str):\nYour output fields are:\n1. `answer` (str):\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
    "[[ ## text ## ]]\n{text}\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\n"
    "In adhering to this structure, your objective is: \n        Given the fields `text`, produce the fields `answer`."
)
REMINDER = (
    "Respond with the corresponding output fields, starting with the field `[[ ## answer ## ]]`, "
    "and then ending with the marker for `[[ ## completed ## ]]`."
)


def bare_messages(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"[[ ## text ## ]]\n{text}\n\n{REMINDER}"},
    ]


async def bare_run(port: int, examples: list[Example], concurrency: int) -> tuple[float, float]:
    import aiohttp
    import orjson

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    slots = asyncio.Semaphore(concurrency)
    scores: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(example: Example) -> None:
            body = orjson.dumps({"model": "bench", "messages": bare_messages(example["text"])})
            async with slots, session.post(url, data=body, headers=headers) as reply:
                content = orjson.loads(await reply.read())["choices"][0]["message"]["content"]
            answer = content.split("[[ ## answer ## ]]", 1)[1].split("[[ ## ", 1)[0].strip()
            scores.append(float(answer == example["answer"]))

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(example) for example in examples))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sum(scores) == len(examples), sum(scores)
    return seconds, cpu


# ----- DSPy --------------------------------------------------------------------------------------


def dspy_python() -> Path:
    """The DSPy venv's interpreter, made (once) with `python -m venv` and pip."""
    python = DSPY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('dspy'))"]
    if python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == DSPY_VERSION:
        return python
    print(f"making a DSPy {DSPY_VERSION} venv in {DSPY_VENV} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(DSPY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"dspy=={DSPY_VERSION}"], check=True)
    return python


class DSPyContender:
    """benchmarks/dspy_evaluate.py in the DSPy venv, kept running: one `run N` line per timing."""

    def __init__(self, port: int, count: int) -> None:
        script = Path(__file__).with_name("dspy_evaluate.py")
        self.process = subprocess.Popen(
            [str(dspy_python()), str(script), str(port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},  # dspy only: no dspx on its path
        )
        self.messages = json.loads(self._line())
        if self._line() != "ready":
            raise RuntimeError("the DSPy contender did not start")

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the DSPy contender exited ({self.process.wait()})")
        return line.strip()

    def run(self, concurrency: int) -> tuple[float, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {concurrency}\n")
        self.process.stdin.flush()
        seconds, cpu, score = self._line().split()
        assert float(score) == 1.0, score
        return float(seconds), float(cpu)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


# ----- the run -----------------------------------------------------------------------------------


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--compare", action="store_true", help=f"also DSPy {DSPY_VERSION} (a venv made once)")
    parser.add_argument("--httpx", action="store_true", help="also dspx over httpx's own pool (slow)")
    args = parser.parse_args()

    with echo_program(args.latency) as (port, program):
        scratch = program.parent  # the program's temporary folder also holds the history
        examples = [Example(text=f"t{i}", answer=f"T{i}").with_inputs("text") for i in range(args.examples)]
        expected = dspx_messages(program)
        assert bare_messages("t0") == expected, "the bare client's prompt differs from dspx's"
        contenders: dict[str, Callable[[int], tuple[float, float]]] = {
            "bare": lambda c: asyncio.run(bare_run(port, examples, c)),
            "dspx": lambda c: asyncio.run(dspx_run(program, examples, c, scratch)),
        }
        dspy: DSPyContender | None = None
        if args.compare:
            dspy = DSPyContender(port, args.examples)
            assert dspy.messages == expected, "DSPy's prompt differs from dspx's"
            contenders["dspy"] = dspy.run
        if args.httpx:

            def over_httpx(concurrency: int) -> tuple[float, float]:
                os.environ["DSPX_HTTP_TRANSPORT"] = "httpx"
                try:
                    return asyncio.run(dspx_run(program, examples, concurrency, scratch))
                finally:
                    del os.environ["DSPX_HTTP_TRANSPORT"]

            contenders["dspx-httpx"] = over_httpx
        names = list(contenders)
        print(
            f"{args.examples} examples, {args.latency * 1000:.0f} ms server latency, cache off, "
            f"{args.rounds} rounds (+1 warm-up); load average before: {load_average()}"
        )
        times: dict[tuple[str, int], list[float]] = {}
        cpus: dict[tuple[str, int], list[float]] = {}
        try:
            for round_ in range(args.rounds + 1):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for concurrency in args.in_flight:
                    for name in order:
                        seconds, cpu = contenders[name](concurrency)
                        if round_:  # round 0 warms up: imports, first connections, caches
                            times.setdefault((name, concurrency), []).append(seconds)
                            cpus.setdefault((name, concurrency), []).append(cpu)
        finally:
            if dspy is not None:
                dspy.close()
        report(args, names, times, cpus)


def report(
    args: argparse.Namespace,
    names: list[str],
    times: dict[tuple[str, int], list[float]],
    cpus: dict[tuple[str, int], list[float]],
) -> None:
    print(f"load average after: {load_average()}")
    print(
        f"{'contender':>10} {'in flight':>9} {'median s':>9} {'min':>6} {'max':>6} {'% ideal':>8} "
        f"{'client CPU per example':>23}"
    )
    for concurrency in args.in_flight:
        ideal = args.examples * args.latency / concurrency
        for name in names:
            runs = times[(name, concurrency)]
            median = statistics.median(runs)
            cpu = statistics.median(cpus[(name, concurrency)]) / args.examples * 1e6
            print(
                f"{name:>10} {concurrency:>9} {median:9.2f} {min(runs):6.2f} {max(runs):6.2f} {ideal / median:8.1%} "
                f"{cpu:20.0f} us"
            )
    figures = []
    for concurrency in args.in_flight:
        bare = times[("bare", concurrency)]
        ratios = [d / b for d, b in zip(times[("dspx", concurrency)], bare, strict=True)]
        figures.append(
            Figure(
                f"dspx / bare aiohttp, {concurrency} in flight",
                statistics.median(ratios),
                "x",
                TARGET_BARE if concurrency in (64, 256) else None,
                f"bare {statistics.median(bare):.2f} s",
            )
        )
        if "dspy" in names:
            dspy = times[("dspy", concurrency)]
            ratios = [d / s for d, s in zip(times[("dspx", concurrency)], dspy, strict=True)]
            figures.append(
                Figure(
                    f"dspx / DSPy {DSPY_VERSION}, {concurrency} in flight",
                    statistics.median(ratios),
                    "x",
                    TARGET_DSPY if concurrency == 256 else None,
                    f"DSPy {statistics.median(dspy):.2f} s",
                )
            )
    print_table(figures)


if __name__ == "__main__":
    main()
