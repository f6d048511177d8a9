"""The response cache: a memory LRU in front of a diskcache directory. It doubles as the journal.

The key is a hash of the canonical request (model as written, messages, sampling settings, n,
extra parameters such as response_format, rollout_id). Secrets and transport settings (api_key,
api_base, timeouts, retry and rate settings) are not part of the request, so they cannot reach
the key or the stored value. Only successful responses are stored: an error is never replayed.
"""

from __future__ import annotations

import enum
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Usage

CACHE_DIR_ENV = "DSPX_CACHE_DIR"
KEY_VERSION = 1  # bump when the key recipe changes, so old entries are not misread


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dspx"


class CacheMode(enum.Enum):
    ON = "on"  # read and write
    OFF = "off"  # --no-cache: neither read nor write
    ONLY = "only"  # --cache-only: read; a miss is an error (replay a committed cache in CI)


def request_key(model: str, request: LMRequest) -> str:
    # orjson: the key is computed on every call, and the stdlib json takes ~4x longer.
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "n": request.n,
        "extra": request.extra,
        "rollout_id": request.rollout_id,
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ResponseCache:
    """Thread-safe; several processes may share the directory (diskcache uses SQLite)."""

    def __init__(self, directory: Path, memory_items: int = 4096) -> None:
        self.directory = directory
        self.memory_items = memory_items
        self._memory: OrderedDict[str, LMResponse] = OrderedDict()
        self._lock = threading.Lock()
        self._disk: Any = None

    @property
    def disk(self) -> Any:
        if self._disk is None:
            import diskcache

            # Values are plain dicts; JSONDisk keeps them readable and never unpickles a file
            # someone committed to a repository.
            self._disk = diskcache.Cache(
                str(self.directory / "responses"), disk=diskcache.JSONDisk, size_limit=8 * 2**30
            )
        return self._disk

    def get(self, key: str) -> LMResponse | None:
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        stored = self.disk.get(key)
        if stored is None:
            return None
        response = _decode(stored)
        self._remember(key, response)
        return response

    def put(self, key: str, response: LMResponse) -> None:
        cached = replace(response, cached=True)
        self.disk.set(key, _encode(cached))
        self._remember(key, cached)

    def _remember(self, key: str, response: LMResponse) -> None:
        with self._lock:
            self._memory[key] = response
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        disk = self.disk
        return {"path": str(self.directory), "entries": len(disk), "bytes": disk.volume()}

    def clear(self) -> int:
        with self._lock:
            self._memory.clear()
        return int(self.disk.clear())

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None


def _encode(response: LMResponse) -> dict[str, Any]:
    return {
        "completions": response.completions,
        "usage": [response.usage.prompt_tokens, response.usage.completion_tokens],
        "model": response.model,
        "latency_s": response.latency_s,
        "finish_reasons": response.finish_reasons,
    }


def _decode(stored: dict[str, Any]) -> LMResponse:
    return LMResponse(
        completions=list(stored["completions"]),
        usage=Usage(*stored["usage"]),
        model=stored["model"],
        latency_s=stored.get("latency_s", 0.0),
        finish_reasons=list(stored.get("finish_reasons") or []),
        cached=True,
    )


class CachedLM(LM):
    """Serves repeated requests from the cache; `cached=True` marks responses not paid for again."""

    def __init__(self, inner: LM, cache: ResponseCache, mode: CacheMode = CacheMode.ON) -> None:
        self.inner = inner
        self.model = inner.model
        self.cache = cache
        self.mode = mode

    async def complete(self, request: LMRequest) -> LMResponse:
        if self.mode is CacheMode.OFF:
            return await self.inner.complete(request)
        key = request_key(self.model, request)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if self.mode is CacheMode.ONLY:
            raise LMError(
                f"--cache-only: no cached response for a {self.model} call in {self.cache.directory} "
                f"(key {key[:12]}); run once without --cache-only to record it"
            )
        response = await self.inner.complete(request)
        if response.completions:
            self.cache.put(key, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
