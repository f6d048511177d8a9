"""`dspx compile` (alias `optimize`): call the compile workflow and render its summary."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dspx_cli.cli import render
from dspx_cli.cli.progress import Progress
from dspx_cli.cli.trial_table import TrialTable
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.optimizers.compile import describe_calls
from dspx_cli.workflows.compile import CompileOptions, compile_program
from dspx_cli.workflows.context import CacheOptions
from dspx_cli.workflows.hooks import Hooks

__all__ = ["CompileOptions", "run"]


def run(path: Path, lm_override: str | None, options: CompileOptions, cache: CacheOptions) -> None:
    trials = TrialTable()

    def progress(meter: UsageMeter, label: str, **kwargs: Any) -> AbstractContextManager[Any]:
        # The optimizer's phase: on a terminal its figures and the trial table share one live display.
        if label.startswith("compile ("):
            return trials.phase(meter, label, **kwargs)
        return Progress(meter, label, **kwargs)

    # Looked up at each call, so a notice written while the live table is up goes above it.
    hooks = Hooks(progress=progress, notice=lambda text: sys.stderr.write(text), trial=trials)
    result = compile_program(path, lm_override, options, cache, hooks)
    if options.as_json:
        record = {**result.metadata, "state": str(result.state), "demos": result.demos}
        sys.stdout.write(json.dumps(record, default=str) + "\n")
    else:
        sys.stdout.write(_table(result.metadata, result.demos, result.state))
    render.usage_line(result.meter, result.seconds)


def _table(metadata: dict[str, Any], demos: dict[str, int], output: Path) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f} ({value * 100:.1f}%)"

    total = metadata["usage"]["total"]
    cost = f" · ${total['cost']:.4f}" if total.get("cost") is not None else ""
    rows = [
        ("optimizer", f"{metadata['optimizer']} {json.dumps(metadata['settings'])}"),
        ("train / dev", f"{metadata['trainset']} / {metadata['devset']} examples"),
        ("dev before", pct(metadata["score_before"])),
        ("dev after", pct(metadata["score_after"])),
        *((f"demos {name}", str(count)) for name, count in demos.items()),
        ("LM calls", describe_calls(metadata["lm_calls"])),
        ("tokens", f"{total['prompt_tokens']} prompt + {total['completion_tokens']} completion{cost}"),
        ("time", f"{metadata['seconds']:.2f} s"),
        ("state", f"{output}  (use: --state {output})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)
