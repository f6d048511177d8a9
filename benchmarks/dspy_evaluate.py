"""DSPy 3.4.1's Evaluate as a contender for benchmarks/evaluate_throughput.py. Runs inside the
DSPy venv that benchmark makes (it imports dspy, never dspx); the project does not depend on dspy.

    DSPY_VENV/bin/python benchmarks/dspy_evaluate.py PORT EXAMPLES

The same work as the other contenders: `dspy.Predict("text -> answer")` with DSPy's ChatAdapter
(the prompt dspx formats byte for byte), LM `openai/bench` at the loopback server with its cache
and retries off, the exact-match metric on `answer`, and `dspy.Evaluate` with `num_threads` = the
examples in flight. It prints the first example's messages as JSON (the parent checks they are
the ones dspx sends), then `ready`; then for each line `run N` on stdin it evaluates the examples
with N threads and prints `seconds cpu_seconds score`, timing only the Evaluate call.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of litellm's price list

import dspy


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    logging.getLogger("dspy").setLevel(logging.WARNING)  # no "Average Metric" line per run
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/bench", api_base=f"http://127.0.0.1:{port}/v1", api_key="none", cache=False, num_retries=0)
    adapter = dspy.ChatAdapter()
    dspy.configure(lm=lm, adapter=adapter)
    program = dspy.Predict("text -> answer")
    examples = [dspy.Example(text=f"t{i}", answer=f"T{i}").with_inputs("text") for i in range(count)]

    def metric(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> float:
        return float(example.answer == prediction.answer)

    first = adapter.format(program.signature, demos=[], inputs={"text": "t0"})
    print(json.dumps(first), flush=True)
    print("ready", flush=True)
    for line in sys.stdin:
        threads = int(line.split()[1])
        evaluator = dspy.Evaluate(
            devset=examples,
            metric=metric,
            num_threads=threads,
            display_progress=False,
            display_table=False,
            max_errors=count,
        )
        started, cpu = time.perf_counter(), time.process_time()
        result = evaluator(program)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        lm.history.clear()  # DSPy keeps every call in memory; a fresh process would start empty
        print(f"{seconds:.4f} {cpu:.4f} {float(result.score) / 100:.4f}", flush=True)


if __name__ == "__main__":
    main()
