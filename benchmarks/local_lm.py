"""The embedded model: where a call's time goes, through dspx and through llama-cpp-python directly.

    python benchmarks/local_lm.py [--reviews 4] [--rounds 2] [--programs]

Everything runs with the cache off (every call generates), greedy, in one process, so each figure
sits beside a baseline from the same run:

1. dspx vs llama-cpp-python called directly with the same messages and settings (few-shot
   sentiment prompts). Target: dspx within 10%.
2. Same-size calls within 2x of each other (slowest / fastest among one step's calls, the larger of
   the two steps; pooled beside it): triage's sentiment and aspect prompts (300-400 prompt tokens)
   alternating as the flow sends them, alone and with one busy background process. The
   baseline is llama-cpp-python as dspx configured it before (threads = all cores, no stop at
   `[[ ## completed ## ]]`, no saved prefixes; max_tokens 128 where triage had 512), in the same run.
3. A JSON-mode call (JSONAdapter's prompt, schema grammar) <= 1.5x the chat-mode call for the same
   inputs; the JSON prompt without its grammar shows what the grammar itself costs.
4. With --programs (instead of 1-3): `dspx evaluate programs/support.yaml --no-cache` (<= 60 s) and every shipped
   program's `dspx run` example on the embedded model with --no-cache (<= 15 s each), as processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table, spread  # noqa: E402
from dspx_cli.adapters import JSONAdapter  # noqa: E402
from dspx_cli.adapters.chat import COMPLETED_MARKER  # noqa: E402
from dspx_cli.lm import local_gguf  # noqa: E402
from dspx_cli.lm.base import LMRequest  # noqa: E402
from dspx_cli.lm.cache import CacheMode  # noqa: E402
from dspx_cli.lm.config import LMConfig  # noqa: E402
from dspx_cli.lm.core_share import CoreShare  # noqa: E402
from dspx_cli.program.context import RunContext  # noqa: E402
from dspx_cli.program.loader import load_program  # noqa: E402
from dspx_cli.program.runner import ProgramRunner  # noqa: E402

# The old settings ran to 512 tokens (triage set no max_tokens); capped so the baseline ends in minutes.
BEFORE_MAX = 128
RUN_EXAMPLES = [  # the README's `dspx run` examples on the embedded model
    ["programs/sentiment.yaml", "-i", "review=A warm, funny film with a terrific cast."],
    ["programs/qa.yaml", "-i", "question=What is the capital of Italy?"],
    ["programs/triage.yaml", "-i", "review=The songs were lovely but the plot dragged."],
    ["programs/rag.yaml", "-i", "question=Who painted the Mona Lisa?", "--trace"],
    ["programs/agent.yaml", "-i", "question=How many euros is 250 US dollars?", "--trace"],
    ["programs/inbox.yaml", "-i", "inbox=" + (ROOT / "datasets" / "inbox" / "example.txt").read_text()],
]


@contextmanager
def busy_process(on: bool) -> Iterator[None]:
    """One pure-Python busy loop beside the measurement: another process wanting a core."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def runner_for(name: str) -> ProgramRunner:
    program = load_program(ROOT / "programs" / name, lm_override="local/smollm2")
    return ProgramRunner(program, RunContext(base_dir=program.base_dir, cache_mode=CacheMode.OFF, history=False))


