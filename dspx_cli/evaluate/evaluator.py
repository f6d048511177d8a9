"""The concurrent evaluator: run a program over examples, score each with a metric.

Semantics follow DSPy's Evaluate: an example whose run fails scores `failure_score` and still
counts in the average; once more than `max_errors` examples have failed, no new example starts
(the ones in flight finish, so their paid-for calls land in the cache) and the run is aborted.

A dataset row that could not be read (a `BadRow`) is a failed example in its place, its error
naming the file and line, so one bad line neither stops the run nor goes unnoticed.
Results are kept on the `Evaluation` as they finish: an interrupted run still has them.

With `keep_calls`, each result also carries the LM calls its example made (lm/call_log.py): the
program's, then the metric's (an LM judge), for the run folder's calls.jsonl.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspx_cli.core import Example, Prediction
from dspx_cli.core.collector import fewer_collections
from dspx_cli.errors import DspxError
from dspx_cli.evaluate.datasets import BadRow
from dspx_cli.evaluate.metrics import Metric
from dspx_cli.evaluate.spans import scored
from dspx_cli.lm.base import Usage
from dspx_cli.lm.call_log import LoggedCall, UsageCount, call_log, counting_usage
from dspx_cli.program.runner import ProgramRunner


def dspy_percent(score_sum: float, count: int) -> float:
    """DSPy's Evaluate score: the scores' sum as a percentage of `count`, two decimals (0 for none).
    Multiplied before dividing, as DSPy does, so that the rounding agrees to the last digit."""
    return round(100 * score_sum / count, 2) if count else 0.0


@dataclass
class ExampleResult:
    index: int
    example: Example
    outputs: dict[str, Any] | None
    score: float
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    # With keep_calls: the calls (released once written: workflows/run_folder.py), how many of them
    # the program made (the rest are the metric's), and their count and cached-or-not, which stay.
    calls: list[LoggedCall] | None = None
    program_calls: int | None = None
    lm_calls: int | None = None
    cached: bool | None = None  # every call answered from the cache; None when no call was made

    def record(self) -> dict[str, Any]:
        record = {
            "index": self.index,
            "inputs": dict(self.example.inputs().items()),
            "labels": dict(self.example.labels().items()),
            "outputs": self.outputs,
            "score": self.score,
            "error": self.error,
            "usage": {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens},
            "seconds": round(self.seconds, 4),
        }
        if self.lm_calls is not None:
            record["lm_calls"] = self.lm_calls
            record["cached"] = self.cached
        return record

    def keep(self, calls: list[LoggedCall], program_calls: int) -> ExampleResult:
        self.calls, self.program_calls, self.lm_calls = calls, program_calls, len(calls)
        self.cached = all(call.record.get("cached") for call in calls) if calls else None
        return self


@dataclass
class Evaluation:
    results: list[ExampleResult]  # in example order; examples never started are absent
    total: int  # examples asked for
    aborted: str | None = None  # why the run stopped early, if it did

    @classmethod
    def partial(cls, finished: dict[int, ExampleResult], total: int, aborted: str | None) -> Evaluation:
        """The examples that finished, in example order."""
        return cls([finished[i] for i in sorted(finished)], total, aborted)

    @property
    def errors(self) -> int:
        return sum(1 for r in self.results if r.error is not None)

    @property
    def score(self) -> float:
        """Mean score over finished examples (failures included at failure_score)."""
        return sum(r.score for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def percent(self) -> float:
        """DSPy's score (`dspy_percent`) over the examples asked for; those not run count as 0."""
        return dspy_percent(sum(r.score for r in self.results), self.total)


async def evaluate(
    runner: ProgramRunner,
    examples: Sequence[Example | BadRow],
    metric: Metric,
    *,
    concurrency: int = 16,
    failure_score: float = 0.0,
    max_errors: int | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
    finished: dict[int, ExampleResult] | None = None,
    keep_calls: bool = False,
) -> Evaluation:
    """`finished`, when given, is filled as examples finish: after an interruption (the task
    cancelled) it holds every example that finished, for `Evaluation.partial`."""
    results: dict[int, ExampleResult] = {} if finished is None else finished
    next_index = 0
    errors = 0
    aborted: str | None = None

    async def score_one(index: int) -> ExampleResult:
        if not keep_calls:
            return await run_one(index, None)
        with call_log() as calls:
            result = await run_one(index, calls)
        return result.keep(calls, len(calls) if result.program_calls is None else result.program_calls)

    async def run_one(index: int, calls: list[LoggedCall] | None) -> ExampleResult:
        example = examples[index]
        started = time.perf_counter()
        if isinstance(example, BadRow):
            return ExampleResult(index, Example().with_inputs(), None, failure_score, str(example))
        # The program's calls, counted as they are made: a run that raises returns no usage of its own.
        spent = UsageCount()
        try:
            keys = example.input_keys
            # The inputs as a dict without the Example `inputs()` makes (which raises when keys is None).
            inputs = dict(example.inputs().items()) if keys is None else {k: v for k, v in example.items() if k in keys}
            with counting_usage(spent):
                run = await runner.run(inputs)
            program_calls = len(calls) if calls is not None else None  # the metric's come after
            prediction = Prediction(**run.outputs)
            value = await metric(example, prediction, None)
            return ExampleResult(
                index,
                example,
                run.outputs,
                float(value),
                usage=run.usage,
                seconds=time.perf_counter() - started,
                program_calls=program_calls,
            )
        except Exception as exc:  # noqa: BLE001 - a bug in a user's metric must not lose the other examples
            message = str(exc) if isinstance(exc, DspxError) else f"{type(exc).__name__}: {exc}"
            return ExampleResult(
                index, example, None, failure_score, message, usage=spent.usage, seconds=time.perf_counter() - started
            )

    async def worker() -> None:
        nonlocal next_index, errors, aborted
        while aborted is None and next_index < len(examples):
            index = next_index
            next_index += 1
            result = await scored(runner.telemetry, index, score_one)  # in its span when tracing (evaluate/spans.py)
            results[index] = result
            if result.error is not None:
                errors += 1
                if max_errors is not None and errors > max_errors and aborted is None:
                    aborted = (
                        f"stopped after {errors} failed examples (max_errors is {max_errors}); last: {result.error}"
                    )
            if on_result is not None:
                on_result(result)

    with fewer_collections():
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(examples)) or 1)))
    return Evaluation.partial(results, len(examples), aborted)
