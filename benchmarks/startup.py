"""Start-up time of the CLI: `dspx --help` and `dspx validate` against `python -c pass`.

    python benchmarks/startup.py [--runs 15]

Median wall time of fresh processes; target: `dspx --help` <= 150 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_HELP_MS = 150.0


def median_ms(command: list[str], runs: int) -> float:
    subprocess.run(command, capture_output=True, check=True)  # warm the OS file cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    # The script next to this interpreter, not a PATH lookup: version-manager shims (pyenv) add
    # ~200 ms of bash to every launch, which says nothing about dspx.
    dspx = str(Path(sysconfig.get_path("scripts")) / "dspx")
    if not Path(dspx).exists():
        sys.exit(f"{dspx} not found: pip install -e . first")
    program = str(ROOT / "programs" / "sentiment.yaml")
    baseline = median_ms([sys.executable, "-c", "pass"], args.runs)
    rows = [
        ("python -c pass", baseline, None),
        ("dspx --help", median_ms([dspx, "--help"], args.runs), TARGET_HELP_MS),
        ("dspx validate sentiment.yaml", median_ms([dspx, "validate", program], args.runs), None),
    ]
    print(f"median of {args.runs} runs, {sys.executable}")
    print(f"{'command':32} {'ms':>8} {'x python':>9}  target")
    for name, ms, target in rows:
        verdict = "" if target is None else f"<= {target:.0f} ms  {'met' if ms <= target else 'MISSED'}"
        print(f"{name:32} {ms:8.1f} {ms / baseline:9.2f}  {verdict}")


if __name__ == "__main__":
    main()