def dspx_vs_direct(llama: Any, reviews: list[str], rounds: int) -> list[Figure]:
    """Each round on reviews of its own: a repeated prompt would resume from its own saved state."""
    runner = runner_for("sentiment.yaml")
    max_tokens = runner.program.modules["classify"].max_tokens or local_gguf.DEFAULT_MAX_TOKENS
    warm, *rest = [{"review": review} for review in reviews]
    size = len(rest) // rounds
    batches = [rest[i * size : (i + 1) * size] for i in range(rounds)]
    asyncio.run(runner.run(warm))  # loads dspx's copy of the model and saves the few-shot prefix
    llama.create_chat_completion(
        runner.preview(warm)[0][1], temperature=0.0, max_tokens=max_tokens, stop=[COMPLETED_MARKER]
    )

    async def through_dspx(inputs: list[dict[str, str]]) -> None:
        for one in inputs:
            await runner.run(one)

    def direct(inputs: list[dict[str, str]]) -> None:
        for one in inputs:
            messages = runner.preview(one)[0][1]
            llama.create_chat_completion(messages, temperature=0.0, max_tokens=max_tokens, stop=[COMPLETED_MARKER])

    dspx_times, direct_times = [], []
    for index, batch in enumerate(batches):  # interleaved, so drift in machine load hits both sides
        first, second = batch, batches[(index + 1) % rounds]  # each side sees every batch once
        dspx_times.append(timed(lambda b=first: asyncio.run(through_dspx(b))))  # type: ignore[misc]
        direct_times.append(timed(lambda b=second: direct(b)))  # type: ignore[misc]
    ratio = statistics.median(dspx_times) / statistics.median(direct_times)
    print(f"  dspx run: {spread(dspx_times)}; direct: {spread(direct_times)} ({size} prompts per round)")
    return [
        Figure("dspx / direct, sentiment prompts", ratio, "x", 1.10, f"direct {statistics.median(direct_times):.2f} s")
    ]


def triage_requests(reviews: list[str]) -> list[LMRequest]:
    """Triage's first two steps as dspx sends them (the program's max_tokens included)."""
    runner = runner_for("triage.yaml")
    steps = [runner.modules["sentiment"], runner.modules["aspect"]]
    # sentiment and aspect alternate, as the flow runs them
    return [step.request({"review": review}) for review in reviews for step in steps]


def same_size_spread(
    requests: Sequence[LMRequest], warm: Sequence[LMRequest], busy: bool, before: Any
) -> tuple[list[float], list[float]]:
    """Each prompt is timed once: a repeated prompt would resume from its own saved state, a cache
    hit in all but name. `warm` (other reviews, untimed) saves each step's few-shot prefix first,
    the steady state of a batch or an evaluation."""
    lm = RunContext(cache_mode=CacheMode.OFF, history=False).lm(LMConfig("local/smollm2"))
    dspx_times: list[float] = []
    before_times: list[float] = []
    for request in warm:
        asyncio.run(lm.complete(request))
        before.create_chat_completion(list(request.messages), temperature=0.0, max_tokens=BEFORE_MAX)
    with busy_process(busy):
        time.sleep(1.0)  # the busy process is running before the first timed call
        for request in requests:
            dspx_times.append(timed(lambda r=request: asyncio.run(lm.complete(r))))  # type: ignore[misc]
            messages = list(request.messages)
            before_times.append(
                timed(lambda m=messages: before.create_chat_completion(m, temperature=0.0, max_tokens=BEFORE_MAX))  # type: ignore[misc]
            )
    return dspx_times, before_times


def _ratio(times: Sequence[float]) -> float:
    return max(times) / min(times)


def json_vs_chat(reviews: list[str]) -> list[Figure]:
    runner = runner_for("triage.yaml")
    predict = runner.modules["sentiment"]
    lm = RunContext(cache_mode=CacheMode.OFF, history=False).lm(LMConfig("local/smollm2"))
    chat: list[float] = []
    json_mode: list[float] = []
    json_free: list[float] = []
    # Every review once (a repeated prompt would resume from its own saved state). The JSON prompt
    # with its grammar and without it take turns, so neither reads the other's whole prompt.
    for index, review in enumerate(reviews):
        inputs = {"review": review}
        json_request = predict.request(inputs, JSONAdapter())
        if index % 2:
            json_request = LMRequest(json_request.messages, json_request.temperature, json_request.max_tokens)
        for request, out in ((predict.request(inputs), chat), (json_request, json_free if index % 2 else json_mode)):
            out.append(timed(lambda r=request: asyncio.run(lm.complete(r))))  # type: ignore[misc]
    chat_s = statistics.median(chat)
    print(f"  chat: {spread(chat)}; JSON + grammar: {spread(json_mode)}; JSON prompt, no grammar: {spread(json_free)}")
    return [
        Figure(
            "JSON mode (schema grammar) / chat", statistics.median(json_mode) / chat_s, "x", 1.5, f"chat {chat_s:.2f} s"
        ),
        Figure("JSON prompt without grammar / chat", statistics.median(json_free) / chat_s, "x", None, ""),
    ]


