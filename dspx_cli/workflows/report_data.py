"""What `dspx report` reads from a run folder: its kind, summary, examples, calls, trials, loss curve.

A run folder may come from anywhere (a CI artifact, a colleague), so it is read as hostile input:
a line that is not a JSON object is skipped with a warning naming file:line; a line longer than
`MAX_LINE_BYTES` is skipped without being held; what is kept is counted, and past `MAX_KEPT_BYTES`
the examples are refused with a one-line error (`--limit N` reads the first N) and the calls are
left out with a warning, so a huge folder neither exhausts memory nor fails silently. Only the
calls of the examples shown count against that budget (with --limit, not the others').

The examples and calls become plain rows for the page (report.py puts them into the HTML); message
texts go into one table of strings, so the system prompt and demos shared by 10,000 calls are
written once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dspx_cli.core.jsonl import bounded_lines
from dspx_cli.errors import UsageError

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 2**20
MAX_KEPT_BYTES = 512 * 2**20  # examples, then calls, each; the page holds about as much again


@dataclass
class Strings:
    """Message texts by number: each distinct text once in the page."""

    texts: list[str] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)

    def number(self, text: str) -> int:
        found = self.numbers.get(text)
        if found is None:
            found = self.numbers[text] = len(self.texts)
            self.texts.append(text)
        return found


@dataclass
class RunData:
    """One run folder as the page shows it."""

    name: str
    kind: str  # evaluate, compile or finetune
    facts: list[tuple[str, str]]
    examples: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)  # before/after for compile and finetune
    notes: list[str] = field(default_factory=list)

    def page(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "facts": self.facts,
            "examples": self.examples,
            "calls": {str(index): calls for index, calls in self.calls.items()},
            "trials": self.trials,
            "loss": self.loss,
            "scores": self.scores,
            "notes": self.notes,
        }


def read_run(directory: Path, strings: Strings, *, limit: int | None = None) -> RunData:
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such run folder")
    summary = _read_json(directory / "summary.json")
    if summary is None and (directory / "state.json").exists():
        # `dspx compile -o DIR/state.json` writes no summary.json; the state's metadata is the same record.
        metadata = _fields(_fields((_read_json(directory / "state.json") or {}).get("metadata")).get("dspx"))
        summary = metadata or None
    kind = _kind(directory, summary)
    if kind is None:
        raise UsageError(
            f"{directory}: not a dspx run folder (expected summary.json or examples.jsonl, "
            "as evaluate, compile and finetune write them)"
        )
    summary = summary or {}
    program = _read_json(directory / "program.json") or {}
    run = RunData(directory.name or str(directory), kind, _facts(kind, summary, program))
    if kind == "evaluate":
        run.examples = _examples(directory / "examples.jsonl", limit)
        wanted = {row["index"] for row in run.examples}
        run.calls = _calls(directory / "calls.jsonl", wanted, strings, run.notes)
        if not (directory / "calls.jsonl").exists():
            run.notes.append("no calls.jsonl: this run folder does not keep the messages sent")
    elif kind == "compile":
        run.trials = [_trial(record) for _, record in _jsonl(directory / "trials.jsonl")]
        run.scores = {"before": summary.get("score_before"), "after": summary.get("score_after")}
    else:
        curve = summary.get("loss_curve")
        run.loss = [float(x) for x in curve if isinstance(x, int | float)] if isinstance(curve, list) else []
        run.scores = {"before": summary.get("score_before"), "after": summary.get("score_after")}
    return run


def _kind(directory: Path, summary: dict[str, Any] | None) -> str | None:
    if (directory / "examples.jsonl").exists():
        return "evaluate"
    if (directory / "compile.json").exists() or (summary is not None and "optimizer" in summary):
        return "compile"
    if (directory / "run.json").exists() or (summary is not None and "traces" in summary):
        return "finetune"
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_LINE_BYTES:
            logger.warning("%s: %d bytes, more than a summary holds; not read", path, path.stat().st_size)
            return None
        value = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("%s: cannot read it (%s)", path, exc.strerror or exc)
        return None
    except orjson.JSONDecodeError as exc:
        logger.warning("%s: not JSON (%s); left out", path, exc)
        return None
    if not isinstance(value, dict):
        logger.warning("%s: expected a JSON object; left out", path)
        return None
    return value


def _jsonl(
    path: Path, budget: list[int] | None = None, kept: Callable[[dict[str, Any]], bool] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each line that is a JSON object; others are warned about.
    `budget`, when given, is bytes still allowed, decremented by each kept line (each line, or
    those `kept` says the caller keeps); reading stops below 0."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("%s: cannot read it (%s)", path, exc.strerror or exc)
        return
    with handle:
        for number, line in bounded_lines(handle, MAX_LINE_BYTES):
            if line is None:
                logger.warning("%s:%d: a line over %d MB; skipped", path, number, MAX_LINE_BYTES >> 20)
                continue
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                logger.warning("%s:%d: not a JSON object; skipped", path, number)
                continue
            if budget is not None and (kept is None or kept(record)):
                budget[0] -= len(line)
                if budget[0] < 0:
                    return
            yield number, record


def _examples(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    budget = [MAX_KEPT_BYTES]
    seen: set[int] = set()
    for number, record in _jsonl(path, budget):
        index = record.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index in seen:
            logger.warning("%s:%d: expected a record with a new integer `index`; skipped", path, number)
            continue
        seen.add(index)
        rows.append(_example(record))
        if limit is not None and len(rows) >= limit:
            break
    if budget[0] < 0:
        raise UsageError(
            f"{path}: more than {MAX_KEPT_BYTES >> 20} MB of examples; "
            f"report the first ones with --limit N (read {len(rows)})"
        )
    rows.sort(key=lambda row: row["index"])
    return rows


def _fields(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _example(record: dict[str, Any]) -> dict[str, Any]:
    usage = _fields(record.get("usage"))
    error = record.get("error")
    return {
        "index": record["index"],
        "inputs": _fields(record.get("inputs")),
        "labels": _fields(record.get("labels")),
        "outputs": _fields(record.get("outputs")),
        "score": _number(record.get("score")),
        "error": None if error is None else str(error),
        "seconds": _number(record.get("seconds")),
        "tokens": sum(int(v) for v in usage.values() if isinstance(v, int) and not isinstance(v, bool)),
        "lm_calls": record.get("lm_calls") if isinstance(record.get("lm_calls"), int) else None,
        "cached": record.get("cached") if isinstance(record.get("cached"), bool) else None,
    }


def _calls(path: Path, wanted: set[int], strings: Strings, notes: list[str]) -> dict[int, list[dict[str, Any]]]:
    calls: dict[int, list[dict[str, Any]]] = {}
    budget = [MAX_KEPT_BYTES]
    # Only the calls of shown examples are kept, so only they use up the budget: under --limit
    # the calls of the examples left out (in calls.jsonl's completion order) cost nothing.
    for number, record in _jsonl(path, budget, kept=lambda record: _index(record) in wanted):
        index = _index(record)
        listed = record.get("calls")
        if not isinstance(index, int) or not isinstance(listed, list):
            logger.warning('%s:%d: expected {"index": N, "calls": [...]}; skipped', path, number)
            continue
        if index in wanted:
            calls[index] = [_call(call, strings) for call in listed if isinstance(call, dict)]
    if budget[0] < 0:
        note = f"{path}: more than {MAX_KEPT_BYTES >> 20} MB of calls; the later examples' calls are left out"
        logger.warning("%s", note)
        notes.append(note)
    return calls


def _index(record: dict[str, Any]) -> int | None:
    """The record's example index; None for anything else a hostile file holds there (a list is unhashable)."""
    index = record.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _call(call: dict[str, Any], strings: Strings) -> dict[str, Any]:
    messages = []
    for message in call.get("messages") or []:
        if isinstance(message, dict):
            content = message.get("content")
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            messages.append([str(message.get("role")), strings.number(text)])
    outputs = call.get("outputs")
    usage = _fields(call.get("usage"))
    return {
        "predictor": call.get("predictor") if isinstance(call.get("predictor"), str) else None,
        "phase": str(call.get("phase") or "program"),
        "model": str(call.get("model") or ""),
        "cached": call.get("cached") is True,
        "latency": _number(call.get("latency_s")),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "messages": messages,
        "outputs": [o if isinstance(o, str) else orjson.dumps(o).decode() for o in outputs]
        if isinstance(outputs, list)
        else [],
        "error": None if call.get("error") is None else str(call.get("error")),
    }


