"""Datasets: the `data:` section of a program (or `--dataset FILE`) read into Examples.

Formats, chosen by the file's extension:

- `.jsonl` / `.ndjson`: one JSON object per line; blank lines are skipped.
- `.json`: a list of objects, or `{"examples": [...]}`.
- `.csv`: a header row, then one example per row. Cells are text; a cell of a field whose declared
  type is not text (a program input, or a program output used as a label) is parsed as JSON when
  it is valid JSON, so `k=3` or `context=["a", "b"]` arrive typed, as they would from JSONL.

Splits are `train`, `dev` and `test`. Each is either its own file (`data.dev: dev.jsonl`) or a
share of one file (`data.path` + `data.split: {train: 0.8, dev: 0.2, seed: 0}`): the records are
shuffled with `random.Random(seed)` and cut in the order train, dev, test, split i taking records
[round(n * f_<i), round(n * f_<=i)) where f are the cumulative fractions. The cut is a pure
function of the file, the fractions and the seed, so every run and every machine sees the same
examples in each split; a share of 0 means the split is not configured.

Program paths resolve against the program file's folder; `--dataset FILE` (relative to the working
directory) replaces the requested split's file and is read whole. `limit` keeps the first N
examples of the split. Every example is `Example(record).with_inputs(*inputs)`, where `inputs` is
`data.inputs` or, by default, the program's input names.

Files are read as bytes and decoded line by line, so a bad line (not UTF-8, not JSON, nested too
deeply, missing an input) spoils only itself. `load_examples` refuses a file with any bad line
(for checks); `load_rows` keeps the good rows and returns each bad one as a `BadRow` in its place,
so `evaluate` can count it as a failed example and `compile` can skip it with a warning.

An `Image` input naming a file is checked by `stat` (inside the data file's folder, an image
name, within the size cap) and kept as an `ImageFile`: its bytes are read when the example runs
(core/image_file.py), so loading a dataset of big images takes no more memory than its rows.
"""

from __future__ import annotations

import csv
import io
import json
import random
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from dspx_cli.core import Example
from dspx_cli.core.json_values import json_kind
from dspx_cli.core.jsonl import BadLine, decode_line, first_clause, read_objects
from dspx_cli.core.media import media_annotation
from dspx_cli.errors import DspxError, Location, ProgramError, UsageError
from dspx_cli.program.input_types import allows_none
from dspx_cli.program.media_inputs import MediaError, prepare_media
from dspx_cli.program.model import Program

__all__ = ["SPLITS", "BadRow", "configured_splits", "load_examples", "load_rows"]

SPLITS = ("train", "dev", "test")
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
_SUM_TOLERANCE = 1e-9  # 0.7 + 0.2 + 0.1 is 1.0000000000000002 in floating point


class _File(NamedTuple):
    """A data file and who named it: the program (errors are ProgramErrors) or the command line.
    Private records here are NamedTuples, cheaper to define than dataclasses (cli/fast_path.py)."""

    path: Path
    origin: Location | None  # where the program names it; None for --dataset
    key: str  # "data.dev", "data.path" or "--dataset", for messages

    def error(self, message: str, line: int | None = None) -> DspxError:
        where = Location(self.path, line)
        if self.origin is None:
            return UsageError(f"{where}: {message}")
        return ProgramError(message, where)

    def config_error(self, message: str) -> DspxError:
        """An error about the file as a whole, reported where it was named."""
        if self.origin is None:
            return UsageError(f"{self.key}: {message}")
        return ProgramError(f"{self.key}: {message}", self.origin)


class _Record(NamedTuple):
    """One row of a data file, before it becomes an Example (or a BadRow when `problem` is set)."""

    values: dict[str, Any]
    where: str  # "line 3", "row 3" or "item 3"
    line: int | None
    problem: str | None = None  # why this row cannot be an example