def process_figures() -> list[Figure]:
    dspx = str(Path(sysconfig.get_path("scripts")) / "dspx")
    python_s = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    baseline = f"python -c pass {python_s:.2f} s"
    figures = []
    evaluate = [dspx, "evaluate", "programs/support.yaml", "--no-cache"]
    figures.append(Figure("dspx evaluate support.yaml, cold", _run(evaluate), "s", 60, baseline))
    for example in RUN_EXAMPLES:
        figures.append(
            Figure(f"dspx run {Path(example[0]).name}", _run([dspx, "run", *example, "--no-cache"]), "s", 15, baseline)
        )
    return figures


def _run(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 3):
        print(f"  {' '.join(command[1:])} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--programs", action="store_true", help="time dspx evaluate and dspx run processes instead")
    args = parser.parse_args()

    if args.programs:
        print_table(process_figures())
        return

    import llama_cpp

    rows = [json.loads(line) for line in (ROOT / "datasets" / "triage" / "dev.jsonl").open()]
    reviews = [row["review"] for row in rows][: args.reviews * args.rounds + 1]
    path = local_gguf.embedded_model_path()
    print(f"{path.name}; {os.cpu_count()} cores, threads follow the free cores (as dspx's); cache off throughout")
    same = llama_cpp.Llama(str(path), n_ctx=local_gguf.MAX_CONTEXT, verbose=False)
    same.set_cache(local_gguf.prefix_cache(llama_cpp))  # as dspx does
    share = CoreShare()
    same_calls = same.create_chat_completion

    def with_free_cores(*args: Any, **kwargs: Any) -> Any:  # as dspx does before every call
        threads = share.threads()
        llama_cpp.llama_set_n_threads(same.ctx, threads, threads)
        return same_calls(*args, **kwargs)

    same.create_chat_completion = with_free_cores
    before = llama_cpp.Llama(str(path), n_ctx=local_gguf.MAX_CONTEXT, n_threads=os.cpu_count(), verbose=False)

    figures = dspx_vs_direct(same, reviews, args.rounds)
    # Same-size calls: triage's two first steps on sentiment reviews, a different review for every call.
    others = [json.loads(line)["review"] for line in (ROOT / "datasets" / "sentiment" / "dev.jsonl").open()]
    per_phase = args.reviews * args.rounds
    warm = triage_requests(others[-1:])
    for phase, busy in enumerate((False, True)):
        label = "one busy process" if busy else "alone"
        requests = triage_requests(others[phase * per_phase : (phase + 1) * per_phase])
        dspx_times, before_times = same_size_spread(requests, warm, busy, before)
        print(f"  same-size calls, {label}: dspx {spread(dspx_times)}; before {spread(before_times)}")
        # Same size: one step's prompt (its demos, a different review) and its short answer. The two
        # steps differ in demos (2 and 4) and answers, so each step's calls are compared among
        # themselves; the pooled ratio is printed beside it.
        figures.append(
            Figure(
                f"same-size calls slowest/fastest, {label}",
                max(_ratio(dspx_times[0::2]), _ratio(dspx_times[1::2])),
                "x",
                2.0,
                f"both steps pooled {_ratio(dspx_times):.2f}x; before (all cores, no stop): "
                f"{max(_ratio(before_times[0::2]), _ratio(before_times[1::2])):.1f}x",
            )
        )
        figures.append(
            Figure(
                f"  median call, {label}",
                statistics.median(dspx_times),
                "s",
                None,
                f"before: {statistics.median(before_times):.2f} s",
            )
        )
    figures += json_vs_chat([row["review"] for row in rows])  # all 12, each once
    print_table(figures)


if __name__ == "__main__":
    main()
