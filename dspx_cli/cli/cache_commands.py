"""`dspx cache ...` and `dspx history`: the cache folder seen from the shell (workflows/cache.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dspx_cli.adapters.media import content_text
from dspx_cli.workflows import cache as workflow


def path(directory: Path | None) -> None:
    sys.stdout.write(f"{workflow.cache_folder(directory)}\n")


def stats(directory: Path | None, as_json: bool) -> None:
    figures = workflow.stats(directory)
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
    cleared = workflow.clear(directory)
    if not cleared.existed:
        sys.stdout.write(f"nothing to remove: {cleared.folder} does not exist\n")
        return
    sys.stdout.write(f"removed {cleared.removed} cached responses from {cleared.folder}\n")
    if cleared.damaged:
        sys.stdout.write(f"deleted the damaged cache file {cleared.damaged[0]}\n")
    if cleared.legacy is not None:
        sys.stdout.write(f"deleted {cleared.legacy} (the cache format of older dspx versions)\n")


def remove(directory: Path | None, keys: list[str]) -> None:
    """`dspx cache rm KEY...`"""
    removed = workflow.remove(directory, keys)
    folder = workflow.cache_folder(directory)
    sys.stdout.write(f"removed {removed} cached response{'' if removed == 1 else 's'} from {folder}\n")


def history(directory: Path | None, count: int, as_json: bool) -> None:
    records = workflow.history(directory, count)
    if as_json:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if not records:
        sys.stderr.write(f"no LM calls recorded in {workflow.cache_folder(directory)}\n")
    for record in records:
        sys.stdout.write(_format_call(record))


def _format_call(record: dict[str, Any]) -> str:
    """Shaped like DSPy's inspect_history: the messages, then the response. Fields of an odd
    shape (the file may have been edited) print as they are rather than stopping the listing."""
    usage = record.get("usage")
    usage = usage if isinstance(usage, dict) else {}
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
            out += [
                f"{str(message.get('role', '?')).capitalize()} message:",
                "",
                content_text(message.get("content", "")),
                "",
            ]
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