@dataclass(frozen=True)
class BadRow:
    """A dataset row that cannot be an example; `where` is `file:line` (or `file: item N`)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def configured_splits(program: Program) -> list[str]:
    """The splits the program's `data:` section provides, checking the section on the way."""
    data = program.spec.data
    if data is None:
        return []
    if data.split is not None and data.path is None:
        raise ProgramError("data.split needs data.path, the file to split", program.positions.locate(("data", "split")))
    shares = _shares(program)
    return [name for name in SPLITS if getattr(data, name) is not None or shares.get(name, 0.0) > 0]


def load_examples(
    program: Program,
    split: str = "dev",
    *,
    dataset: Path | None = None,
    limit: int | None = None,
) -> list[Example]:
    """The split's examples; a bad row anywhere in the file is an error naming its file and line."""
    _, records = _records(program, split, dataset, limit, strict=True)
    inputs = _input_keys(program)
    return [Example(record.values).with_inputs(*inputs) for record in records]


def load_rows(
    program: Program,
    split: str = "dev",
    *,
    dataset: Path | None = None,
    limit: int | None = None,
) -> list[Example | BadRow]:
    """The split's rows in order, a bad row as a `BadRow` in its place (`limit` counts it too).
    Errors about the file as a whole (missing, not a list, no rows) are still raised."""
    source, records = _records(program, split, dataset, limit, strict=False)
    inputs = _input_keys(program)
    return [
        Example(record.values).with_inputs(*inputs)
        if record.problem is None
        else BadRow(_where(source, record), record.problem)
        for record in records
    ]


def _records(
    program: Program, split: str, dataset: Path | None, limit: int | None, *, strict: bool
) -> tuple[_File, list[_Record]]:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    inputs = _input_keys(program)
    types = _field_types(program)

    if dataset is not None:
        source = _File(Path(dataset).expanduser(), None, "--dataset")
        records = _read(source, types, strict)
        what = f"{source.path}"
    else:
        source, records, what = _split_records(program, split, types, strict)
    records = _check_inputs(records, inputs, _optional_inputs(program))
    records = _with_media(program, records, source)
    if strict:
        _refuse_bad(source, records)
    if not records:
        raise source.config_error(f"{what} has no examples")
    if limit is not None:
        records = records[:limit]
    return source, records


def _refuse_bad(source: _File, records: Iterable[_Record]) -> list[_Record]:
    """`records`, or the error of the first bad one (read lazily: later rows are not parsed)."""
    checked = []
    for record in records:
        if record.problem is not None:
            # A line number goes into the location; a JSON item has none, so the message names it.
            prefix = "" if record.line is not None else f"{record.where}: "
            raise source.error(prefix + record.problem, record.line)
        checked.append(record)
    return checked


def _where(source: _File, record: _Record) -> str:
    return f"{source.path}:{record.line}" if record.line is not None else f"{source.path}: {record.where}"


# ----- the data section ------------------------------------------------------------------------


def _split_records(
    program: Program, split: str, types: dict[str, Any], strict: bool
) -> tuple[_File, list[_Record], str]:
    available = configured_splits(program)
    if split not in available:
        offered = ", ".join(available) if available else "none"
        hint = f"pass --split {available[0]} or" if available else "add a data: section, or pass"
        raise UsageError(
            f"{program.path} configures no {split!r} split (configured splits: {offered}); {hint} --dataset FILE"
        )
    data = program.spec.data
    assert data is not None  # configured_splits returned a split
    positions = program.positions
    explicit = getattr(data, split)
    if explicit is not None:
        source = _File(_resolve(program, explicit), positions.locate(("data", split)), f"data.{split}")
        return source, _read(source, types, strict), str(source.path)

    assert data.path is not None and data.split is not None
    source = _File(_resolve(program, data.path), positions.locate(("data", "path")), "data.path")
    # Bad rows are shuffled with the good ones, so fixing a line never moves the others between splits.
    records = _read(source, types, strict)
    shares = _shares(program)
    order = list(records)
    random.Random(data.split.seed).shuffle(order)
    total, start = 0.0, 0
    for name in SPLITS:
        total += shares[name]
        end = round(len(order) * total)
        if name == split:
            what = f"the {split} split ({shares[name]:g} of {len(order)} examples) of {source.path}"
            return source, order[start:end], what
        start = end
    raise AssertionError("split is one of SPLITS")


