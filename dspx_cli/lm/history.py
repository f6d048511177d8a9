"""The call history: one JSON line per LM call, appended to `history.jsonl` in the cache folder.

JSONL rather than SQLite: it is append-only (no schema to migrate), readable with `tail` and
`jq`, and each record is written with a single `write()` on a file opened with O_APPEND, so
processes sharing the folder append whole lines without a lock. It holds no secrets: requests
carry none (the API key lives in the backend), and the settings in every record pass through
`redact` (the one rule for secret settings) on their way in: `append` redacts the whole record,
unless its writer has redacted the settings itself (the LM stack, which writes one per call).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from dspx_cli.core.redact import redact
from dspx_cli.errors import DspxError

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.jsonl"
ROTATE_BYTES = 64 * 2**20  # past this the log moves to history.1.jsonl (one generation kept)


class HistoryError(DspxError):
    """The history file cannot be read; names it."""


class History:
    def __init__(self, directory: Path) -> None:
        self.path = directory / HISTORY_FILE
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._failed = False  # one write failed: said once, and the run goes on without a history

    def append(self, record: dict[str, Any], *, redacted: bool = False) -> None:
        """Never raises: the history is a record of the run, losing it must not lose the run.

        `redacted`: the writer has passed every setting in the record through `redact` itself (the
        LM stack: its settings once per LM, each call's parameters per call), so the rest of it
        (messages, outputs, counts: the user's data, which `redact` leaves alone) is not walked again."""
        if self._failed:
            return
        try:
            line = orjson.dumps(record if redacted else redact(record), default=str) + b"\n"
            with self._lock:
                if self._fd is None:
                    self._fd = self._open()
                written = os.write(self._fd, line)
            if written != len(line):  # a short write is what a full disk or a file size limit gives
                raise OSError(f"wrote {written} of {len(line)} bytes")
        except (OSError, orjson.JSONEncodeError) as exc:
            self._failed = True
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            logger.warning("cannot write the history %s (%s); the run goes on without it", self.path, reason)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.path.lstat().st_size > ROTATE_BYTES:
                os.replace(self.path, self.path.with_name("history.1.jsonl"))
        except FileNotFoundError:
            pass
        # O_NOFOLLOW: a history.jsonl committed as a link must not make dspx append to another file.
        descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            # A line cut short (full disk, crash) is ended here, so it does not swallow the next record.
            os.write(descriptor, b"\n")
        return descriptor

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def size(self) -> int:
        try:
            return self.path.lstat().st_size
        except FileNotFoundError:
            return 0

    def tail(self, count: int) -> list[dict[str, Any]]:
        """The last `count` records, oldest first; reads the file backwards, not all of it.

        A line that is not a JSON object (cut short by a crash, edited by hand) is skipped, and
        the skipped lines are reported in one warning.
        """
        if count <= 0 or not self.path.exists():
            return []
        try:
            lines = self._last_lines(count)
        except OSError as exc:
            raise HistoryError(f"cannot read the history {self.path}: {exc.strerror or exc}") from None
        records: list[dict[str, Any]] = []
        skipped = 0
        for line in reversed(lines):
            if len(records) == count:
                break
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped += 1
        if skipped:
            logger.warning("skipped %d malformed line%s in %s", skipped, "" if skipped == 1 else "s", self.path)
        return records[::-1]

    def _last_lines(self, count: int) -> list[bytes]:
        # A few spare lines, so malformed ones can be skipped and `count` records still shown.
        wanted = count + 16
        lines: list[bytes] = []
        descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            position = handle.tell()
            rest = b""
            while position > 0 and len(lines) <= wanted:
                step = min(1 << 16, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + rest
                parts = chunk.split(b"\n")
                rest = parts[0]  # maybe a partial line: completed by the next chunk back
                lines = [p for p in parts[1:] if p.strip()] + lines
            if position == 0 and rest.strip():
                lines = [rest, *lines]
        return lines
