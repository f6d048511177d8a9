"""`dspx report`: write the HTML report of run folders and say where it is."""

from __future__ import annotations

import sys
from pathlib import Path


def run(run_dirs: list[Path], output: Path | None, limit: int | None) -> None:
    from dspx_cli.workflows.report import write_report

    result = write_report(run_dirs, output, limit=limit)
    examples = sum(len(run.examples) for run in result.runs)
    detail = f"{len(result.runs)} run{'s' if len(result.runs) != 1 else ''}, {examples} examples"
    sys.stdout.write(f"{result.path} ({detail}, {result.bytes / 2**20:.1f} MB)\n")
