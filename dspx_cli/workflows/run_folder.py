"""What an evaluation leaves behind: a run folder and, on request, a JUnit XML report.

runs/<timestamp>-<program>/
    program.json     the program as resolved (interpolated, defaults filled), secrets redacted
    examples.jsonl   one record per finished example, appended as each finishes
    calls.jsonl      one line per finished example: the LM calls it made, in the order they ended
    summary.json     score, counts, usage and timing, written at the end (also on failure)

An examples.jsonl record holds index, inputs, labels, outputs, score, error, usage, seconds, and
`lm_calls` (how many calls the example made, its metric's included) and `cached` (true when every
one was answered from the cache; null when it made none). It is rewritten in example order at the end.

calls.jsonl is kept apart so examples.jsonl stays small to read (`dspx compare`, jq) however long
the prompts are: `{"index": 3, "calls": [call, ...]}`, lines in the order examples finished (join
on `index`). A call is the history's record (lm/observed.py: timestamp, model, messages, params,
latency_s, cache_key, outputs, usage, cached, error) without the LM settings (program.json has
them), plus `predictor` (the predictor's name as a state file names it; null for a call from
outside the program) and `phase` ("program", or "metric" for an LM judge's calls). Messages and
replies are the user's data, written as they were sent; settings are redacted and requests never
hold the API key. Embeddings calls are not kept. The calls are written when their example
finishes and then released, so 10,000 examples are not held in memory; the file grows with the
prompts (roughly examples x calls x prompt size: the demos of every prompt are written each time).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import orjson

from dspx_cli.core.redact import redact
from dspx_cli.evaluate.evaluator import Evaluation, ExampleResult
from dspx_cli.program.model import Program

CALLS_FILE = "calls.jsonl"


def default_run_dir(program: Program, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", program.name).strip("-") or "program"
    return root / f"{stamp}-{slug}"


def resolved_program(program: Program) -> dict[str, Any]:
    return redact(program.spec.model_dump(by_alias=True, mode="json"))


def program_hash(program: Program) -> str:
    return hashlib.sha256(program.path.read_bytes()).hexdigest()[:16]


class RunFolder:
    """Writes as results arrive, so a killed run keeps every example it finished."""

    def __init__(self, directory: Path, program: Program, callers: Mapping[int, str] | None = None) -> None:
        """`callers`: predictor names by `id()` of the predictor, for calls.jsonl."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "program.json").write_text(json.dumps(resolved_program(program), indent=2) + "\n")
        self._examples = (directory / "examples.jsonl").open("w", encoding="utf-8")
        self._calls = (directory / CALLS_FILE).open("w", encoding="utf-8")
        self.callers: Mapping[int, str] = callers or {}
        self._lock = threading.Lock()

    def add(self, result: ExampleResult) -> None:
        line = json.dumps(result.record(), ensure_ascii=False, default=str) + "\n"
        calls = self._calls_line(result)
        with self._lock:
            self._examples.write(line)
            self._examples.flush()
            if calls is not None:
                self._calls.write(calls)
                self._calls.flush()

    def _calls_line(self, result: ExampleResult) -> str | None:
        if result.calls is None:
            return None
        calls = []
        for number, (caller, record) in enumerate(result.calls):
            name = self.callers.get(id(caller)) if caller is not None else None
            phase = "program" if result.program_calls is None or number < result.program_calls else "metric"
            kept = {key: value for key, value in record.items() if key != "lm"}
            calls.append({"predictor": name, "phase": phase, **kept})
        result.calls = None  # written: not held until the run ends
        # orjson, as the history: the prompts are most of the bytes, dumped once per example.
        line = orjson.dumps({"index": result.index, "calls": calls}, default=str, option=orjson.OPT_NON_STR_KEYS)
        return line.decode() + "\n"

    def finish(self, summary: dict[str, Any], evaluation: Evaluation | None) -> None:
        self._examples.close()
        self._calls.close()
        if evaluation is not None:  # rewrite in example order now that all are known
            with (self.directory / "examples.jsonl").open("w", encoding="utf-8") as handle:
                for result in evaluation.results:
                    handle.write(json.dumps(result.record(), ensure_ascii=False, default=str) + "\n")
        (self.directory / "summary.json").write_text(json.dumps(redact(summary), indent=2, default=str) + "\n")


def summary_dict(
    program: Program,
    evaluation: Evaluation,
    *,
    split: str,
    seconds: float,
    usage: dict[str, Any],
    min_score: float | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    return redact(
        {
            "program": str(program.path),
            "program_name": program.name,
            "program_sha256": program_hash(program),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "split": split,
            "examples": evaluation.total,
            "finished": len(evaluation.results),
            "errors": evaluation.errors,
            "score": evaluation.score,
            "min_score": min_score,
            "passed": None if min_score is None else evaluation.score >= min_score,
            "aborted": evaluation.aborted,
            "seconds": round(seconds, 3),
            "usage": usage,
            "settings": settings,
        }
    )


def write_junit(path: Path, program: Program, evaluation: Evaluation, *, pass_score: float, seconds: float) -> None:
    """One testcase per example: an error is a JUnit error, a score below `pass_score` a failure."""
    failures = sum(1 for r in evaluation.results if r.error is None and r.score < pass_score)
    suite = ElementTree.Element(
        "testsuite",
        name=program.name,
        tests=str(evaluation.total),
        failures=str(failures),
        errors=str(evaluation.errors),
        skipped=str(evaluation.total - len(evaluation.results)),
        time=f"{seconds:.3f}",
    )
    properties = ElementTree.SubElement(suite, "properties")
    ElementTree.SubElement(properties, "property", name="score", value=f"{evaluation.score:.6f}")
    if evaluation.aborted:  # interrupted or stopped at max_errors: the unrun examples are `skipped`
        ElementTree.SubElement(properties, "property", name="aborted", value=evaluation.aborted)
    for result in evaluation.results:
        case = ElementTree.SubElement(
            suite, "testcase", classname=program.name, name=f"example-{result.index}", time=f"{result.seconds:.3f}"
        )
        case_properties = ElementTree.SubElement(case, "properties")
        ElementTree.SubElement(case_properties, "property", name="score", value=f"{result.score:.6f}")
        if result.error is not None:
            ElementTree.SubElement(case, "error", message=result.error[:500]).text = result.error
        elif result.score < pass_score:
            detail = json.dumps(
                {"inputs": result.record()["inputs"], "labels": result.record()["labels"], "outputs": result.outputs},
                ensure_ascii=False,
                default=str,
            )
            ElementTree.SubElement(case, "failure", message=f"score {result.score:g} < {pass_score:g}").text = detail
    root = ElementTree.Element("testsuites")
    root.append(suite)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
