"""Checkpoint folders (config.json + weights, e.g. a model fine-tuned elsewhere) through transformers, on the CPU.

Loading works like local_gguf: once per process per folder, shared by every LM instance, with a
one-thread executor per model so generation never runs twice at once on the same weights.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Usage, text_messages
from dspx_cli.lm.config import LMConfig

HF_EXTRA_HINT = "checkpoint folders need the hf extra: pip install 'dspx_cli[hf]'"
DEFAULT_MAX_TOKENS = 512

# generate()'s sampling parameters. Other `extra` keys are ignored rather than rejected, so a
# program written for a hosted model still runs on a local checkpoint.
_PASSED_THROUGH = frozenset({"top_p", "top_k", "min_p", "repetition_penalty", "seed"})


@dataclass(eq=False)
class LoadedCheckpoint:
    model: Any  # transformers PreTrainedModel, typed loosely so this module imports without torch
    tokenizer: Any
    executor: ThreadPoolExecutor


_loaded: dict[Path, LoadedCheckpoint] = {}  # a resource cache: models are too big to load twice
_load_lock = threading.Lock()


def is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_checkpoint(path: Path) -> LoadedCheckpoint:
    """Load the folder once per process; later calls return the same model."""
    path = path.resolve()
    with _load_lock:
        if path not in _loaded:
            model, tokenizer = open_checkpoint(path)
            _loaded[path] = LoadedCheckpoint(model, tokenizer, ThreadPoolExecutor(1, thread_name_prefix="hf"))
        return _loaded[path]


def open_checkpoint(path: Path) -> tuple[Any, Any]:
    """A checkpoint folder's model (float32, eval mode) and tokenizer with its chat template; LMError if not."""
    try:
        import torch
        import transformers
    except ImportError:
        raise LMError(HF_EXTRA_HINT) from None
    # Progress bars and load warnings on stderr would break the CLI's own output.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if not is_checkpoint_dir(path):
        raise LMError(f"not a checkpoint folder (no config.json): {path}")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise LMError(f"cannot load the checkpoint {path}: {' '.join(str(exc).split())}") from None
    if not tokenizer.chat_template:
        raise LMError(f"the checkpoint {path} has no chat template; save its tokenizer with one")
    model.eval()
    return model, tokenizer


class LocalHFLM(LM):
    def __init__(self, config: LMConfig, path: Path) -> None:
        self.model = config.model
        self.config = config
        self.path = path.resolve()
        if not is_checkpoint_dir(self.path):
            raise LMError(f"not a checkpoint folder (no config.json): {self.path}")

    def __repr__(self) -> str:
        return f"LocalHFLM(model={self.model!r}, path={str(self.path)!r})"

    def load(self) -> LoadedCheckpoint:
        return load_checkpoint(self.path)

    async def complete(self, request: LMRequest) -> LMResponse:
        messages = text_messages(request.messages, self.model)  # before loading: the checkpoint takes text only
        loaded = await asyncio.to_thread(self.load)
        temperature = _first(request.temperature, self.config.temperature, 0.0)
        max_tokens = _first(request.max_tokens, self.config.max_tokens, DEFAULT_MAX_TOKENS)
        extra = {k: v for k, v in {**self.config.extra, **request.extra}.items() if k in _PASSED_THROUGH}
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        completions, finish_reasons, usage = await loop.run_in_executor(
            loaded.executor, _generate, loaded, messages, request.n, temperature, max_tokens, extra
        )
        return LMResponse(completions, usage, self.model, time.perf_counter() - started, finish_reasons)


def _generate(
    loaded: LoadedCheckpoint,
    messages: list[dict[str, str]],
    n: int,
    temperature: float,
    max_tokens: int,
    extra: dict[str, Any],
) -> tuple[list[str], list[str | None], Usage]:
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt_length = int(inputs["input_ids"].shape[1])
    greedy = temperature == 0
    options: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": not greedy}
    if not greedy:
        if "seed" in extra:
            torch.manual_seed(int(extra["seed"]))
        options.update(temperature=temperature, num_return_sequences=n)
        options.update({k: v for k, v in extra.items() if k != "seed"})
    if model.generation_config.pad_token_id is None:
        options["pad_token_id"] = tokenizer.eos_token_id
    try:
        with torch.inference_mode():
            output = model.generate(**inputs, **options)
    except (RuntimeError, ValueError) as exc:
        raise LMError(f"local model {loaded.model.name_or_path}: {' '.join(str(exc).split())}") from None
    eos_ids = _eos_ids(model, tokenizer)
    texts: list[str] = []
    finish_reasons: list[str | None] = []
    completion_tokens = 0
    for row in output[:, prompt_length:].tolist():
        # Rows of a batch are padded after their end; count only up to and including the EOS.
        end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), None)
        tokens = row[:end] if end is not None else row
        completion_tokens += len(tokens)
        texts.append(tokenizer.decode(tokens, skip_special_tokens=True))
        finish_reasons.append("stop" if end is not None else "length")
    # Greedy decoding is deterministic, so n greedy completions are one completion n times.
    if greedy and n > 1:
        texts, finish_reasons, completion_tokens = texts * n, finish_reasons * n, completion_tokens * n
    return texts, finish_reasons, Usage(prompt_length, completion_tokens)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)
