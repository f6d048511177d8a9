"""Program inputs from the command line (`-i field=value`) or from a JSON record.

An input whose type admits None (`Optional[str]`, `int | None`) may be left out. It is then absent,
not None, exactly as when a DSPy module is called without that keyword: the prompt has no section
for it (an explicit `-i context=null` is None, which DSPy renders as the text `None`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dspx_cli.core import annotation_name
from dspx_cli.core.media import History, media_annotation
from dspx_cli.errors import UsageError
from dspx_cli.program.input_types import allows_none, takes_text, type_mismatch
from dspx_cli.program.media_inputs import MediaError, prepare_media
from dspx_cli.program.model import Program


def parse_cli_inputs(program: Program, pairs: Iterable[str]) -> dict[str, Any]:
    """Text for `str` fields, JSON for the others (`-i k=3`, `-i context='["a", "b"]'`), each value
    checked against its field's type so a wrong one fails here, before any LM call, with exit 2."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            # `--input rows.jsonl` is what the batch option used to be called: point there.
            hint = f"; to run every JSON line of a file, use --batch {pair}" if not sep and pair.strip() else ""
            raise UsageError(f"-i {pair!r}: expected FIELD=VALUE{hint}")
        field = program.inputs.get(name)
        if field is None:
            raise UsageError(f"-i {name}: {program.path} has no input {name!r}; its inputs are: {_names(program)}")
        if name in values:
            raise UsageError(f"-i {name}: given more than once; pass each input once")
        if field.annotation is History and text.startswith("@"):
            text = _read_json_file(name, text[1:])
        values[name] = _cli_value(name, field.annotation, text)
    missing = _missing(program, values)
    if missing:
        hint = " ".join(f"-i {name}=..." for name in missing)
        raise UsageError(f"missing input(s) {', '.join(missing)} for {program.path}; pass {hint}")
    # Image paths typed on the command line are the user's own: relative to the cwd, unconfined.
    return check_inputs(program, values, base=Path.cwd(), confine=False)


def check_inputs(
    program: Program, values: Mapping[str, Any], *, base: Path | None = None, confine: bool = True
) -> dict[str, Any]:
    """The program's inputs from a record; other keys (labels, ids) are ignored, and optional
    inputs the record lacks stay absent. Each value must fit its field's type as a `-i` value
    must (a `--batch` row's UsageError becomes that row's error record). Image files are read relative to `base` (the cwd when
    None), confined to it unless `confine` is False (program/media_inputs.py)."""
    missing = _missing(program, values)
    if missing:
        raise UsageError(f"missing input(s) {', '.join(missing)}; expected keys: {', '.join(program.inputs)}")
    inputs = {name: values[name] for name in program.inputs if name in values}
    for name, value in inputs.items():
        annotation = program.inputs[name].annotation
        if media_annotation(annotation) is not None:
            continue  # prepare_media checks (and reads) Image and History values, with its own messages
        problem = type_mismatch(value, annotation)
        if problem is not None and type(value) in (int, float, bool) and takes_text(annotation):
            # A row's `"zip": 12345` for a text input (str, Optional[str], ...) is the text
            # `-i zip=12345` gives: a number is no mistake there, and the program declared text.
            value = inputs[name] = json.dumps(value)
            problem = type_mismatch(value, annotation)
        if problem is not None:
            raise UsageError(f"input {name!r}: expected {annotation_name(annotation)} ({problem})")
    try:
        return prepare_media(program.inputs, inputs, base or Path.cwd(), confine=confine)
    except MediaError as exc:
        raise UsageError(str(exc)) from None


def _read_json_file(name: str, path: str) -> str:
    """`-i history=@turns.json`: the file's text, read as the value's JSON."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"-i {name}=@{path}: cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None


def _missing(program: Program, values: Mapping[str, Any]) -> list[str]:
    return [name for name, f in program.inputs.items() if name not in values and not allows_none(f.annotation)]


def _cli_value(name: str, annotation: Any, text: str) -> Any:
    """The JSON reading when it fits the type, else the text itself when that fits (a bare word
    for a Literal or `Optional[str]` field is what people type), else a one-line error."""
    if annotation is str:
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, too deep, or an integer past Python's digit limit
        parsed = False
    else:
        parsed = True
        problem = type_mismatch(value, annotation)
        if problem is None:
            return value
    text_problem = type_mismatch(text, annotation)
    if text_problem is None:
        return text
    expected = annotation_name(annotation)
    if not parsed:
        if not takes_text(annotation):
            raise UsageError(f"-i {name}: expected JSON for type {expected}, got {_shown(text)}")
        problem = text_problem
    raise UsageError(f"-i {name}: expected {expected}, got {_shown(text)} ({problem})")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _names(program: Program) -> str:
    return ", ".join(f"{n} ({annotation_name(f.annotation)})" for n, f in program.inputs.items()) or "none"
