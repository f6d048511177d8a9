"""DSPy 3.4.1's MIPROv2 trial loop, measured for benchmarks/mipro_overhead.py --compare. Runs inside
the DSPy venv (~/.cache/dspx-bench/dspy-3.4.1, with optuna 5.0.0 installed in it); it imports dspy,
never dspx, and the project does not depend on dspy.

    DSPY_VENV/bin/python benchmarks/dspy_mipro.py PORT TRIALS VAL INSTRUCTIONS DEMO_SETS SEED

The same search as the dspx side: `dspy.Predict("text -> answer")` with DSPy's ChatAdapter, LM
`openai/bench` at the loopback stub server with every cache and retry off, the exact-match metric,
INSTRUCTIONS instruction candidates and DEMO_SETS demo sets (the same strings and demos as dspx's),
minibatch off, VAL validation examples, TRIALS trials. DSPy's setup (bootstrapping demos and
proposing instructions) is skipped: the candidates are handed to `MIPROv2._optimize_prompt_parameters`
directly, as dspx's benchmark hands its candidates to the search. Inside that, only
`study.optimize` (the trial loop) is timed; the time spent in `Evaluate.__call__` (program runs,
HTTP, metric, DSPy's thread pool) during it is subtracted. What is left per trial is DSPy's
overhead: optuna's ask/tell on its in-memory storage (DSPy offers no other), the deepcopies of the
candidate program, setting instructions and demos, and its trial logs. Prints one JSON line:
{"overhead_ms": ..., "evaluating_ms": ..., "score": ...}, both per trial.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of litellm's price list

import dspy
import optuna
from dspy.teleprompt import MIPROv2


def main() -> None:
    port, trials, val, instructions, demo_sets, seed = (int(arg) for arg in sys.argv[1:7])
    # DSPy logs every trial at INFO; that is terminal output, not search work, and would be
    # written to a pipe here: quiet it so the figure is the search's own cost.
    logging.getLogger("dspy").setLevel(logging.WARNING)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/bench", api_base=f"http://127.0.0.1:{port}/v1", api_key="none", cache=False, num_retries=0)
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter())
    program = dspy.Predict("text -> answer")
    valset = [dspy.Example(text=f"t{i}", answer=f"T{i}").with_inputs("text") for i in range(val)]

    def metric(example: dspy.Example, prediction: dspy.Prediction, trace: object = None) -> float:
        return float(example.answer == prediction.answer)

    # The candidates dspx's side uses (benchmarks/mipro_overhead.py: candidates()).
    instruction_candidates = {0: [f"Repeat the text in capitals ({i})." for i in range(instructions)]}
    demo_candidates = {
        0: [
            [dspy.Example(text=f"d{s}-{k}", answer=f"D{s}-{k}").with_inputs("text") for k in range(s % 4)]
            for s in range(demo_sets)
        ]
    }

    # Evaluation time, accumulated around DSPy's own Evaluate, only while the trial loop runs.
    inside: dict[str, Any] = {"loop": False, "seconds": 0.0, "calls": 0}
    evaluate_call = dspy.Evaluate.__call__

    def timed_evaluate(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return evaluate_call(self, *args, **kwargs)
        finally:
            if inside["loop"]:
                inside["seconds"] += time.perf_counter() - started
                inside["calls"] += 1

    dspy.Evaluate.__call__ = timed_evaluate  # type: ignore[method-assign]

    # The trial loop is DSPy's one `study.optimize` call; the default program's evaluation and the
    # study's creation before it are not trials (dspx's figure leaves out its baseline too).
    loop = {"seconds": 0.0}
    optimize = optuna.study.Study.optimize

    def timed_optimize(self: Any, *args: Any, **kwargs: Any) -> Any:
        inside["loop"] = True
        started = time.perf_counter()
        try:
            return optimize(self, *args, **kwargs)
        finally:
            loop["seconds"] += time.perf_counter() - started
            inside["loop"] = False

    optuna.study.Study.optimize = timed_optimize  # type: ignore[method-assign]

    optimizer = MIPROv2(metric=metric, auto=None, num_candidates=demo_sets, num_threads=16, seed=seed)
    optimizer.rng = random.Random(seed)  # what compile() sets before the search
    evaluate = dspy.Evaluate(
        devset=valset, metric=metric, num_threads=16, max_errors=val, display_table=False, display_progress=False
    )
    best = optimizer._optimize_prompt_parameters(
        program.deepcopy(),
        instruction_candidates,
        demo_candidates,
        evaluate,
        valset,
        trials,
        False,  # minibatch
        35,
        5,
        seed,
    )
    # One evaluation per trial, none elsewhere in the loop: else the figure would not be per trial.
    assert inside["calls"] == trials, (inside["calls"], trials)
    print(
        json.dumps(
            {
                "overhead_ms": (loop["seconds"] - inside["seconds"]) / trials * 1000,
                "evaluating_ms": inside["seconds"] / trials * 1000,
                "score": float(best.score),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
