"""The program file's `finetune:` section: how `dspx finetune` trains, checked where it is written.

Only settings live here (no torch): `dspx validate` checks the section without importing
anything that trains. `--set KEY=VALUE` replaces a setting for one run (VALUE is JSON when it
parses as JSON, else text; `lora.r=8` reaches into the LoRA settings); a bad value is an error
naming that `--set`, a bad key in the file an error naming its file:line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dspx_cli.core.spec_model import Field, SpecValidationError
from dspx_cli.errors import UsageError
from dspx_cli.finetune.settings import FULL_LEARNING_RATE, LORA_LEARNING_RATE
from dspx_cli.optimizers.compile import Teacher, resolve_teacher
from dspx_cli.program.diagnostics import to_program_error
from dspx_cli.program.model import Program
from dspx_cli.program.spec_base import Strict

__all__ = ["FinetuneChoice", "FinetuneSettings", "LoraSettings", "choose_finetune_settings"]

TraceMode = Literal["auto", "labeled", "bootstrap"]


class LoraSettings(Strict):
    r: int = Field(default=16, ge=1, description="LoRA rank.")
    alpha: int = Field(default=32, ge=1, description="LoRA alpha.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout.")


class FinetuneSettings(Strict):
    epochs: int = Field(default=3, ge=1, description="Passes over the training records.")
    # None: by mode, see learning_rate_or_default
    learning_rate: float | None = Field(
        default=None, gt=0, lt=1, description="The optimizer's peak step size; default 5e-5, or 1e-3 with lora."
    )
    batch_size: int = Field(default=4, ge=1, description="Records per optimizer step.")
    max_length: int = Field(
        default=1024, ge=16, description="Tokens per record; a longer record is left out, never cut."
    )
    lora: bool | LoraSettings = Field(
        default=False, description="Train LoRA adapters ({r, alpha, dropout}, or true for the defaults)."
    )
    seed: int = Field(default=0, description="Shuffling and initialisation.")
    checkpoint_every: int = Field(default=20, ge=1, description="Optimizer steps between checkpoints.")
    gguf: Literal["f16", "q8_0", "source"] = Field(default="f16", description="The exported GGUF's weight type.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps, then linear decay to zero.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW's weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradients are clipped to this norm.")
    traces: TraceMode = Field(default="auto", description="Where training records come from: auto, labeled, bootstrap.")
    # {lm: ..., state: ...}, as under optimizer:; checked by resolve_teacher
    teacher: Any = Field(default=None, description="{lm, state}: who runs the train examples for bootstrap traces.")

    @property
    def lora_settings(self) -> LoraSettings | None:
        """The LoRA settings (`lora: true` means the defaults), or None for full fine-tuning."""
        if self.lora is True:
            return LoraSettings()
        return self.lora or None

    @property
    def learning_rate_or_default(self) -> float:
        # The trainer's own defaults: LoRA adapters start at zero and want a larger step.
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LEARNING_RATE if self.lora_settings else FULL_LEARNING_RATE

    def record(self) -> dict[str, Any]:
        """What the summary and the run folder's name record: every setting, defaults resolved."""
        lora = self.lora_settings
        return {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate_or_default,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "lora": lora.model_dump() if lora else False,
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "gguf": self.gguf,
            "warmup_steps": self.warmup_steps,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
        }


class _Root(Strict):
    finetune: FinetuneSettings


@dataclass(frozen=True)
class FinetuneChoice:
    settings: FinetuneSettings
    teacher: Teacher | None


def choose_finetune_settings(
    program: Program,
    assignments: Sequence[str],
    *,
    teacher_lm: str | None = None,
    teacher_state: Any = None,
    traces: str | None = None,
) -> FinetuneChoice:
    """The file's `finetune:` section (every key optional), `--set` over it, `--traces` over both;
    the teacher from `finetune.teacher` with --teacher-lm / --teacher-state replacing its parts."""
    written = dict(program.spec.finetune or {})
    data = {"finetune": written}
    try:
        _Root.model_validate(data)
    except SpecValidationError as exc:
        raise to_program_error(exc, data, program.positions) from None
    merged = json.loads(json.dumps(written, default=str))
    for assignment in assignments:
        _assign(merged, assignment)
    if traces is not None:
        merged["traces"] = traces
    try:
        settings = FinetuneSettings.model_validate(merged)
    except SpecValidationError as exc:
        raise _usage_error(exc, assignments, traces) from None
    teacher = resolve_teacher(program, settings.teacher, teacher_lm, teacher_state, at="finetune")
    return FinetuneChoice(settings, teacher)


def _assign(settings: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    known = [name for name in FinetuneSettings.model_fields if name != "teacher"]
    head, _, sub = key.partition(".")
    if not sep or head not in known or (sub and head != "lora"):
        raise UsageError(f"--set {assignment}: expected KEY=VALUE with KEY one of: {', '.join(known)} (or lora.r, ...)")
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if not sub:
        settings[head] = value
        return
    lora = settings.get("lora")
    lora = dict(lora) if isinstance(lora, dict) else {}
    if sub not in LoraSettings.model_fields:
        raise UsageError(
            f"--set {assignment}: expected lora.KEY with KEY one of: {', '.join(LoraSettings.model_fields)}"
        )
    lora[sub] = value
    settings["lora"] = lora


def _usage_error(exc: SpecValidationError, assignments: Sequence[str], traces: str | None) -> UsageError:
    first = exc.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    expected = first["msg"].replace("Input should be", "expected")
    if key == "traces" and traces is not None:
        return UsageError(f"--traces {traces}: {expected}")
    given = [a for a in assignments if a.partition("=")[0].partition(".")[0] == key]
    where = f"--set {given[-1]}" if given else "--set"
    return UsageError(f"{where}: finetune.{key}: {expected}, got {first.get('input')!r}")
