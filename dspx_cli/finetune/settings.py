"""Training settings: what the program file's `finetune:` section and `--set k=v` can change."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dspx_cli.finetune.errors import FinetuneError
from dspx_cli.finetune.gguf_export import GGUF_TYPES

# All of a llama block's linear layers: on a 135M model LoRA on attention alone learns too little.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Defaults when learning_rate is unset: LoRA adapters start at zero and need a larger step. Measured
# on programs/support.yaml (28 train records, 3 epochs, batch 4; dev accuracy of the GGUF): full at
# 5e-5 82%; LoRA at 1e-3 71%, at 2e-4 0% (the reply format learnt, the queue left empty).
FULL_LEARNING_RATE = 5e-5
LORA_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LORA_TARGETS


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    learning_rate: float | None = None  # None: FULL_LEARNING_RATE, or LORA_LEARNING_RATE with lora
    batch_size: int = 4
    max_length: int = 1024  # longer examples are left out (and counted), never cut
    lora: LoraSettings | None = None  # None: full fine-tuning
    seed: int = 0
    checkpoint_every: int = 20  # steps; the last step is always checkpointed
    gguf_type: str = "f16"  # f16, q8_0, or source (the base GGUF's own types)
    warmup_steps: int = 0  # linear warm-up, then linear decay to zero at the last step
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # torch CPU threads; None: the cores other processes leave free, chosen again before every
    # step (torch's OpenMP workers spin at barriers like llama.cpp's: see lm/core_share.py).
    threads: int | None = None

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LEARNING_RATE if self.lora is not None else FULL_LEARNING_RATE

    def check(self) -> None:
        """Raise FinetuneError naming the first setting out of range."""
        for problem in self.problems():
            raise FinetuneError(problem)

    def problems(self) -> list[str]:
        """Each setting out of range as `name: what was expected` (the CLI adds file:line)."""
        found: list[str] = []

        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                found.append(f"{name}: expected {expected}")

        need(self.epochs >= 1, "epochs", "a whole number >= 1")
        need(self.learning_rate is None or 0 < self.learning_rate < 1, "learning_rate", "a number in (0, 1)")
        need(self.batch_size >= 1, "batch_size", "a whole number >= 1")
        need(self.max_length >= 16, "max_length", "a whole number >= 16")
        need(self.checkpoint_every >= 1, "checkpoint_every", "a whole number >= 1")
        need(self.gguf_type in GGUF_TYPES, "gguf_type", f"one of {', '.join(GGUF_TYPES)}")
        need(self.warmup_steps >= 0, "warmup_steps", "a whole number >= 0")
        need(self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(self.max_grad_norm > 0, "max_grad_norm", "a number > 0")
        need(self.threads is None or self.threads >= 1, "threads", "a whole number >= 1")
        if self.lora is not None:
            need(self.lora.r >= 1, "lora.r", "a whole number >= 1")
            need(self.lora.alpha > 0, "lora.alpha", "a number > 0")
            need(0 <= self.lora.dropout < 1, "lora.dropout", "a number in [0, 1)")
            need(bool(self.lora.target_modules), "lora.target_modules", "at least one module name")
        return found

    def fingerprint_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint (not threads or
        checkpoint_every, which change no number)."""
        data = asdict(self)
        for key in ("threads", "checkpoint_every", "gguf_type"):
            data.pop(key)
        data["learning_rate"] = self.lr
        return data
