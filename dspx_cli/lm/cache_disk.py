"""The response store on disk: one SQLite table of keys and JSON text, and nothing else.

Why not diskcache: a cache folder may be committed to a repository and replayed in CI, so its
contents are untrusted input. diskcache lets each row choose its decoder (`mode` 4 unpickles,
whatever `disk=` says), names value files by a path stored in the row (an absolute or `../`
name makes `clear` delete files outside the folder) and applies settings read from the file
itself. Here nothing in the file chooses anything: the schema must be exactly the one dspx
creates, values are read as text of bounded size, and decoding them is the caller's business
(plain JSON, never pickle). Untrusted SQL in the file cannot call functions with side effects
either: `trusted_schema` is off on every connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from dspx_cli.errors import DspxError

STORE_FILE = "responses.sqlite3"
# Files SQLite keeps beside the database; `dspx cache clear` deletes these and nothing else.
_COMPANIONS = ("-wal", "-shm", "-journal")
# Marks the file as a dspx response store ("dspx" in ASCII) and the layout version.
APPLICATION_ID = 0x64737078
LAYOUT_VERSION = 1
_TABLE_SQL = "CREATE TABLE responses (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, stored_at REAL NOT NULL)"
_EXPECTED_SCHEMA = {("table", "responses", _TABLE_SQL), ("index", "sqlite_autoindex_responses_1", None)}
MAX_VALUE_CHARS = 64 * 2**20  # a longer value was not written by dspx: refused before it is read
_CULL_EVERY = 512  # puts between two checks of the size limit
_BUSY_TIMEOUT_S = 30.0  # other processes sharing the folder hold write locks for milliseconds


class CacheFileError(DspxError):
    """The store cannot be used: damaged, not dspx's, or not readable/writable. Names the file."""

    def __init__(self, message: str, *, damaged: bool) -> None:
        super().__init__(message)
        self.damaged = damaged


def store_path(directory: Path) -> Path:
    return directory / STORE_FILE


