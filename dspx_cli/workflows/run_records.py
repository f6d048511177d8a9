"""Reading an evaluate run folder back (workflows/run_folder.py writes it) for `dspx compare`.

The folder is trusted only as far as it checks out: a missing folder or examples.jsonl, or a
summary.json that is not a JSON object, is a one-line error naming the file (exit 2); a line of
examples.jsonl that is not a record (a run killed mid-write leaves half a line) is skipped with a
warning naming file:line, so one bad row never loses the others. A folder without summary.json (a
run still going, or killed before it could write one) is read for the examples it has.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.core.jsonl import bounded_lines
from dspx_cli.errors import UsageError

__all__ = ["ExampleRecord", "RunRecords", "canonical_inputs", "load_run"]

log = logging.getLogger(__name__)

EXAMPLES = "examples.jsonl"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class ExampleRecord:
    """One line of examples.jsonl, checked; `line` is its 1-based line number in the file."""

    index: int
    inputs: dict[str, Any]
    labels: dict[str, Any]
    outputs: dict[str, Any] | None
    score: float
    error: str | None
    seconds: float | None
    line: int

    def passed(self, pass_score: float) -> bool:
        """What evaluate's JUnit report calls a pass: no error and a score of at least `pass_score`."""
        return self.error is None and self.score >= pass_score

    def brief(self) -> dict[str, Any]:
        return {"index": self.index, "outputs": self.outputs, "score": self.score, "error": self.error}


@dataclass(frozen=True)
class RunRecords:
    directory: Path
    examples: list[ExampleRecord]  # by example index (a killed run wrote them in finishing order)
    summary: dict[str, Any] | None  # None: no summary.json (the run is going on, or was killed)
    skipped: list[str]  # `file:line: why` of every line of examples.jsonl that was not a record

    @property
    def complete(self) -> bool:
        return self.summary is not None and not self.summary.get("aborted")

    def setting(self, name: str) -> Any:
        settings = (self.summary or {}).get("settings")
        return settings.get(name) if isinstance(settings, dict) else None


def canonical_inputs(inputs: dict[str, Any]) -> str:
    """The key two runs' examples are matched by: the same inputs give the same text, whatever the
    order of their keys."""
    return json.dumps(inputs, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def load_run(directory: Path) -> RunRecords:
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such run folder" if not directory.exists() else f"{directory}: not a folder")
    examples_file = directory / EXAMPLES
    if not examples_file.is_file():
        raise UsageError(_not_an_evaluate_run(directory))
    summary = _summary(directory / SUMMARY)
    examples, skipped = _examples(examples_file)
    return RunRecords(directory, sorted(examples, key=lambda record: record.index), summary, skipped)


def _not_an_evaluate_run(directory: Path) -> str:
    if (directory / "compile.json").is_file() or (directory / "state.json").is_file():
        return (
            f"{directory}: a compile run folder keeps no per-example results ({EXAMPLES}); to compare it, evaluate "
            f"its state: dspx evaluate PROGRAM --state {directory / 'state.json'} --output DIR"
        )
    if (directory / "run.json").is_file() or (directory / "train.jsonl").is_file():
        return (
            f"{directory}: a finetune run folder keeps no per-example results ({EXAMPLES}); to compare it, "
            f"evaluate its state: dspx evaluate PROGRAM --state {directory / 'state.json'} --output DIR"
        )
    return f"{directory / EXAMPLES}: not found; expected the folder of a `dspx evaluate` run"


def _summary(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object (the run's summary), found {type(value).__name__}")
    return value


MAX_LINE_BYTES = 64 << 20  # an example record longer than this is skipped unread (as `dspx report` does)


def _examples(path: Path) -> tuple[list[ExampleRecord], list[str]]:
    records: list[ExampleRecord] = []
    skipped: list[str] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        for number, raw in bounded_lines(handle, MAX_LINE_BYTES):
            if raw is not None and not raw.strip():
                continue
            try:
                if raw is None:  # a hostile folder's one huge line is not held in memory
                    raise ValueError(f"a line over {MAX_LINE_BYTES >> 20} MB")
                records.append(_record(raw, number))
            except ValueError as exc:
                where = f"{path}:{number}: skipped: {exc}"
                log.warning(where)
                skipped.append(where)
    return records, skipped


def _record(raw: bytes, line: int) -> ExampleRecord:
    """One checked record; a ValueError says what is wrong with the line."""
    try:
        value = json.loads(raw.decode("utf-8").rstrip("\r\n"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    index, inputs, score = value.get("index"), value.get("inputs"), value.get("score")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError("expected an integer 'index'")
    if not isinstance(inputs, dict):
        raise ValueError("expected an object 'inputs'")
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise ValueError("expected a number 'score'")
    labels, outputs, error, seconds = (
        value.get("labels"),
        value.get("outputs"),
        value.get("error"),
        value.get("seconds"),
    )
    if labels is not None and not isinstance(labels, dict):
        raise ValueError("expected an object 'labels'")
    if outputs is not None and not isinstance(outputs, dict):
        raise ValueError("expected an object or null 'outputs'")
    if error is not None and not isinstance(error, str):
        raise ValueError("expected a string or null 'error'")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        seconds = None
    return ExampleRecord(index, inputs, labels or {}, outputs, float(score), error, seconds, line)
