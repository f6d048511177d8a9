"""The response cache: a memory LRU in front of a SQLite store (cache_disk.py). It doubles as the journal.

The key is a hash of the canonical request (model as written, messages, sampling settings, n,
extra parameters such as response_format, rollout_id). Secrets and transport settings (api_key,
api_base, timeouts, retry and rate settings) are not part of the request, so they cannot reach
the key or the stored value. Only successful responses are stored: an error is never replayed.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM, LMRequest, LMResponse, Usage

CACHE_DIR_ENV = "DSPX_CACHE_DIR"
KEY_VERSION = 1  # bump when the key recipe changes, so old entries are not misread

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    # Imported when the cache is first used: `dspx validate` and `--help` do not load sqlite3.
    from dspx_cli.lm.cache_disk import CacheFileError, ResponseStore


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dspx"


class CacheMode(enum.Enum):
    ON = "on"  # read and write
    OFF = "off"  # --no-cache: neither read nor write
    ONLY = "only"  # --cache-only: read; a miss is an error (replay a committed cache in CI)
    REFRESH = "refresh"  # --refresh: ask again, store the fresh answers over the old ones


def request_key(model: str, request: LMRequest) -> str:
    known = request.keys.get(model)
    if known is not None:
        return known
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
    key = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    request.keys[model] = key
    return key


class ResponseCache:
    """Thread-safe; several processes may share the directory (SQLite in WAL mode).

    A run never fails because of its cache: a store that cannot be opened or read means running
    uncached, a write that fails keeps answers in memory for the rest of the run, and a row dspx
    did not write is a miss. Each of these is said once, as a warning.
    """

    def __init__(self, directory: Path, memory_items: int = 4096) -> None:
        self.directory = directory
        self.memory_items = memory_items
        self._memory: OrderedDict[str, LMResponse] = OrderedDict()
        self._lock = threading.Lock()
        self._opening = threading.Lock()  # one store per cache, however many threads ask first
        self._store: ResponseStore | None = None
        self._unusable = False  # opening or reading failed: no more disk reads or writes
        self._unwritable = False  # a write failed: later answers stay in memory only
        self._warned: set[str] = set()

    def _disk(self) -> ResponseStore | None:
        from dspx_cli.lm.cache_disk import CacheFileError, ResponseStore

        with self._opening:
            if self._store is None and not self._unusable:
                try:
                    self._store = ResponseStore(self.directory, create=True)
                except CacheFileError as exc:
                    self._give_up(exc)
            return self._store

    def get(self, key: str, *, memory_only: bool = False) -> LMResponse | None:
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        store = None if memory_only else self._disk()
        if store is None:
            return None
        from dspx_cli.lm.cache_disk import CacheFileError

        try:
            text = store.get(key)
            if text is None:
                return None
            response = _decode(text)
        except CacheFileError as exc:
            self._give_up(exc)
            return None
        except ValueError as exc:  # orjson's decode error is a ValueError too
            self._warn("foreign", f"ignored cached response {key[:12]} in {store.path} (dspx did not write it: {exc})")
            return None
        self._remember(key, response)
        return response

    def put(self, key: str, response: LMResponse) -> None:
        cached = replace(response, cached=True)
        self._remember(key, cached)
        store = None if self._unwritable else self._disk()
        if store is None:
            return
        from dspx_cli.lm.cache_disk import CacheFileError

        try:
            store.put(key, _encode(cached))
        except CacheFileError as exc:
            self._unwritable = True
            self._warn("write", f"the run goes on without storing answers: {exc}")

    def forget(self, key: str) -> None:
        """Drop one entry (a reply that did not fit its signature), so the next call asks again."""
        with self._lock:
            self._memory.pop(key, None)
        store = None if self._unwritable else self._disk()
        if store is None:
            return
        from dspx_cli.lm.cache_disk import CacheFileError

        try:
            store.delete([key])
        except CacheFileError as exc:
            self._unwritable = True
            self._warn("write", f"the run goes on without storing answers: {exc}")

    def _remember(self, key: str, response: LMResponse) -> None:
        with self._lock:
            self._memory[key] = response
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def _give_up(self, error: CacheFileError) -> None:
        self._unusable = True
        if self._store is not None:
            self._store.close()
            self._store = None
        self._warn("open", f"running without the cache: {error}")

    def _warn(self, kind: str, message: str) -> None:
        with self._lock:
            first = kind not in self._warned
            self._warned.add(kind)
        # Once per kind: a batch of 1000 rows on a full disk is one warning, not 1000.
        logger.log(logging.WARNING if first else logging.DEBUG, message)

    def stats(self) -> dict[str, Any]:
        from dspx_cli.lm.cache_disk import store_volume

        store = self._disk()
        entries = store.count() if store is not None else 0
        return {"path": str(self.directory), "entries": entries, "bytes": store_volume(self.directory)}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _encode(response: LMResponse) -> str:
    return orjson.dumps(
        {
            "completions": response.completions,
            "usage": [response.usage.prompt_tokens, response.usage.completion_tokens],
            "model": response.model,
            "latency_s": response.latency_s,
            "finish_reasons": response.finish_reasons,
        }
    ).decode()


def _decode(text: str) -> LMResponse:
    """A stored value back to a response; ValueError says how a row dspx did not write differs."""
    stored = orjson.loads(text)
    if not isinstance(stored, dict):
        raise ValueError("its value is not a JSON object")
    completions = stored.get("completions")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise ValueError("its 'completions' is not a list of strings")
    usage = stored.get("usage")
    if not (isinstance(usage, list) and len(usage) == 2 and all(_is_count(u) for u in usage)):
        raise ValueError("its 'usage' is not two token counts")
    model = stored.get("model")
    if not isinstance(model, str):
        raise ValueError("its 'model' is not a string")
    latency = stored.get("latency_s", 0.0)
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise ValueError("its 'latency_s' is not a number")
    reasons = stored.get("finish_reasons") or []
    if not isinstance(reasons, list) or not all(r is None or isinstance(r, str) for r in reasons):
        raise ValueError("its 'finish_reasons' is not a list of strings")
    return LMResponse(
        completions=completions,
        usage=Usage(*usage),
        model=model,
        latency_s=float(latency),
        finish_reasons=reasons,
        cached=True,
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
        # --refresh reads only what this run itself stored: earlier answers are never served.
        hit = self.cache.get(key, memory_only=self.mode is CacheMode.REFRESH)
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

    def forget(self, request: LMRequest) -> None:
        # --cache-only replays a folder as it was committed: it never changes it.
        if self.mode in (CacheMode.ON, CacheMode.REFRESH):
            self.cache.forget(request_key(self.model, request))

    async def aclose(self) -> None:
        await self.inner.aclose()
