"""JSON lines, one object a line, read from bytes one line at a time.

The one reader behind batch input (`run --batch`), datasets and corpus files. Each line is decoded
and parsed on its own, so a line that is not UTF-8, not JSON, nested too deeply or not an object
spoils only itself: the caller gets its problem as text and decides (an error record, a skipped
row, a refused file). Lines are split on "\\n" only: JSON strings may hold U+2028 and other breaks
that `str.splitlines()` cuts at, and line numbers must match an editor's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from dspx_cli.core.json_values import json_kind

__all__ = ["BadLine", "bounded_lines", "decode_line", "parse_object", "read_objects"]

_BOM = b"\xef\xbb\xbf"


class BadLine(ValueError):
    """A line that is not a JSON object; `problem` says why, for a message after `file:line:`."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def decode_line(raw: bytes, *, first: bool = False) -> tuple[str, str | None]:
    """The line's text and, when it is not UTF-8, why (the text then has U+FFFD in its place).
    `first`: the file's first line, which may start with a byte order mark."""
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", "replace"), f"not UTF-8 text ({exc.reason} at column {exc.start + 1})"


def parse_object(line: bytes | str, *, first: bool = False) -> dict[str, Any]:
    """One line (its line break may be left on) as a JSON object, or `BadLine` saying why it is not one."""
    if isinstance(line, bytes):
        text, undecodable = decode_line(line.rstrip(b"\r\n"), first=first)
        if undecodable is not None:
            raise BadLine(undecodable)
    else:
        text = line.rstrip("\r\n")
        text = text.removeprefix("\ufeff") if first else text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"expected a JSON object, got invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise BadLine("expected a JSON object, got JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise BadLine(f"expected a JSON object, got invalid JSON ({first_clause(exc)})") from None
    if not isinstance(value, dict):
        raise BadLine(f"expected a JSON object, got {json_kind(value)}")
    return value


def read_objects(data: bytes) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """(line number, object or BadLine) for every line of `data` that is not blank, lazily."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        text, undecodable = decode_line(raw, first=number == 1)
        if not text.strip():
            continue
        try:
            if undecodable is not None:
                raise BadLine(undecodable)
            yield number, parse_object(text)
        except BadLine as bad:
            yield number, bad


def first_clause(exc: Exception) -> str:
    """The gist of a parser's message ("Exceeds the limit (4300 digits) ..." -> its first clause)."""
    return str(exc).split(":")[0].split(";")[0].strip() or type(exc).__name__


def bounded_lines(handle: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) for each line of a file opened "rb"; a line longer than `max_bytes` is
    None, and read past piece by piece without being held (a hostile file may be one huge line)."""
    number = 0
    while line := handle.readline(max_bytes + 1):
        number += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while (rest := handle.readline(max_bytes)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        yield number, line
