"""MIPROv2's search overhead per trial, LM time excluded: what dspx adds around each evaluation.

    python benchmarks/mipro_overhead.py [--compare] [--trials 30] [--val 4] [--storage sqlite|memory]

A one-module program against the loopback stub server (benchmarks/latency_server.py, answering at
once), the LM cache off, 3 instruction candidates and 6 demo sets. The search (optimizers/
mipro_search.py) runs `--trials` objective trials on its optuna study; the time spent inside the
evaluations (program runs, HTTP, metric) is subtracted, leaving per trial: optuna's ask/tell and
storage, dspx's bookkeeping (trial attributes, the best-so-far, the trial record) and building the
candidate program. Beside it, a direct measurement of optuna alone: the same sampler, parameters
and storage, ask/suggest/tell with a constant score, nothing else.

`--compare` adds a direct measurement of DSPy 3.4.1's MIPROv2 in the same run: benchmarks/
dspy_mipro.py in the DSPy venv that benchmarks/evaluate_throughput.py --compare makes under
~/.cache/dspx-bench/dspy-3.4.1 (optuna 5.0.0 is pip-installed into it here if missing; dspx never
depends on dspy). It runs DSPy's own trial loop (`MIPROv2._optimize_prompt_parameters`, handed the
same candidates, so DSPy's bootstrapping and proposing are left out as dspx's are) against the
same server, times `study.optimize` and subtracts the time inside `dspy.Evaluate`. DSPy's study is
always in memory, so its figure compares directly with `--storage memory`; beside SQLite storage
the ratio also counts the database.

No target: issue 14 asks for the figure beside DSPy's or a direct measurement, and DSPy states no
per-trial figure; optuna alone and (with --compare) DSPy measured are the baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table  # noqa: E402
from benchmarks.latency_server import echo_program  # noqa: E402
from dspx_cli.core import Example  # noqa: E402
from dspx_cli.evaluate.metrics import resolve_metric  # noqa: E402
from dspx_cli.lm.cache import CacheMode  # noqa: E402
from dspx_cli.optimizers.mipro import _scorer  # noqa: E402
from dspx_cli.optimizers.mipro_plan import plan_mipro  # noqa: E402
from dspx_cli.optimizers.mipro_search import Candidates, TrialSearch  # noqa: E402
from dspx_cli.optimizers.study import _storage, open_study  # noqa: E402
from dspx_cli.program.context import RunContext  # noqa: E402
from dspx_cli.program.loader import load_program  # noqa: E402
from dspx_cli.program.runner import ProgramRunner  # noqa: E402

INSTRUCTIONS, DEMO_SETS, SEED = 3, 6, 9
OPTUNA_VERSION = "5.0.0"


def candidates() -> Candidates:
    demos = [[{"text": f"d{s}-{k}", "answer": f"D{s}-{k}"} for k in range(s % 4)] for s in range(DEMO_SETS)]
    return Candidates(
        ["echo"], {"echo": [f"Repeat the text in capitals ({i})." for i in range(INSTRUCTIONS)]}, {"echo": demos}
    )


async def search_overhead(
    program_path: Path, trials: int, val: int, storage: str, scratch: Path
) -> tuple[float, float]:
    """(ms per trial outside the evaluations, ms per trial inside them)."""
    program = load_program(program_path)
    context = RunContext(
        base_dir=program.base_dir, cache_dir=scratch / "cache", cache_mode=CacheMode.OFF, history=False
    )
    runner = ProgramRunner(program, context)
    metric = resolve_metric(program, context)
    valset = [Example(text=f"t{i}", answer=f"T{i}").with_inputs("text") for i in range(val)]
    plan = plan_mipro(
        {"auto": None, "num_candidates": DEMO_SETS, "num_trials": trials, "minibatch": False},
        1,
        val,
        random.Random(SEED),
    )
    handle = open_study(
        run_dir=scratch / "run" if storage == "sqlite" else None, storage=None, name="bench", seed=SEED, resume=False
    )
    score = _scorer(metric, 16, None, lambda text: None)
    inside = 0.0

    async def timed(candidate: ProgramRunner, examples: Sequence[Example]) -> float:
        nonlocal inside
        started = time.perf_counter()
        try:
            return await score(candidate, examples)
        finally:
            inside += time.perf_counter() - started

    search = TrialSearch(handle, plan, candidates(), runner, valset, timed, seed=SEED, rng=random.Random(SEED))
    await search.run_baseline()
    inside = 0.0  # the baseline is not a trial
    started = time.perf_counter()
    await search.run()
    total = time.perf_counter() - started
    await context.aclose()
    return (total - inside) / trials * 1000, inside / trials * 1000


def optuna_alone(trials: int, storage: str, scratch: Path) -> float:
    """ms per trial of ask, two suggestions and tell on the same sampler and storage."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The same storage as the search's (study.py: SQLite in WAL mode), or optuna's in-memory one.
    url = _storage(f"sqlite:///{scratch / 'alone.db'}") if storage == "sqlite" else None
    study = optuna.create_study(
        direction="maximize", storage=url, sampler=optuna.samplers.TPESampler(seed=SEED, multivariate=True)
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"0_predictor_instruction": 0, "0_predictor_demos": 0},
            distributions={
                "0_predictor_instruction": CategoricalDistribution(list(range(INSTRUCTIONS))),
                "0_predictor_demos": CategoricalDistribution(list(range(DEMO_SETS))),
            },
            value=50.0,
        )
    )
    rng = random.Random(0)
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        trial.suggest_categorical("0_predictor_instruction", list(range(INSTRUCTIONS)))
        trial.suggest_categorical("0_predictor_demos", list(range(DEMO_SETS)))
        study.tell(trial, round(rng.random() * 100, 2))
    return (time.perf_counter() - started) / trials * 1000


