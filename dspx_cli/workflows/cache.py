"""`cache ...` and `history`: the response cache and call history of a cache folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.errors import DspxError, UsageError
from dspx_cli.lm.cache import default_cache_dir
from dspx_cli.lm.cache_disk import (
    CacheFileError,
    ResponseStore,
    remove_legacy_folder,
    remove_store_files,
    store_path,
    store_volume,
)
from dspx_cli.lm.history import History

_KEY = re.compile(r"[0-9a-f]{1,64}")


def cache_folder(directory: Path | None) -> Path:
    return (directory or default_cache_dir()).expanduser()


def stats(directory: Path | None) -> dict[str, Any]:
    """Figures of the store; a folder or store that does not exist is reported empty, not created."""
    folder = cache_folder(directory)
    figures: dict[str, Any] = {"path": str(folder), "entries": 0, "bytes": 0, "exists": folder.is_dir()}
    if store_path(folder).exists() or store_path(folder).is_symlink():
        store = ResponseStore(folder, create=False)
        try:
            figures["entries"] = store.count()
        finally:
            store.close()
        figures["bytes"] = store_volume(folder)
    figures["history_bytes"] = History(folder).size() if figures["exists"] else 0
    return figures


@dataclass(frozen=True)
class Cleared:
    folder: Path
    existed: bool
    removed: int = 0
    damaged: list[Path] | None = None  # the damaged store's files, deleted
    legacy: Path | None = None  # an older dspx's diskcache folder, deleted


def clear(directory: Path | None) -> Cleared:
    """Empty the store. A damaged store, or one dspx did not write, is deleted as a file; an old
    diskcache folder is removed whole. Only those names inside the folder are touched."""
    folder = cache_folder(directory)
    if not folder.is_dir():
        return Cleared(folder, existed=False)
    removed = 0
    damaged = []
    if store_path(folder).exists() or store_path(folder).is_symlink():
        try:
            store = ResponseStore(folder, create=False)
            try:
                removed = store.clear()
            finally:
                store.close()
        except CacheFileError as exc:
            if not exc.damaged:
                raise
            damaged = remove_store_files(folder)  # found on open, or only when its pages were read
    legacy = remove_legacy_folder(folder)
    return Cleared(folder, True, removed, damaged or None, legacy)


def remove(directory: Path | None, keys: list[str]) -> int:
    """Each KEY is a full key or a prefix matching exactly one entry; returns how many were deleted."""
    folder = cache_folder(directory)
    prefixes = [key.strip().lower() for key in keys]
    for prefix in prefixes:
        if not _KEY.fullmatch(prefix):
            raise UsageError(
                f"{prefix!r} is not a cache key: give the hex `cache_key` of `dspx history --json` or a prefix"
            )
    if not store_path(folder).exists():
        raise DspxError(f"no cached responses in {folder}")
    store = ResponseStore(folder, create=False)
    try:
        found = []
        for prefix in prefixes:
            matches = store.keys_with_prefix(prefix, limit=2)
            if not matches:
                raise DspxError(f"no cached response has a key starting with {prefix} in {folder}")
            if len(matches) > 1:
                raise UsageError(f"{prefix} matches more than one cached response; give more of the key")
            found.append(matches[0])
        return store.delete(sorted(set(found)))
    finally:
        store.close()


def history(directory: Path | None, count: int) -> list[dict[str, Any]]:
    """The last `count` calls recorded in the folder's history, oldest first."""
    return History(cache_folder(directory)).tail(count)
