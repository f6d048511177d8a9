"""The training loss, computed only where there is something to learn.

transformers' `model(labels=...)` projects every position onto the 49k-token vocabulary and then
ignores the unlabelled ones; in a chat record most positions are the prompt (75% in the support
program's records), and the projection is a fifth of the 135M model's compute. Here the hidden
states of the labelled positions alone go through `lm_head`: the same mean cross-entropy over the
same tokens, for less work (benchmarks/finetune_speed.py compares the two).
"""

from __future__ import annotations

from typing import Any

from dspx_cli.finetune.chat_data import IGNORE


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(mean cross-entropy over labelled next tokens, how many there were)."""
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps it
    hidden = causal.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    # Position t predicts token t+1.
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = causal.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep]), int(keep.sum())
