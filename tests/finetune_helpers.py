"""Shared by the finetune tests: greedy answers through dspx's own local backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dspx_cli.lm import LMConfig, LMRequest, create_lm

# Fixed prompts with one likely answer. An open one ("Say hello.") parts after a few tokens between
# float32 weights (transformers) and the same weights rounded to F16 (llama.cpp): its top two next
# tokens are closer than the rounding.
PROMPTS = (
    "What is the capital of France?",
    "List three primary colors.",
    "What is 2 + 2?",
)


def answers(model: str, prompts: tuple[str, ...] = PROMPTS, max_tokens: int = 16) -> list[str]:
    """Greedy replies of `model` (a dspx model string such as local/path/model.gguf)."""
    lm = create_lm(LMConfig(model=model, temperature=0.0), base_dir=Path.cwd())

    async def ask(prompt: str) -> str:
        request = LMRequest(messages=({"role": "user", "content": prompt},), max_tokens=max_tokens)
        return (await lm.complete(request)).completions[0]

    return [asyncio.run(ask(prompt)) for prompt in prompts]