def dspy_overhead(port: int, trials: int, val: int) -> tuple[float, float]:
    """DSPy's (ms per trial outside the evaluations, ms per trial inside them), from its venv."""
    from benchmarks.evaluate_throughput import dspy_python

    python = dspy_python()
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('optuna'))"]
    if subprocess.run(probe, capture_output=True, text=True).stdout.strip() != OPTUNA_VERSION:
        # MIPROv2 needs optuna, which `pip install dspy` leaves out; the version dspx pins.
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"optuna=={OPTUNA_VERSION}"], check=True)
    script = Path(__file__).with_name("dspy_mipro.py")
    command = [str(python), str(script), str(port), str(trials), str(val), str(INSTRUCTIONS), str(DEMO_SETS), str(SEED)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},  # dspy only: no dspx on its path
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks/dspy_mipro.py failed ({done.returncode}):\n{done.stderr}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["overhead_ms"]), float(figures["evaluating_ms"])


def main() -> None:
    import warnings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="also DSPy 3.4.1's MIPROv2 (its own venv)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--storage", choices=("sqlite", "memory"), default="sqlite")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # optuna's ExperimentalWarning for multivariate TPE
    with echo_program(0.0) as (port, program), tempfile.TemporaryDirectory() as scratch:
        overhead, evaluating = asyncio.run(search_overhead(program, args.trials, args.val, args.storage, Path(scratch)))
        alone = optuna_alone(args.trials, args.storage, Path(scratch))
        dspy = dspy_overhead(port, args.trials, args.val) if args.compare else None
    print(
        f"MIPROv2 search, {args.trials} trials, 1 predictor ({INSTRUCTIONS} instructions x {DEMO_SETS} demo sets), "
        f"{args.val} val examples, instant server, cache off, {args.storage} storage"
    )
    baseline = f"optuna alone {alone:.1f} ms"
    if dspy is not None:
        baseline += f"; DSPy (in memory) {dspy[0]:.1f} ms, dspx/DSPy {overhead / dspy[0]:.2f}"
    figures = [
        Figure("dspx search per trial, evaluation excluded", overhead, "ms", None, baseline),
        Figure("optuna alone per trial (ask/suggest/tell)", alone, "ms"),
    ]
    if dspy is not None:
        figures.append(Figure("DSPy 3.4.1 per trial, evaluation excluded", dspy[0], "ms", None, "in-memory study"))
    figures.append(Figure("dspx evaluation per trial (not overhead)", evaluating, "ms"))
    if dspy is not None:
        figures.append(Figure("DSPy evaluation per trial (not overhead)", dspy[1], "ms"))
    print_table(figures)
    print(
        "target: no target (issue 14 gives none; DSPy states no per-trial figure): "
        + ("optuna alone and DSPy measured are the baselines" if dspy else "optuna alone is the baseline")
    )


if __name__ == "__main__":
    main()
