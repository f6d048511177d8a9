"""`compare`: what changed between two evaluate runs, example by example.

Examples are matched by their inputs (canonical JSON, so key order does not matter); when a run
holds the same inputs more than once, the k-th occurrence in one run (by example index) is
matched with the k-th in the other. An example passes as in evaluate's JUnit report: no error and
a score of at least the pass score. A matched example that passed in the base run and fails in
the new one is a regression; the other way round, a fix.

Runs of different programs or datasets compare on the examples they share; every such difference
(program, split, dataset, examples only in one run, a run that did not finish, lines skipped) is
said in `notes`, in the text, the markdown and the JSON document alike.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.errors import TooManyRegressions, UsageError
from dspx_cli.workflows.run_records import ExampleRecord, RunRecords, canonical_inputs, load_run

__all__ = ["FORMAT", "Comparison", "compare_folders", "compare_runs", "load_run"]

FORMAT = 1  # the `dspx_compare` version of the JSON document; bumped when a key changes meaning
DEFAULT_PASS_SCORE = 1.0  # what `dspx evaluate --junit-pass` defaults to

Pair = tuple[ExampleRecord, ExampleRecord]


@dataclass(frozen=True)
class Comparison:
    base: RunRecords
    new: RunRecords
    pass_score: float
    pairs: list[Pair]  # matched examples, in the base run's example order
    only_base: list[ExampleRecord]
    only_new: list[ExampleRecord]
    notes: list[str]

    @property
    def regressions(self) -> list[Pair]:
        return [(b, n) for b, n in self.pairs if b.passed(self.pass_score) and not n.passed(self.pass_score)]

    @property
    def fixes(self) -> list[Pair]:
        return [(b, n) for b, n in self.pairs if not b.passed(self.pass_score) and n.passed(self.pass_score)]

    def check(self, max_regressions: int | None) -> None:
        """Exit 4 when more examples regressed than allowed."""
        count = len(self.regressions)
        if max_regressions is not None and count > max_regressions:
            raise TooManyRegressions(
                f"{count} example{'s' if count != 1 else ''} regressed (pass to fail), "
                f"more than --max-regressions {max_regressions}"
            )

    def totals(self) -> dict[str, dict[str, Any]]:
        """Whole-run figures of each run and new minus base (None where either run lacks one)."""
        base, new = _run_totals(self.base), _run_totals(self.new)
        return {"base": base, "new": new, "delta": _delta(base, new)}

    def shared(self) -> dict[str, Any]:
        """Score, errors and passes over the matched examples only: like for like."""
        base = _side([b for b, _ in self.pairs], self.pass_score)
        new = _side([n for _, n in self.pairs], self.pass_score)
        return {"examples": len(self.pairs), "base": base, "new": new, "delta": _delta(base, new)}

    def document(self, max_regressions: int | None = None) -> dict[str, Any]:
        """The `--json` document (README, "Comparing runs", describes every key)."""
        regressions = self.regressions
        return {
            "dspx_compare": FORMAT,
            "base": _identity(self.base),
            "new": _identity(self.new),
            "pass_score": self.pass_score,
            "matched": len(self.pairs),
            "only_in_base": len(self.only_base),
            "only_in_new": len(self.only_new),
            "notes": self.notes,
            "regressions": [_change(b, n) for b, n in regressions],
            "fixes": [_change(b, n) for b, n in self.fixes],
            "shared": self.shared(),
            "totals": self.totals(),
            "max_regressions": max_regressions,
            "exceeded": max_regressions is not None and len(regressions) > max_regressions,
        }


def compare_runs(base: RunRecords, new: RunRecords, pass_score: float | None = None) -> Comparison:
    if pass_score is None:
        pass_score = _recorded_pass_score(new, base)
    pairs, only_base, only_new = _match(base.examples, new.examples)
    comparison = Comparison(base, new, pass_score, pairs, only_base, only_new, [])
    comparison.notes.extend(_notes(comparison))
    return comparison


def compare_folders(base: Path, new: Path, pass_score: float | None = None) -> Comparison:
    if base.resolve() == new.resolve():
        raise UsageError(f"{base} and {new} are the same run folder")
    return compare_runs(load_run(base), load_run(new), pass_score)


def _recorded_pass_score(*runs: RunRecords) -> float:
    """The --junit-pass the new run was made with (else the base run's), else JUnit's default."""
    for run in runs:
        value = run.setting("pass_score")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return DEFAULT_PASS_SCORE


def _match(
    base: list[ExampleRecord], new: list[ExampleRecord]
) -> tuple[list[Pair], list[ExampleRecord], list[ExampleRecord]]:
    waiting: dict[str, list[ExampleRecord]] = defaultdict(list)
    for record in reversed(new):  # popped from the end: first occurrence first
        waiting[canonical_inputs(record.inputs)].append(record)
    pairs: list[Pair] = []
    only_base: list[ExampleRecord] = []
    for record in base:
        queue = waiting.get(canonical_inputs(record.inputs))
        if queue:
            pairs.append((record, queue.pop()))
        else:
            only_base.append(record)
    paired = {id(n) for _, n in pairs}
    return pairs, only_base, [record for record in new if id(record) not in paired]


def _notes(comparison: Comparison) -> list[str]:
    base, new = comparison.base, comparison.new
    bs, ns = base.summary or {}, new.summary or {}
    notes = []
    if bs.get("program_sha256") and ns.get("program_sha256") and bs["program_sha256"] != ns["program_sha256"]:
        notes.append(
            f"different program files: base {bs.get('program_name')} ({bs['program_sha256']}), "
            f"new {ns.get('program_name')} ({ns['program_sha256']})"
        )
    if bs.get("split") and ns.get("split") and bs["split"] != ns["split"]:
        notes.append(f"different splits: base {bs['split']}, new {ns['split']}")
    if base.summary is not None and new.summary is not None and base.setting("dataset") != new.setting("dataset"):
        notes.append(f"different --dataset: base {base.setting('dataset')}, new {new.setting('dataset')}")
    elif bs.get("dataset_sha256") and ns.get("dataset_sha256") and bs["dataset_sha256"] != ns["dataset_sha256"]:
        notes.append("different examples: the datasets the runs read differ")
    if comparison.only_base or comparison.only_new:
        notes.append(
            f"compared on the {len(comparison.pairs)} examples both runs have: "
            f"{len(comparison.only_base)} only in base, {len(comparison.only_new)} only in new"
        )
    for name, run in (("base", base), ("new", new)):
        if run.summary is None:
            notes.append(
                f"{name} run has no summary.json (still running, or killed): compared the "
                f"{len(run.examples)} examples it finished"
            )
        elif run.summary.get("aborted"):
            notes.append(
                f"{name} run did not finish ({run.summary['aborted']}): "
                f"{len(run.examples)} of {run.summary.get('examples', '?')} examples"
            )
        if run.skipped:
            count = len(run.skipped)
            notes.append(f"{name} run: {count} line{'s' if count != 1 else ''} of examples.jsonl skipped (not records)")
    recorded = {name: run.setting("pass_score") for name, run in (("base", base), ("new", new))}
    if recorded["base"] is not None and recorded["new"] is not None and recorded["base"] != recorded["new"]:
        notes.append(
            f"the runs were made with different --junit-pass (base {recorded['base']}, new {recorded['new']}); "
            f"both are judged at {comparison.pass_score:g}"
        )
    return notes


def _identity(run: RunRecords) -> dict[str, Any]:
    summary = run.summary or {}
    return {
        "dir": str(run.directory),
        "program": summary.get("program_name"),
        "program_sha256": summary.get("program_sha256"),
        "split": summary.get("split"),
        "dataset": run.setting("dataset"),
        "dataset_sha256": summary.get("dataset_sha256"),
        "complete": run.complete,
        "aborted": summary.get("aborted") if run.summary is not None else "no summary.json",
        "examples": len(run.examples),
        "skipped_lines": run.skipped,
    }


def _change(base: ExampleRecord, new: ExampleRecord) -> dict[str, Any]:
    return {"inputs": new.inputs, "labels": new.labels, "base": base.brief(), "new": new.brief()}


def _side(records: list[ExampleRecord], pass_score: float) -> dict[str, Any]:
    return {
        "score": round(sum(r.score for r in records) / len(records), 6) if records else None,
        "passed": sum(1 for r in records if r.passed(pass_score)),
        "errors": sum(1 for r in records if r.error is not None),
    }


def _run_totals(run: RunRecords) -> dict[str, Any]:
    """From summary.json when the run wrote one; what its examples tell otherwise."""
    summary = run.summary
    if summary is None:
        side = _side(run.examples, 0.0)
        return {
            "score": side["score"],
            "errors": side["errors"],
            "finished": len(run.examples),
            "calls": None,
            "tokens": None,
            "fresh_tokens": None,
            "cost": None,
            "seconds": None,
        }
    usage = summary.get("usage")
    total = usage.get("total") if isinstance(usage, dict) else None
    if not isinstance(total, dict):
        total = {}

    def number(value: Any) -> float | None:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    fresh = [number(total.get(k)) for k in ("prompt_tokens", "completion_tokens")]
    cached = [number(total.get(k)) for k in ("cached_prompt_tokens", "cached_completion_tokens")]
    fresh_tokens = None if None in fresh else sum(fresh)  # type: ignore[arg-type]
    return {
        "score": number(summary.get("score")),
        "errors": number(summary.get("errors")),
        "finished": number(summary.get("finished")),
        "calls": number(total.get("calls")),
        # Every token the program used (cached calls too: a rerun served from the cache used as many),
        "tokens": None if fresh_tokens is None or None in cached else fresh_tokens + sum(cached),  # type: ignore[arg-type]
        # ... and those paid for (fresh calls), which cost counts.
        "fresh_tokens": fresh_tokens,
        "cost": number(total.get("cost")),
        "seconds": number(summary.get("seconds")),
    }


def _delta(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, before in base.items():
        after = new.get(key)
        if before is None or after is None:
            delta[key] = None
        elif isinstance(before, int) and isinstance(after, int):
            delta[key] = after - before
        else:
            delta[key] = round(after - before, 6)
    return delta