class ResponseStore:
    """Keys and JSON texts in `directory/responses.sqlite3`. Thread-safe; processes share it (WAL).

    Every method raises `CacheFileError` (never a bare sqlite3 error), so callers decide whether a
    failure stops a command (`dspx cache stats`) or only disables the cache (a run).
    """

    def __init__(self, directory: Path, *, create: bool, size_limit: int = 8 * 2**30) -> None:
        self.directory = directory
        self.path = store_path(directory)
        self.size_limit = size_limit
        self._lock = threading.Lock()
        self._puts = 0
        self._db = self._connect(create)

    # -- opening -------------------------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection:
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            # A committed link could point at any database of the user's: never open it.
            raise self._refused("is not a regular file")
        if create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or exc
                raise CacheFileError(
                    f"cannot create the cache folder {self.directory}: {reason}", damaged=False
                ) from None
        mode = "rwc" if create else "rw"
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode={mode}"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            db.execute("PRAGMA trusted_schema = OFF")
            self._check_or_create(db, create)
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc) from None
        except CacheFileError:
            db.close()
            raise
        return db

    def _check_or_create(self, db: sqlite3.Connection, create: bool) -> None:
        if create and not self._schema(db):
            db.execute("BEGIN IMMEDIATE")  # another process may be creating it at this moment
            try:
                if not self._schema(db):
                    db.execute(_TABLE_SQL)
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            # WAL: readers never block the writer, so processes sharing the folder run in parallel.
            db.execute("PRAGMA journal_mode = WAL")
        schema = self._schema(db)
        if not schema:
            raise self._refused("holds no table of responses")
        if schema != _EXPECTED_SCHEMA:
            extra = sorted(f"{kind} {name}" for kind, name, _ in schema - _EXPECTED_SCHEMA)
            raise self._refused(f"holds a schema dspx did not create ({', '.join(extra) or 'changed table'})")
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if (app_id, version) != (APPLICATION_ID, LAYOUT_VERSION):
            raise self._refused(f"is not a dspx response store of layout {LAYOUT_VERSION}")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a power cut loses the last calls only

    @staticmethod
    def _schema(db: sqlite3.Connection) -> set[tuple[str, str, str | None]]:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
        return {(str(kind), str(name), sql if sql is None else str(sql)) for kind, name, sql in rows}

    # -- reading and writing -------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The stored text, or None on a miss. Raises `ValueError` for a row dspx did not write."""
        row = self._one(
            "SELECT typeof(value), length(value), CASE WHEN typeof(value) = 'text' AND length(value) <= ? "
            "THEN value END FROM responses WHERE key = ?",
            (MAX_VALUE_CHARS, key),
        )
        if row is None:
            return None
        kind, size, text = row
        if text is None and kind == "text":
            raise ValueError(f"its value has {size} characters, more than dspx stores")
        if text is None:
            raise ValueError(f"its value is a {kind}, not JSON text")
        return str(text)

    def put(self, key: str, text: str) -> None:
        if len(text) > MAX_VALUE_CHARS:
            return  # it could not be read back: a miss next time, as if never stored
        self._change(
            "INSERT OR REPLACE INTO responses (key, value, stored_at) VALUES (?, ?, ?)", (key, text, time.time())
        )
        self._puts += 1
        if self._puts % _CULL_EVERY == 0:
            self._cull()

    def delete(self, keys: list[str]) -> int:
        return sum(self._change("DELETE FROM responses WHERE key = ?", (key,)) for key in keys)

    def keys_with_prefix(self, prefix: str, limit: int) -> list[str]:
        # Keys are lowercase hex, so every key with this prefix sorts below prefix + "g".
        rows = self._all(
            "SELECT key FROM responses WHERE key >= ? AND key < ? ORDER BY key LIMIT ?", (prefix, prefix + "g", limit)
        )
        return [str(key) for (key,) in rows]

    def count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM responses"))

    def clear(self) -> int:
        removed = self._change("DELETE FROM responses")
        try:
            self._change("VACUUM")  # give the room back; a process reading the file may prevent it
        except CacheFileError:
            pass
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _cull(self) -> None:
        """Past the size limit, drop the oldest tenth of the entries (the cache is not an archive)."""
        used = (self._scalar("PRAGMA page_count") - self._scalar("PRAGMA freelist_count")) * self._scalar(
            "PRAGMA page_size"
        )
        if used > self.size_limit:
            self._change(
                "DELETE FROM responses WHERE key IN "
                "(SELECT key FROM responses ORDER BY stored_at LIMIT (SELECT count(*) / 10 + 1 FROM responses))"
            )

    def _one(self, sql: str, parameters: tuple[object, ...] = ()) -> tuple[object, ...] | None:
        with self._lock, self._mapped():
            return self._db.execute(sql, parameters).fetchone()

    def _all(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock, self._mapped():
            return self._db.execute(sql, parameters).fetchall()

    def _scalar(self, sql: str) -> int:
        row = self._one(sql)
        return int(row[0]) if row is not None else 0  # type: ignore[call-overload]

    def _change(self, sql: str, parameters: tuple[object, ...] = ()) -> int:
        with self._lock, self._mapped():
            return int(self._db.execute(sql, parameters).rowcount)

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    # -- errors --------------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> CacheFileError:
        name = getattr(exc, "sqlite_errorname", "")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            return CacheFileError(f"the cache file {self.path} is damaged ({exc}); {self.fix}", damaged=True)
        return CacheFileError(f"cannot use the cache file {self.path}: {exc}", damaged=False)

    def _refused(self, reason: str) -> CacheFileError:
        return CacheFileError(f"the cache file {self.path} {reason}; {self.fix}", damaged=True)

    @property
    def fix(self) -> str:
        return f"repair it with `dspx cache clear --cache-dir {self.directory}`"


def store_volume(directory: Path) -> int:
    """Bytes on disk: the database and SQLite's files beside it (measure with the store closed:
    an open connection has a write-ahead log of its own)."""
    base = store_path(directory)
    total = 0
    for suffix in ("", *_COMPANIONS):
        try:
            total += base.with_name(base.name + suffix).lstat().st_size
        except FileNotFoundError:
            pass
    return total


def remove_store_files(directory: Path) -> list[Path]:
    """Delete the store and SQLite's files beside it, by name: never a path read from a file.

    `unlink` removes a link itself, not what it points to, so nothing outside the folder goes.
    """
    removed = []
    base = store_path(directory)
    for suffix in ("", *_COMPANIONS):
        path = base.with_name(base.name + suffix)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


LEGACY_DIR = "responses"  # dspx before this store: a diskcache folder, never read again


def remove_legacy_folder(directory: Path) -> Path | None:
    """Delete the diskcache folder older dspx versions wrote, without reading a row of it.

    Its rows name files to delete; this removes the folder's tree instead (rmtree does not
    follow links on this platform; a link in place of the folder is removed as a link).
    """
    import shutil

    legacy = directory / LEGACY_DIR
    if legacy.is_symlink():
        legacy.unlink()
        return legacy
    if not legacy.is_dir() or not (legacy / "cache.db").exists():
        return None
    if not shutil.rmtree.avoids_symlink_attacks:
        return None  # cannot delete a tree of untrusted content safely here: leave it to the user
    shutil.rmtree(legacy)
    return legacy
