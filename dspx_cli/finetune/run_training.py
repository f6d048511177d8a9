"""The bridge between `dspx finetune`'s workflow and the trainer: settings in, progress out, files back."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspx_cli.finetune.section import FinetuneSettings

__all__ = ["OnStep", "Trained", "train_student"]

# (step, total steps, loss, tokens trained on so far in this process)
OnStep = Callable[[int, int, float, int], None]


@dataclass(frozen=True)
class Trained:
    model_file: Path  # the GGUF the state points at
    checkpoint: Path | None  # the transformers checkpoint folder
    summary: dict[str, Any] = field(default_factory=dict)  # steps, loss curve, times, for summary.json


def train_student(
    records: list[dict[str, Any]], base: Path, settings: FinetuneSettings, folder: Path, on_step: OnStep
) -> Trained:
    trainer = importlib.import_module("dspx_cli.finetune.trainer")  # until the trainer lands: see the report
    raise NotImplementedError(trainer)
