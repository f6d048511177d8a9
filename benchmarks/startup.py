"""Start-up cost of one `dspx` call from a shell, beside `python -c pass` in the same run.

    python benchmarks/startup.py [--runs 15] [--examples 20]

Every figure is the median over --runs fresh processes; the commands take turns in each round
(shuffled), so load from other work on the machine falls on all of them alike. Printed per figure:
wall and CPU medians (ms), the ratio to `python -c pass`, the spread of the runs (interquartile
range / median), and the target. Figures and targets:

- `dspx --help` <= 100 ms; `dspx validate sentiment.yaml` <= 150 ms;
- `dspx run` of one input against a loopback server that answers at once (cache off) <= 250 ms;
- `dspx evaluate`'s fixed cost <= 300 ms: the process's wall time minus the loop it reports
  ("seconds" in its summary). The loop includes whatever the first calls import, so the intercept
  of two dataset sizes (N and 4N examples: wall_N - (wall_4N - wall_N) / 3) is printed beside it.

A figure that is zero or negative is a broken measurement, never "met".

Every process runs with its bytecode cached, as an installed dspx runs (pip compiles on install): a
PYTHONDONTWRITEBYTECODE in the environment would make each run compile dspx_cli from source again
(~50 ms), so the children write their caches under a scratch PYTHONPYCACHEPREFIX instead (filled by
the warm-up round, and leaving the source tree alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_server import echo_program

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    name: str
    command: list[str]
    target_ms: float | None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    loops: list[float] = field(default_factory=list)  # evaluate: the loop time it reports
    summary: Path | None = None

    def measure(self, env: dict[str, str]) -> None:
        if self.summary is not None:
            self.summary.unlink(missing_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(self.command, capture_output=True, text=True, env=env)
        wall = (time.perf_counter() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"{self.name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        self.walls.append(wall)
        self.cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        if self.summary is not None:
            self.loops.append(json.loads(self.summary.read_text())["seconds"] * 1000)


def spread(values: list[float]) -> float:
    """Interquartile range over the median: how much the runs of one figure disagreed."""
    if len(values) < 4:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) / statistics.median(values)


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    if value <= 0:
        return f"<= {target:.0f} ms  BROKEN (a figure <= 0 measures nothing)"
    return f"<= {target:.0f} ms  {'met' if value <= target else 'MISSED'}"


def dspx_command() -> list[str]:
    # The script next to this interpreter, not a PATH lookup: version-manager shims (pyenv) add
    # ~100 ms of bash to every launch, which says nothing about dspx.
    script = Path(sysconfig.get_path("scripts")) / "dspx"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dspx_cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--examples", type=int, default=20, help="evaluate's dataset size N (and 4N)")
    args = parser.parse_args()

    dspx = dspx_command()
    env_note = f"PYTHONPATH={os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else "installed dspx_cli"
    load_before = os.getloadavg()
    with echo_program(0.0) as (_port, program), tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        datasets = {}
        for size in (args.examples, 4 * args.examples):
            datasets[size] = folder / f"data{size}.jsonl"
            datasets[size].write_text(
                "".join(json.dumps({"text": f"q\nitem {i}", "answer": f"ITEM {i}"}) + "\n" for i in range(size))
            )

        def evaluate(size: int) -> list[str]:
            run_folder = folder / f"run{size}"
            data = str(datasets[size])
            return [*dspx, "evaluate", str(program), "--dataset", data, "--no-cache", "--output", str(run_folder)]

        figures = [
            Figure("python -c pass", [sys.executable, "-c", "pass"], None),
            Figure("dspx --help", [*dspx, "--help"], 100.0),
            Figure("dspx validate sentiment.yaml", [*dspx, "validate", str(ROOT / "programs/sentiment.yaml")], 150.0),
            Figure(
                "dspx run (1 call, loopback)", [*dspx, "run", str(program), "-i", "text=q\nhello", "--no-cache"], 250
            ),
            Figure(f"dspx evaluate ({args.examples} ex.)", evaluate(args.examples), None),
            Figure(f"dspx evaluate ({4 * args.examples} ex.)", evaluate(4 * args.examples), None),
        ]
        figures[-2].summary = folder / f"run{args.examples}" / "summary.json"
        figures[-1].summary = folder / f"run{4 * args.examples}" / "summary.json"
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
        for figure in figures:  # warm the OS file cache and the bytecode caches
            figure.measure(env)
            figure.walls.clear(), figure.cpus.clear(), figure.loops.clear()
        order = list(figures)
        for _ in range(args.runs):
            random.shuffle(order)
            for figure in order:
                figure.measure(env)
    load_after = os.getloadavg()

    median: Callable[[list[float]], float] = statistics.median
    baseline = median(figures[0].walls)
    baseline_cpu = median(figures[0].cpus)
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC · median of {args.runs} runs · {sys.executable}")
    print(f"{' '.join(dspx)} ({env_note}) · {os.cpu_count()} cores · load {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'figure':32} {'wall ms':>8} {'x pass':>7} {'cpu ms':>7} {'spread':>7}  target")
    for figure in figures:
        wall = median(figure.walls)
        print(
            f"{figure.name:32} {wall:8.1f} {wall / baseline:7.2f} {median(figure.cpus):7.1f} "
            f"{spread(figure.walls):7.0%}  {verdict(wall, figure.target_ms)}"
        )
    small, large = figures[-2], figures[-1]
    fixed = [wall - loop for wall, loop in zip(small.walls, small.loops, strict=True)]
    print(
        f"{'dspx evaluate fixed cost':32} {median(fixed):8.1f} {median(fixed) / baseline:7.2f} {'':7} "
        f"{spread(fixed):7.0%}  {verdict(median(fixed), 300.0)}  (wall - reported loop, {args.examples} ex.)"
    )
    intercept = median(small.walls) - (median(large.walls) - median(small.walls)) / 3
    print(
        f"{'  same, by intercept':32} {intercept:8.1f} {intercept / baseline:7.2f} {'':7} {'':7}  "
        f"{verdict(intercept, 300.0)}  (wall of {args.examples} ex. minus 1/3 of the {4 * args.examples}-ex. extra)"
    )
    print(f"baseline python -c pass: {baseline:.1f} ms wall, {baseline_cpu:.1f} ms cpu")
    cores = os.cpu_count() or 1
    if max(load_before[0], load_after[0]) > cores:
        # Processes queue for a core: wall times grow with the queue, CPU times much less.
        print(
            f"note: the machine was busy (load above {cores} cores): wall figures include waiting for a "
            "core; cpu ms (user + system of each process) is the steadier figure"
        )


if __name__ == "__main__":
    main()
