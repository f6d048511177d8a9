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
        data, positions = _read_yaml(path, text)
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
            f"byte 0x{raw[offset]:02x} is not UTF-8; expected a UTF-8 text file", _location_of(path, raw, offset)
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ProgramError("NUL byte in the file; expected text", _location_of(path, text, nul))
    return text


def _location_of(path: Path, text: str | bytes, offset: int) -> Location:
    newline = b"\n" if isinstance(text, bytes) else "\n"
    line = text.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    column = offset - (text.rfind(newline, 0, offset) + 1)  # type: ignore[arg-type]
    return Location(path, line, column + 1)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------- YAML
#
# Read through the composer, which keeps every node's position. The composer shares the node of
# an anchor among its aliases, so the graph stays as small as the file; it is measured (size and
# depth, aliases followed) before it is turned into plain data, where sharing would end.

_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"


def _read_yaml(path: Path, text: str) -> tuple[Any, Positions]:
    import yaml

    positions = Positions(path)
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        # libyaml's composer recurses in C: a file nested 100,000 deep would crash the process,
        # so the depth is checked on the event stream (no recursion) before composing.
        _check_event_depth(path, loader_cls, text)
        loader = loader_cls(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}, positions
            _check_graph(path, node)
            data = _YamlConverter(loader, positions).convert(node, ())
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise ProgramError(f"invalid YAML: {_one_line(exc.problem or exc.context)}", where) from None
    except yaml.reader.ReaderError as exc:
        raise ProgramError(f"invalid YAML: {_one_line(exc.reason)}", _location_of(path, text, exc.position)) from None
    except yaml.YAMLError as exc:
        raise ProgramError(f"invalid YAML: {_one_line(exc)}", Location(path)) from None
    return data, positions


def _check_event_depth(path: Path, loader_cls: Any, text: str) -> None:
    import yaml

    loader = loader_cls(text)
    depth = 0
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise ProgramError(
                        f"nested more than {MAX_DEPTH} levels deep", Location(path, mark.line + 1, mark.column + 1)
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(path: Path, root: Any) -> None:
    """Size and depth of the data the node graph stands for, every alias expanded, computed
    without expanding anything (iteratively, each node once)."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth)
    entered: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            measured[key] = (
                1 + sum(measured[id(c)][0] for c in children),
                1 + max((measured[id(c)][1] for c in children), default=0),
            )
            continue
        if key in measured:
            continue
        if key in entered:  # still on the path from the root: the node contains itself
            mark = node.start_mark
            raise ProgramError(
                "an alias refers to the mapping or list that contains it; expected data without cycles",
                Location(path, mark.line + 1, mark.column + 1),
            )
        entered.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children)
    values, depth = measured[id(root)]
    if depth > MAX_DEPTH:
        node = _first_over(root, measured, lambda m: m[1] > MAX_DEPTH)
        mark = node.start_mark
        raise ProgramError(
            f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded",
            Location(path, mark.line + 1, mark.column + 1),
        )
    if values - len(measured) > MAX_ALIAS_EXPANSION:
        node = _first_over(root, measured, lambda m: m[0] > MAX_ALIAS_EXPANSION)
        mark = node.start_mark
        raise ProgramError(
            f"YAML aliases expand this to {values:,} values; refusing to add more than "
            f"{MAX_ALIAS_EXPANSION:,} to what the file writes out (an alias bomb?)",
            Location(path, mark.line + 1, mark.column + 1),
        )


def _first_over(root: Any, measured: dict[int, tuple[int, int]], over: Any) -> Any:
    """The deepest node, first in file order, still over a limit: where to point the error.

    For a mapping entry that is its key, the line where the expanding value is used."""
    import yaml

    node, shown = root, root
    while True:
        if isinstance(node, yaml.MappingNode):
            pairs = [(key, value) for key, value in node.value if over(measured[id(value)])]
            if not pairs:
                return shown
            shown, node = pairs[0]
        else:
            inner = [child for child in _children(node) if over(measured[id(child)])]
            if not inner:
                return shown
            node = shown = inner[0]


class _YamlConverter:
    """Nodes to dicts, lists and scalars, recording where every key and list item was written."""

    def __init__(self, loader: Any, positions: Positions) -> None:
        self.loader = loader
        self.positions = positions

    def convert(self, node: Any, key_path: KeyPath) -> Any:
        import yaml

        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, key_path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item_node in enumerate(node.value):
                child = (*key_path, index)
                self.positions.lines[child] = (item_node.start_mark.line + 1, item_node.start_mark.column + 1)
                items.append(self.convert(item_node, child))
            return items
        return self._scalar(node)

    def _mapping(self, node: Any, key_path: KeyPath) -> dict[str, Any]:
        import yaml

        result: dict[str, Any] = {}
        # `<<: *defaults` or `<<: [*a, *b]` first: earlier mappings win, keys written here win over all.
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    mark = key_node.start_mark
                    raise ProgramError("`<<` merges mappings; expected a mapping or a list of mappings",
                                       Location(self.positions.path, mark.line + 1, mark.column + 1))
                result.update(self._mapping(source, key_path))
        written: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int, float, bool)):
                raise ProgramError("expected a plain key", Location(self.positions.path, *where))
            key = str(key)
            if key in written:
                raise ProgramError(f"duplicate key {key!r}", Location(self.positions.path, *where))
            written.add(key)
            child = (*key_path, key)
            self.positions.lines[child] = where
            result[key] = self.convert(value_node, child)
        return result

    def _scalar(self, node: Any) -> Any:
        where = Location(self.positions.path, node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag == _INT_TAG:
            digits = sum(ch.isdigit() for ch in node.value)
            if digits > MAX_INT_DIGITS:
                raise ProgramError(f"an integer of {digits} digits; expected at most {MAX_INT_DIGITS}", where)
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, TypeError) as exc:  # e.g. a date such as 2024-13-45
            raise ProgramError(f"cannot read the value {_short(node.value)}: {_one_line(exc)}", where) from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- TOML

# No nested or lazy quantifiers: a valid file may hold 100,000 spaces on one line.
_TABLE = re.compile(r"^\s*(\[\[?)([^\]]*)\]\]?\s*(#.*)?$")
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
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ProgramError(f"nested more than {MAX_DEPTH} levels deep", _deep_toml_line(path, text)) from None
    except ValueError as exc:  # int() refusing more than MAX_INT_DIGITS digits
        long_number = re.search(rf"[0-9][0-9_]{{{MAX_INT_DIGITS},}}", text)
        where = _location_of(path, text, long_number.start()) if long_number else Location(path)
        if long_number:
            raise ProgramError(f"an integer of more than {MAX_INT_DIGITS} digits", where) from None
        raise ProgramError(f"invalid TOML: {_one_line(exc)}", where) from None
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
                return _location_of(path, text, offset)
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
        header = _TABLE.match(line)
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
