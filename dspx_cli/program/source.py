"""Read a YAML or TOML program file into plain data plus the position of every key.

Validation happens later on plain dicts and lists; when it finds a problem it asks the
`Positions` table where the offending key was written, so every error names file:line:column.
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
    path: Path
    data: Any
    positions: Positions


def read_source(path: Path) -> Source:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProgramError(f"program file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgramError(f"cannot read program file {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data, positions = _read_toml(path, text)
    elif suffix in (".yaml", ".yml", ".json"):
        data, positions = _read_yaml(path, text)
    else:
        raise ProgramError(f"{path}: expected a .yaml, .yml or .toml program file")
    if not isinstance(data, dict):
        raise ProgramError("expected a mapping of program keys at the top level", Location(path, 1, 1))
    return Source(path, data, positions)


# ---------------------------------------------------------------- YAML


def _read_yaml(path: Path, text: str) -> tuple[Any, Positions]:
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    positions = Positions(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, positions
        data = _convert_yaml(loader, node, (), positions)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise ProgramError(f"invalid YAML: {exc.problem or exc.context}", where) from None
    except yaml.YAMLError as exc:
        raise ProgramError(f"invalid YAML: {exc}", Location(path)) from None
    finally:
        loader.dispose()
    return data, positions


def _convert_yaml(loader: Any, node: Any, key_path: KeyPath, positions: Positions) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, (str, int, float, bool)):
                raise ProgramError("expected a plain key", Location(positions.path, *where))
            key = str(key)
            if key in result:
                raise ProgramError(f"duplicate key {key!r}", Location(positions.path, *where))
            child = (*key_path, key)
            positions.lines[child] = where
            result[key] = _convert_yaml(loader, value_node, child, positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            child = (*key_path, index)
            positions.lines[child] = (item_node.start_mark.line + 1, item_node.start_mark.column + 1)
            items.append(_convert_yaml(loader, item_node, child, positions))
        return items
    return loader.construct_object(node, deep=True)


# ---------------------------------------------------------------- TOML

_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_INLINE_KEY = re.compile(r"""(?:[{,]\s*)([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")


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
    return data, _toml_positions(path, text)


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
        header = _TABLE.match(line)
        if header and "=" not in line.split("#")[0]:
            name = tuple(_split_dotted(header.group(2)))
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
        key = _KEY.match(line)
        if not key:
            continue
        parts = _split_dotted(key.group(1))
        column = len(line) - len(line.lstrip()) + 1
        for depth in range(1, len(parts) + 1):
            positions.lines.setdefault((*table, *parts[:depth]), (number, column))
        full: KeyPath = (*table, *parts)
        rest = line[key.end():]
        for inner in _INLINE_KEY.finditer(rest):
            name = inner.group(1).strip("\"'")
            positions.lines.setdefault((*full, name), (number, key.end() + inner.start(1) + 1))
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2 == 1:
                in_multiline = quote
    return positions
