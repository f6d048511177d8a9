"""Chat records -> token ids with labels on the assistant's replies only, and padded batches.

A record is the OpenAI fine-tuning JSONL shape: {"messages": [{"role": ..., "content": ...}, ...]}.
It is rendered with the model's own chat template, as llama-cpp-python renders a request (which
adds no BOS of its own when the template writes the special tokens), so training sees the prompt
the served model will see. The labelled span of each assistant message is the tokens its
rendering adds after the generation prompt, up to and including the end-of-turn token: the model
learns to answer and to stop, and nothing of the system or user turns.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dspx_cli.finetune.errors import FinetuneError

IGNORE = -100  # the label torch's cross-entropy skips
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE outside assistant replies

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def check_records(records: Sequence[Any]) -> None:
    """Raise FinetuneError naming the first record that is not a chat with an assistant reply."""
    for number, record in enumerate(records, 1):
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise FinetuneError(f"training record {number}: expected {{'messages': [...]}} with at least one message")
        for message in messages:
            if (
                not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise FinetuneError(
                    f"training record {number}: each message needs a role ({', '.join(ROLES)}) and string content"
                )
        if not any(message["role"] == "assistant" for message in messages):
            raise FinetuneError(f"training record {number}: no assistant message to learn from")


def encode(tokenizer: Any, messages: list[dict[str, str]]) -> Encoded:
    """Tokenize one conversation with labels on its assistant turns."""
    plain = [{"role": message["role"], "content": message["content"]} for message in messages]
    ids: list[int] = _render(tokenizer, plain, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    end_of_turn = tokenizer.eos_token_id
    for index, message in enumerate(plain):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, plain[:index], generation_prompt=True)
        start = len(prompt)
        if ids[:start] != prompt:
            # Labels are found by rendering prefixes; a template that renders a turn differently
            # once later turns follow would put them on the wrong tokens.
            raise FinetuneError("the chat template does not render earlier turns as a prefix of the conversation")
        stop = len(_render(tokenizer, plain[: index + 1], generation_prompt=False))
        span = ids[start:stop]
        # Templates close a turn with the end-of-turn token and a newline; the newline after it is
        # never generated (llama.cpp stops at the token), so it is not learnt either.
        if end_of_turn in span:
            stop = start + len(span) - span[::-1].index(end_of_turn)
        labels[start:stop] = ids[start:stop]
    return Encoded(ids, labels)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def epoch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches of example indices: shuffled, then grouped by length within windows of
    a few batches so a batch pads little, then the batches shuffled again. Depends only on its
    arguments, so a resumed run gets the same order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    window = batch_size * 8
    batches: list[list[int]] = []
    for begin in range(0, len(indices), window):
        chunk = sorted(indices[begin : begin + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on padding)."""
    import torch

    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        input_ids[row, :size] = torch.tensor(example.input_ids)
        labels[row, :size] = torch.tensor(example.labels)
        mask[row, :size] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
