"""`dspx cache ...` and `dspx history`: the cache folder seen from the shell."""

from __future__ import annotations

import json
import re
import sys
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


def _folder(directory: Path | None) -> Path:
    return (directory or default_cache_dir()).expanduser()


def path(directory: Path | None) -> None:
    sys.stdout.write(f"{_folder(directory)}\n")


def stats(directory: Path | None, as_json: bool) -> None:
    """Figures of the store; a folder or store that does not exist is reported empty, not created."""
    folder = _folder(directory)
    figures: dict[str, Any] = {"path": str(folder), "entries": 0, "bytes": 0, "exists": folder.is_dir()}
    if store_path(folder).exists() or store_path(folder).is_symlink():
        store = ResponseStore(folder, create=False)
        try:
            figures["entries"] = store.count()
        finally:
            store.close()
        figures["bytes"] = store_volume(folder)
    figures["history_bytes"] = History(folder).size() if figures["exists"] else 0
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    note = "" if figures["exists"] else " (the folder does not exist)"
    sys.stdout.write(
        f"path:      {figures['path']}{note}\n"
        f"responses: {figures['entries']}\n"
        f"size:      {_size(figures['bytes'])} (history {_size(figures['history_bytes'])})\n"
    )


def clear(directory: Path | None) -> None:
    """Empty the store. A damaged store, or one dspx did not write, is deleted as a file; an old
    diskcache folder is removed whole. Only those names inside the folder are touched."""
    folder = _folder(directory)
    if not folder.is_dir():
        sys.stdout.write(f"nothing to remove: {folder} does not exist\n")
        return
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
    sys.stdout.write(f"removed {removed} cached responses from {folder}\n")
    if damaged:
        sys.stdout.write(f"deleted the damaged cache file {damaged[0]}\n")
    if legacy is not None:
        sys.stdout.write(f"deleted {legacy} (the cache format of older dspx versions)\n")


def remove(directory: Path | None, keys: list[str]) -> None:
    """`dspx cache rm KEY...`: each KEY is a full key or a prefix matching exactly one entry."""
    folder = _folder(directory)
    prefixes = [key.strip().lower() for key in keys]
    for prefix in prefixes:
        if not _KEY.fullmatch(prefix):
            raise UsageError(f"{prefix!r} is not a cache key: give the hex `cache_key` of `dspx history --json` or a prefix")
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
        removed = store.delete(sorted(set(found)))
    finally:
        store.close()
    sys.stdout.write(f"removed {removed} cached response{'' if removed == 1 else 's'} from {folder}\n")


def history(directory: Path | None, count: int, as_json: bool) -> None:
    records = History(_folder(directory)).tail(count)
    if as_json:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if not records:
        sys.stderr.write(f"no LM calls recorded in {_folder(directory)}\n")
    for record in records:
        sys.stdout.write(_format_call(record))


def _format_call(record: dict[str, Any]) -> str:
    """Shaped like DSPy's inspect_history: the messages, then the response. Fields of an odd
    shape (the file may have been edited) print as they are rather than stopping the listing."""
    usage = record.get("usage") if isinstance(record.get("usage"), dict) else {}
    latency = record.get("latency_s")
    state = "cached" if record.get("cached") else f"{latency:.2f} s" if isinstance(latency, int | float) else "? s"
    head = (
        f"[{record.get('timestamp', '?')}] {record.get('model', '?')} · {state} · "
        f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens"
    )
    if record.get("cache_key"):
        head += f" · key {str(record['cache_key'])[:16]}"
    out = [head, ""]
    messages = record.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            out += [f"{str(message.get('role', '?')).capitalize()} message:", "", str(message.get("content", "")), ""]
    if "error" in record:
        out += ["Error:", "", str(record["error"]), ""]
    outputs = record.get("outputs")
    outputs = outputs if isinstance(outputs, list) else []
    for index, text in enumerate(outputs):
        label = "Response:" if len(outputs) == 1 else f"Response {index + 1}:"
        out += [label, "", str(text), ""]
    return "\n".join(out) + "\n"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
