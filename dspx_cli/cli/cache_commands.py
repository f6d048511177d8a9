"""`dspx cache ...` and `dspx history`: the cache folder seen from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dspx_cli.lm.cache import ResponseCache, default_cache_dir
from dspx_cli.lm.history import History


def _folder(directory: Path | None) -> Path:
    return (directory or default_cache_dir()).expanduser()


def path(directory: Path | None) -> None:
    sys.stdout.write(f"{_folder(directory)}\n")


def stats(directory: Path | None, as_json: bool) -> None:
    cache = ResponseCache(_folder(directory))
    try:
        figures = cache.stats()
    finally:
        cache.close()
    history = History(_folder(directory)).path
    figures["history_bytes"] = history.stat().st_size if history.exists() else 0
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    sys.stdout.write(
        f"path:      {figures['path']}\n"
        f"responses: {figures['entries']}\n"
        f"size:      {_size(figures['bytes'])} (history {_size(figures['history_bytes'])})\n"
    )


def clear(directory: Path | None) -> None:
    cache = ResponseCache(_folder(directory))
    try:
        removed = cache.clear()
    finally:
        cache.close()
    sys.stdout.write(f"removed {removed} cached responses from {_folder(directory)}\n")


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
    """Shaped like DSPy's inspect_history: the messages, then the response."""
    usage = record.get("usage") or {}
    state = "cached" if record.get("cached") else f"{record.get('latency_s', 0):.2f} s"
    head = (
        f"[{record.get('timestamp', '?')}] {record.get('model', '?')} · {state} · "
        f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens"
    )
    out = [head, ""]
    for message in record.get("messages", []):
        out += [f"{message['role'].capitalize()} message:", "", message["content"], ""]
    if "error" in record:
        out += ["Error:", "", record["error"], ""]
    for index, text in enumerate(record.get("outputs", [])):
        label = "Response:" if len(record["outputs"]) == 1 else f"Response {index + 1}:"
        out += [label, "", text, ""]
    return "\n".join(out) + "\n"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
