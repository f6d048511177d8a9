"""The bridge between `dspx finetune`'s workflow and the trainer: the `finetune:` section becomes the
trainer's settings, its steps become progress, its files come back as what the state points at."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspx_cli.core.telemetry import OFF, Telemetry
from dspx_cli.finetune.section import FinetuneSettings
from dspx_cli.finetune.settings import LoraSettings, TrainSettings

if TYPE_CHECKING:
    from dspx_cli.finetune.trainer import StepInfo

__all__ = ["OnStep", "Trained", "train_settings", "train_student"]

# (step, total steps, loss, tokens per second of training, seconds left)
OnStep = Callable[[int, int, float, float, float], None]


@dataclass(frozen=True)
class Trained:
    model_file: Path  # what the state points at: the GGUF, or the checkpoint folder when there is none
    checkpoint: Path  # the transformers checkpoint folder
    gguf: Path | None
    summary: dict[str, Any] = field(default_factory=dict)  # steps, loss curve, times, for summary.json


def train_settings(section: FinetuneSettings) -> TrainSettings:
    lora = section.lora_settings
    return TrainSettings(
        epochs=section.epochs,
        learning_rate=section.learning_rate,
        batch_size=section.batch_size,
        max_length=section.max_length,
        lora=LoraSettings(r=lora.r, alpha=lora.alpha, dropout=lora.dropout) if lora else None,
        seed=section.seed,
        checkpoint_every=section.checkpoint_every,
        gguf_type=section.gguf,
        warmup_steps=section.warmup_steps,
        weight_decay=section.weight_decay,
        max_grad_norm=section.max_grad_norm,
    )


def train_student(
    records: list[dict[str, Any]],
    base: Path,
    section: FinetuneSettings,
    folder: Path,
    on_step: OnStep,
    telemetry: Telemetry = OFF,
) -> Trained:
    """Train `base` on `records` in `folder`; a rerun resumes from the trainer's last checkpoint there."""

    # The trainer module is light (torch comes inside train), but only this path needs it.
    from dspx_cli.finetune.trainer import train

    def step(info: StepInfo) -> None:
        on_step(info.step, info.total_steps, info.loss, info.tokens_per_second, info.eta_seconds)

    # Library chatter (transformers' deprecation notices, gguf-py's note that it rewrites a key it
    # copies) is not the user's business, and would land between the progress lines.
    logging.getLogger("gguf").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = train(records, base, train_settings(section), folder, on_step=step, telemetry=telemetry)
    summary = {
        "steps": result.steps,
        "loss_curve": [round(loss, 6) for loss in result.loss_curve],
        "records_trained": result.examples,
        "records_too_long": result.skipped_too_long,
        "train_tokens": result.tokens,
        "train_tokens_labeled": result.trained_tokens,
        "train_tokens_per_second": round(result.tokens_per_second, 1),
        "train_seconds": round(result.seconds, 3),
        "resumed_from_step": result.resumed_from,
        "load_seconds": round(result.load_seconds, 3),
        "export_seconds": round(result.export_seconds, 3),
    }
    model = result.gguf_path or result.checkpoint_dir
    return Trained(model, result.checkpoint_dir, result.gguf_path, summary)
