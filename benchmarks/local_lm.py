"""The embedded model through dspx vs. llama-cpp-python called directly with the same messages.

    python benchmarks/local_lm.py [--prompts 12] [--rounds 3]

Both sides run the same few-shot prompts (programs/sentiment.yaml on reviews from
datasets/sentiment/dev.jsonl), greedy, same context size and threads. Target: dspx within 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from dspx_cli.lm import local_gguf
from dspx_cli.program.context import RunContext
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import llama_cpp

    program = load_program(ROOT / "programs" / "sentiment.yaml", lm_override="local/smollm2")
    rows = [json.loads(line) for line in (ROOT / "datasets" / "sentiment" / "dev.jsonl").open()][: args.prompts]
    inputs = [{"review": row["review"]} for row in rows]
    module = program.modules["classify"]
    max_tokens = module.max_tokens or local_gguf.DEFAULT_MAX_TOKENS

    started = time.perf_counter()
    context = RunContext(base_dir=program.base_dir)
    runner = ProgramRunner(program, context)
    asyncio.run(runner.run(inputs[0]))  # loads the model and warms it
    dspx_load = time.perf_counter() - started

    path = local_gguf.embedded_model_path()
    started = time.perf_counter()
    llama = llama_cpp.Llama(str(path), n_ctx=local_gguf.MAX_CONTEXT, n_threads=os.cpu_count(), verbose=False)
    direct_load = time.perf_counter() - started
    messages = [runner.preview(one)[0][1] for one in inputs]
    llama.create_chat_completion(messages[0], temperature=0.0, max_tokens=max_tokens)  # warm, like dspx

    async def through_dspx() -> list[str]:
        return [str((await runner.run(one)).outputs["sentiment"]) for one in inputs]

    def direct() -> list[str]:
        replies = []
        for one in messages:
            reply = llama.create_chat_completion(one, temperature=0.0, max_tokens=max_tokens)
            replies.append(reply["choices"][0]["message"]["content"])
        return replies

    dspx_times, direct_times = [], []
    answers: list[str] = []
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits both sides
        t0 = time.perf_counter()
        answers = asyncio.run(through_dspx())
        dspx_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        replies = direct()
        direct_times.append(time.perf_counter() - t0)

    correct = sum(a == row["sentiment"] for a, row in zip(answers, rows, strict=True))
    parsed_direct = sum("[[ ## sentiment ## ]]" in r for r in replies)
    dspx_s, direct_s = statistics.median(dspx_times), statistics.median(direct_times)
    ratio = dspx_s / direct_s
    print(f"embedded model {path.name}, {len(inputs)} few-shot prompts (4 demos), median of {args.rounds} rounds")
    print(f"load + first call: dspx {dspx_load:.2f} s, direct load {direct_load:.2f} s")
    print(f"direct llama-cpp-python : {direct_s:7.2f} s  ({direct_s / len(inputs) * 1000:.0f} ms/prompt)")
    print(f"through dspx (run)      : {dspx_s:7.2f} s  ({dspx_s / len(inputs) * 1000:.0f} ms/prompt)")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"ratio dspx/direct       : {ratio:7.3f}   target <= {TARGET_RATIO:.2f}  {verdict}")
    print(
        f"answers: dspx {correct}/{len(rows)} correct; direct replies in the field format: {parsed_direct}/{len(rows)}"
    )


if __name__ == "__main__":
    main()
