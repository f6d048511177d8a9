"""The call history: one JSON line per LM call, appended to `history.jsonl` in the cache folder.

JSONL rather than SQLite: it is append-only (no schema to migrate), readable with `tail` and
`jq`, and each record is written with a single `write()` on a file opened with O_APPEND, so
processes sharing the folder append whole lines without a lock. It holds no secrets: requests
carry none (the API key lives in the backend), and every record passes through `redact` (the one
rule for secret settings) on its way in, whoever writes it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson

from dspx_cli.core.redact import redact

HISTORY_FILE = "history.jsonl"
ROTATE_BYTES = 64 * 2**20  # past this the log moves to history.1.jsonl (one generation kept)


class History:
    def __init__(self, directory: Path) -> None:
        self.path = directory / HISTORY_FILE
        self._fd: int | None = None
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(redact(record), default=str) + b"\n"
        with self._lock:
            if self._fd is None:
                self._fd = self._open()
            os.write(self._fd, line)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.path.stat().st_size > ROTATE_BYTES:
                os.replace(self.path, self.path.with_name("history.1.jsonl"))
        except FileNotFoundError:
            pass
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def tail(self, count: int) -> list[dict[str, Any]]:
        """The last `count` records, oldest first; reads the file backwards, not all of it."""
        if count <= 0 or not self.path.exists():
            return []
        lines: list[bytes] = []
        with self.path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            position = handle.tell()
            rest = b""
            while position > 0 and len(lines) <= count:
                step = min(1 << 16, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + rest
                parts = chunk.split(b"\n")
                rest = parts[0]  # maybe a partial line: completed by the next chunk back
                lines = [p for p in parts[1:] if p.strip()] + lines
            if position == 0 and rest.strip():
                lines = [rest, *lines]
        records = []
        for line in lines[-count:]:
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a line cut short by a crash: skip it rather than fail the whole view
        return records