def _trial(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": record.get("number") if isinstance(record.get("number"), int) else None,
        "kind": str(record.get("kind") or ""),
        "score": _number(record.get("score")),
        "best": _number(record.get("best_score")),
    }


# ----- the summary facts ----------------------------------------------------------------------


def _facts(kind: str, summary: dict[str, Any], program: dict[str, Any]) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = [("kind", kind)]
    name = summary.get("program_name") or program.get("name")
    where = summary.get("program")
    if name or where:
        facts.append(("program", f"{name} ({where})" if name and where else str(name or where)))
    models = sorted(_fields(_fields(summary.get("usage")).get("models")))
    lm = _fields(program.get("lm")).get("model")
    if models or lm:
        facts.append(("model", ", ".join(models) if models else str(lm)))
    if kind == "evaluate":
        facts += _evaluate_facts(summary)
    elif kind == "compile":
        facts += _compile_facts(summary)
    else:
        facts += _finetune_facts(summary)
    facts += _usage_facts(_fields(summary.get("usage")))
    if _number(summary.get("seconds")) is not None:
        facts.append(("time", f"{summary['seconds']:.2f} s"))
    if summary.get("finished_at"):
        facts.append(("finished at", str(summary["finished_at"])))
    if not summary:
        facts.append(("summary", "no summary.json (the run did not finish?)"))
    return facts


