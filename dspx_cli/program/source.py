"""Read a YAML or TOML program file into plain data plus the position of every key.

Validation happens later on plain dicts and lists; when it finds a problem it asks the
`Positions` table where the offending key was written, so every error names file:line:column.
YAML is read in `yaml_source.py`, TOML here; both within the limits below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspx_cli.errors import Location, ProgramError

KeyPath = tuple[str | int, ...]


@dataclass
class Positions:
    """Maps a key path such as ("modules", "answer", "type") to where it was written."""

    path: Path
    lines: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, key_path: KeyPath) -> Location:
        # Fall back to the nearest written ancestor: a missing key is reported at its parent.
        for end in range(len(key_path), 0, -1):
            found = self.lines.get(tuple(key_path[:end]))
            if found:
                return Location(self.path, *found)
        return Location(self.path, 1, 1)


@dataclass
class Source:
    """A program file read: its data and where each key and value was written."""

    path: Path
    data: Any
    positions: Positions


# Limits on what one program file may cost to read: it is trusted like a Makefile, but a typo or a
# hostile download must end in a clear error, not minutes of CPU and gigabytes of memory.
MAX_FILE_BYTES = 16 * 1024 * 1024  # datasets belong in data files
MAX_DEPTH = 100  # nesting of mappings and lists, aliases followed
MAX_ALIAS_EXPANSION = 100_000  # values that aliases may add beyond those written in the file
MAX_INT_DIGITS = 4300  # Python's own limit on converting decimal text to int


def read_source(path: Path) -> Source:
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data, positions = _read_toml(path, text)
    elif suffix in (".yaml", ".yml", ".json"):
        from dspx_cli.program.yaml_source import read_yaml  # it needs this module's Positions

        data, positions = read_yaml(path, text)
    else:
        raise ProgramError(f"{path}: expected a .yaml, .yml or .toml program file")
    if not isinstance(data, dict):
        raise ProgramError("expected a mapping of program keys at the top level", Location(path, 1, 1))
    return Source(path, data, positions)


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ProgramError(f"program file not found: {path}") from None
    except IsADirectoryError:
        raise ProgramError(f"{path}: is a folder; expected a program file") from None
    except OSError as exc:
        raise ProgramError(f"cannot read program file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ProgramError(
            f"{path}: the program file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
            "keep datasets in data files (data: train/dev/test)"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        raise ProgramError(
            f"byte 0x{raw[offset]:02x} is not UTF-8; expected a UTF-8 text file", location_of(path, raw, offset)
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ProgramError("NUL byte in the file; expected text", location_of(path, text, nul))
    return text


def location_of(path: Path, text: str | bytes, offset: int) -> Location:
    newline = b"\n" if isinstance(text, bytes) else "\n"
    line = text.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    column = offset - (text.rfind(newline, 0, offset) + 1)  # type: ignore[arg-type]
    return Location(path, line, column + 1)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------- TOML

# No nested or lazy quantifiers: a valid file may hold 100,000 spaces on one line. Kept as strings:
# `re` compiles (and caches) them the first time a TOML program is read, not for every command.
_TABLE = r"^\s*(\[\[?)([^\]]*)\]\]?\s*(#.*)?$"
_KEY = r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
_INLINE_KEY = r"""(?:[{,]\s*)([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*="""


def _read_toml(path: Path, text: str) -> tuple[Any, Positions]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if match:
            where = Location(path, int(match.group(1)), int(match.group(2)))
        else:  # "(at end of document)"
            where = Location(path, max(1, len(text.splitlines())), 1)
        raise ProgramError(f"invalid TOML: {re.sub(r' [(]at (line|end).*', '', message)}", where) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ProgramError(f"nested more than {MAX_DEPTH} levels deep", _deep_toml_line(path, text)) from None
    except ValueError as exc:  # int() refusing more than MAX_INT_DIGITS digits
        long_number = re.search(rf"[0-9][0-9_]{{{MAX_INT_DIGITS},}}", text)
        where = location_of(path, text, long_number.start()) if long_number else Location(path)
        if long_number:
            raise ProgramError(f"an integer of more than {MAX_INT_DIGITS} digits", where) from None
        raise ProgramError(f"invalid TOML: {one_line(exc)}", where) from None
    positions = _toml_positions(path, text)
    _check_depth(data, positions)
    return data, positions


def _deep_toml_line(path: Path, text: str) -> Location:
    """Where brackets first open deeper than MAX_DEPTH (quotes ignored: only to point at a line)."""
    depth = 0
    for offset, char in enumerate(text):
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return location_of(path, text, offset)
        elif char in "]}":
            depth = max(0, depth - 1)
    return Location(path, 1, 1)


def _check_depth(data: Any, positions: Positions) -> None:
    """Dotted keys nest without recursion in tomllib: bound the depth of the data itself."""
    stack: list[tuple[Any, KeyPath]] = [(data, ())]
    while stack:
        node, key_path = stack.pop()
        if len(key_path) > MAX_DEPTH:
            raise ProgramError(f"nested more than {MAX_DEPTH} levels deep", positions.locate(key_path))
        if isinstance(node, dict):
            stack.extend((value, (*key_path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*key_path, index)) for index, value in enumerate(node))


def _split_dotted(key: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", key)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _toml_positions(path: Path, text: str) -> Positions:
    """Approximate key positions with a line scanner; tomllib keeps none.

    It understands table headers, arrays of tables, dotted keys and keys of inline tables on the
    same line, and skips the insides of multi-line strings. Good enough to point at the right line.
    """
    positions = Positions(path)
    table: KeyPath = ()
    array_counts: dict[KeyPath, int] = {}
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        header = re.match(_TABLE, line)
        if header and "=" not in line.split("#")[0]:
            name = tuple(_split_dotted(header.group(2).strip()))
            if header.group(1) == "[[":
                index = array_counts.get(name, 0)
                array_counts[name] = index + 1
                positions.lines.setdefault(name, (number, line.index("[") + 1))
                table = (*name, index)
            else:
                table = name
            for depth in range(1, len(name) + 1):  # `[a.b]` also defines `a`
                positions.lines.setdefault(name[:depth], (number, line.index("[") + 1))
            positions.lines.setdefault(table, (number, line.index("[") + 1))
            continue
        key = re.match(_KEY, line)
        if not key:
            continue
        parts = _split_dotted(key.group(1))
        column = len(line) - len(line.lstrip()) + 1
        for depth in range(1, len(parts) + 1):
            positions.lines.setdefault((*table, *parts[:depth]), (number, column))
        full: KeyPath = (*table, *parts)
        rest = line[key.end() :]
        for inner in re.finditer(_INLINE_KEY, rest):
            inner_key = inner.group(1).strip("\"'")
            positions.lines.setdefault((*full, inner_key), (number, key.end() + inner.start(1) + 1))
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2 == 1:
                in_multiline = quote
    return positions
