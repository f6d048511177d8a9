"""Training checkpoints: enough to continue a run exactly where it stopped.

Each checkpoint is a folder `checkpoint-<step>` written under a temporary name and renamed when
complete, so a kill at any moment leaves the previous checkpoints intact; the newest complete one
is the resume point and older ones are removed once a newer one exists. It holds the trainable
weights (all of them for full fine-tuning, the adapters for LoRA), the optimizer and scheduler
state, the RNG states (LoRA dropout draws from torch's), and `progress.json`: the step, the
fingerprint of the run (settings, data, base model), the loss curve and token counts so far.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspx_cli.finetune.atomic import write_folder
from dspx_cli.finetune.errors import FinetuneError

PREFIX = "checkpoint-"


@dataclass
class Progress:
    fingerprint: str
    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0  # non-padding input tokens processed
    trained_tokens: int = 0  # tokens with a label (assistant replies)
    seconds: float = 0.0  # time spent in training steps, over all sessions


def latest(out_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    found = [path for path in out_dir.glob(f"{PREFIX}*") if path.is_dir() and path.name[len(PREFIX) :].isdigit()]
    return max(found, key=lambda path: int(path.name[len(PREFIX) :]), default=None)


def save(out_dir: Path, model: Any, optimizer: Any, scheduler: Any, progress: Progress) -> Path:
    import torch

    def fill(folder: Path) -> None:
        trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        torch.save(trainable, folder / "weights.pt")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            },
            folder / "optimizer.pt",
        )
        (folder / "progress.json").write_text(json.dumps(progress.__dict__) + "\n", encoding="utf-8")

    target = write_folder(out_dir / f"{PREFIX}{progress.step:06d}", fill)
    for old in out_dir.glob(f"{PREFIX}*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return target


def load(folder: Path, model: Any, optimizer: Any, scheduler: Any, fingerprint: str) -> Progress:
    """Restore `folder` into the live objects; FinetuneError if it belongs to another run."""
    import torch

    # A run folder can be committed or handed over like a cache folder: its files are untrusted
    # input, so nothing in them is unpickled (weights_only) and a malformed one is an error.
    try:
        progress = Progress(**json.loads((folder / "progress.json").read_text(encoding="utf-8")))
        if not isinstance(progress.fingerprint, str) or not isinstance(progress.step, int):
            raise TypeError("fingerprint and step")
    except (OSError, ValueError, TypeError) as exc:
        raise FinetuneError(f"{folder}: unreadable checkpoint ({exc}); delete it to start over") from None
    if progress.fingerprint != fingerprint:
        raise FinetuneError(
            f"{folder.parent} holds a checkpoint of a different training run (other data, settings or base "
            "model); use a new output folder or delete it to start over"
        )
    weights = _load_tensors(folder / "weights.pt")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(weights) != trainable:
        raise FinetuneError(f"{folder}: its weights do not match the model being trained")
    model.load_state_dict(weights, strict=False)
    states = _load_tensors(folder / "optimizer.pt")
    try:
        optimizer.load_state_dict(states["optimizer"])
        scheduler.load_state_dict(states["scheduler"])
        torch.set_rng_state(states["torch_rng"])
        random.setstate(_as_tuples(states["python_rng"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise FinetuneError(f"{folder}: unreadable checkpoint ({exc}); delete it to start over") from None
    return progress


def _load_tensors(path: Path) -> Any:
    """torch.load without unpickling arbitrary objects: tensors, numbers, strings and containers."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise FinetuneError(f"{path}: unreadable checkpoint file ({exc}); delete the folder to start over") from None


def _as_tuples(value: Any) -> Any:
    # random.setstate wants the nested tuples random.getstate gave.
    return tuple(_as_tuples(item) for item in value) if isinstance(value, (list, tuple)) else value
