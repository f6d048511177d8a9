"""YAML program files, read through the composer so every key keeps its line and column.

The composer shares the node of an anchor among its aliases, so the graph stays as small as the file; it is measured (size and depth,
aliases followed) before it is turned into plain data, where sharing would end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dspx_cli.errors import Location, ProgramError
from dspx_cli.program.source import (
    MAX_ALIAS_EXPANSION,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    KeyPath,
    Positions,
    location_of,
    one_line,
)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"


def read_yaml(path: Path, text: str) -> tuple[Any, Positions]:
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
        raise ProgramError(f"invalid YAML: {one_line(exc.problem or exc.context)}", where) from None
    except yaml.reader.ReaderError as exc:
        raise ProgramError(f"invalid YAML: {one_line(exc.reason)}", location_of(path, text, exc.position)) from None
    except yaml.YAMLError as exc:
        raise ProgramError(f"invalid YAML: {one_line(exc)}", Location(path)) from None
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
                    where = Location(path, mark.line + 1, mark.column + 1) if mark is not None else Location(path)
                    raise ProgramError(f"nested more than {MAX_DEPTH} levels deep", where)
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
                    raise ProgramError(
                        "`<<` merges mappings; expected a mapping or a list of mappings",
                        Location(self.positions.path, mark.line + 1, mark.column + 1),
                    )
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
            raise ProgramError(f"cannot read the value {_short(node.value)}: {one_line(exc)}", where) from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