def _score(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.4f}"


def _evaluate_facts(summary: dict[str, Any]) -> list[tuple[str, str]]:
    facts = []
    if summary.get("split"):
        facts.append(("split", str(summary["split"])))
    if "examples" in summary:
        facts.append(("examples", f"{summary.get('finished')} of {summary.get('examples')}"))
        facts.append(("score", _score(summary.get("score"))))
        facts.append(("errors", str(summary.get("errors"))))
    if summary.get("aborted"):
        facts.append(("aborted", str(summary["aborted"])))
    return facts


def _compile_facts(summary: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("optimizer", str(summary.get("optimizer")))]
    facts.append(("train / dev", f"{summary.get('trainset')} / {summary.get('devset')}"))
    facts.append(("dev score", f"{_score(summary.get('score_before'))} → {_score(summary.get('score_after'))}"))
    report = _fields(summary.get("report"))
    for key in ("best_score", "best_trial", "num_trials", "trials", "study"):
        if key in report:
            facts.append((key.replace("_", " "), str(report[key])))
    return facts


def _finetune_facts(summary: dict[str, Any]) -> list[tuple[str, str]]:
    facts = []
    for key in ("student", "teacher"):
        if summary.get(key):
            facts.append((key, str(summary[key])))
    traces = _fields(summary.get("traces"))
    if traces:
        facts.append(("traces", f"{traces.get('mode')}: {traces.get('records')} records"))
    facts.append(("dev score", f"{_score(summary.get('score_before'))} → {_score(summary.get('score_after'))}"))
    for key in ("steps", "train_seconds", "train_tokens_per_second"):
        if key in summary:
            facts.append((key.replace("_", " "), str(summary[key])))
    return facts


def _usage_facts(usage: dict[str, Any]) -> list[tuple[str, str]]:
    total = _fields(usage.get("total"))
    if not total:
        return []
    facts = [
        ("calls", f"{total.get('calls')} ({total.get('cached_calls')} cached, {total.get('failed_calls')} failed)"),
        ("tokens", f"{total.get('prompt_tokens')} prompt + {total.get('completion_tokens')} completion"),
    ]
    cost = _number(total.get("cost"))
    facts.append(("cost", "-" if cost is None else f"${cost:.4f}"))
    return facts