def _shares(program: Program) -> dict[str, float]:
    data = program.spec.data
    if data is None or data.split is None:
        return {}
    shares = {name: float(getattr(data.split, name)) for name in SPLITS}
    if sum(shares.values()) > 1 + _SUM_TOLERANCE:
        listed = ", ".join(f"{name} {share:g}" for name, share in shares.items() if share)
        raise ProgramError(
            f"data.split fractions add up to more than 1 ({listed})", program.positions.locate(("data", "split"))
        )
    if data.path is not None and not any(shares.values()):
        raise ProgramError(
            "data.split gives every split a share of 0; set train, dev and/or test to a fraction",
            program.positions.locate(("data", "split")),
        )
    return shares


def _resolve(program: Program, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else program.base_dir / path


def _input_keys(program: Program) -> list[str]:
    data = program.spec.data
    if data is None or data.inputs is None:
        return list(program.inputs)
    missing = [name for name in program.inputs if name not in data.inputs]
    if missing:
        raise ProgramError(
            f"data.inputs lacks the program input(s) {', '.join(missing)}; every program input must be an "
            f"input key of the data (program inputs: {', '.join(program.inputs)})",
            program.positions.locate(("data", "inputs")),
        )
    return list(data.inputs)


def _field_types(program: Program) -> dict[str, Any]:
    """Declared types of program inputs and outputs, to read typed CSV cells."""
    types: dict[str, Any] = {}
    steps = {step.id: step for step in program.steps}
    for name, ref in program.outputs.items():
        step = steps.get(ref.source)
        if step is not None:
            field = program.modules[step.module].signature.output_fields.get(ref.field)
            types[name] = field.annotation if field is not None else str
    types.update({name: field.annotation for name, field in program.inputs.items()})
    return types


def _optional_inputs(program: Program) -> set[str]:
    """Inputs whose type admits None: a record may leave them out, as `-i` and --batch rows may
    (the example then lacks them and the prompt has no section for them, as in DSPy)."""
    return {name for name, field in program.inputs.items() if allows_none(field.annotation)}


def _check_inputs(records: list[_Record], inputs: list[str], optional: set[str]) -> list[_Record]:
    checked = []
    for record in records:
        problem = record.problem
        for key in inputs:
            if problem is not None:
                break
            if key in optional:
                continue
            if key not in record.values:
                present = ", ".join(record.values) or "none"
                problem = f"the record has no input {key!r} (its keys: {present})"
            elif record.values[key] is None:
                problem = f"input {key!r} is null"
        checked.append(record if problem is record.problem else _Record({}, record.where, record.line, problem))
    return checked


def _with_media(program: Program, records: list[_Record], source: _File) -> list[_Record]:
    """Image files checked inside the data file's folder, kept as ImageFiles to read when their
    example runs (a dataset's images would not fit in memory at once); History values normalised."""
    if not any(_is_media(f.annotation) for f in program.inputs.values()):
        return records
    out = []
    for record in records:
        if record.problem is not None:
            out.append(record)
            continue
        try:
            where = _where(source, record)
            values = prepare_media(
                program.inputs, record.values, source.path.parent, confine=True, lazy=True, where=where
            )
        except MediaError as exc:
            out.append(_Record({}, record.where, record.line, str(exc)))
        else:
            out.append(record._replace(values=values))
    return out


def _is_media(annotation: Any) -> bool:
    return media_annotation(annotation) is not None


# ----- file formats ----------------------------------------------------------------------------


def _read(source: _File, types: dict[str, Any], strict: bool) -> list[_Record]:
    """Every row of the file, bad ones with their problem; `strict` stops at the first bad row."""
    kind = _FORMATS.get(source.path.suffix.lower())
    if kind is None:
        raise source.config_error(f"{source.path}: expected a .jsonl, .json or .csv file")
    try:
        data = source.path.read_bytes()
    except FileNotFoundError:
        raise source.config_error(f"file not found: {source.path}") from None
    except OSError as exc:
        raise source.config_error(f"cannot read {source.path}: {exc.strerror or exc}") from None
    if kind == "json":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise source.config_error(f"{source.path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        items = _read_json(source, text)
        return _refuse_bad(source, items) if strict else items
    records: Iterable[_Record]
    if kind == "jsonl":
        records = _read_jsonl(data)
    else:
        # Split on "\n" only, as the JSONL reader: CSV cells may hold U+2028, which splitlines() cuts at.
        lines = [decode_line(raw, first=number == 1) for number, raw in enumerate(data.split(b"\n"), start=1)]
        records = _read_csv(source, lines, types)
    # Strict: the whole file is checked here, before a split could hide a bad row in another split.
    return _refuse_bad(source, records) if strict else list(records)


def _read_jsonl(data: bytes) -> Iterator[_Record]:
    for number, value in read_objects(data):
        if isinstance(value, BadLine):
            yield _Record({}, f"line {number}", number, value.problem)
        else:
            yield _Record(value, f"line {number}", number)


def _read_json(source: _File, text: str) -> list[_Record]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise source.error(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except RecursionError:
        raise source.error("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise source.error(f"invalid JSON: {first_clause(exc)}") from None
    if isinstance(value, dict) and isinstance(value.get("examples"), list):
        value = value["examples"]
    if not isinstance(value, list):
        raise source.error(f'expected a list of JSON objects or {{"examples": [...]}}, got {json_kind(value)}')
    records = []
    for index, item in enumerate(value, start=1):
        if isinstance(item, dict):
            records.append(_Record(item, f"item {index}", None))
        else:
            records.append(_Record({}, f"item {index}", None, f"expected a JSON object, got {json_kind(item)}"))
    return records


def _read_csv(source: _File, lines: list[tuple[str, str | None]], types: dict[str, Any]) -> Iterator[_Record]:
    undecodable = {number: why for number, (_, why) in enumerate(lines, start=1) if why is not None}
    reader = csv.reader(io.StringIO("\n".join(text for text, _ in lines), newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise source.error("expected a header row naming the columns", 1)
        if 1 in undecodable:
            raise source.error(f"the header row is {undecodable[1]}", 1)
        header = [cell.strip() for cell in header]
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated or "" in header:
            problem = f"duplicate column(s) {', '.join(duplicated)}" if duplicated else "an empty column name"
            raise source.error(f"the header row has {problem}", 1)
        while True:
            line = reader.line_num + 1  # where the row starts; a quoted cell may span lines
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue
            spoiled = next((undecodable[n] for n in range(line, reader.line_num + 1) if n in undecodable), None)
            if spoiled is not None:
                yield _Record({}, f"row {line}", line, spoiled)
            elif len(row) != len(header):
                yield _Record({}, f"row {line}", line, f"row has {len(row)} cells, the header has {len(header)}")
            else:
                values = {name: _cell(cell, types.get(name, str)) for name, cell in zip(header, row, strict=True)}
                yield _Record(values, f"row {line}", line)
    except csv.Error as exc:
        raise source.error(f"invalid CSV: {exc}", reader.line_num) from None


def _cell(text: str, annotation: Any) -> Any:
    if _wants_text(annotation):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text  # not JSON: the text itself, which the adapter or the metric may still accept


def _wants_text(annotation: Any) -> bool:
    """Text types keep their cells as typed: `"7"` for a `str` field stays the text "7"."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return all(isinstance(arg, str) for arg in args)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        members = [arg for arg in args if arg is not type(None)]
        return bool(members) and all(_wants_text(arg) for arg in members)
    return False
