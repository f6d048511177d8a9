"""The trials of an optimizer's search on stderr (MIPROv2): a live rich table on a terminal, plain lines otherwise.

Each finished trial (a record as `CompileJob.on_trial` receives it: number, kind, params per
predictor, score, best full score so far, objective trials done of the total) is a row: the trial
(`3/10`, or `base`/`full` for the baseline and the added full evaluations), the instruction and
demo set chosen per predictor (`i2 d5`: instruction candidate 2, demo set 5), whether the score is
a minibatch's or the full valset's, the score and the best full score so far.

On a terminal the table replaces the optimizer phase's progress bar (`phase`): one live display
shows the phase's figures (LM calls, tokens per second, time) above the table, so two rich live
displays never fight over the screen. Colour unless NO_COLOR is set (rich reads it itself). Off a
terminal every trial is one plain line, and the phase's progress is the usual clock-driven lines.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from dspx_cli.cli.progress import Progress
from dspx_cli.lm.usage import UsageMeter

__all__ = ["TrialTable", "trial_line"]

# Rows kept on screen: the last ones (trials.jsonl in the run folder has them all).
MAX_ROWS = 25


def _trial_label(record: dict[str, Any]) -> str:
    if record.get("kind") == "baseline":
        return "base"
    if record.get("added"):
        return "full"
    return f"{record.get('trial', '?')}/{record.get('of', '?')}"


def _choice(choice: dict[str, Any]) -> str:
    text = f"i{choice.get('instruction', 0)}"
    if choice.get("demos") is not None:
        text += f" d{choice['demos']}"
    return text


def _score(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _kind(record: dict[str, Any]) -> str:
    if record.get("kind") == "minibatch":
        return f"minibatch of {len(record.get('minibatch') or [])}" if record.get("minibatch") else "minibatch"
    return "full"


def trial_line(record: dict[str, Any]) -> str:
    """`trial 3/10 #3 · router: i2 d5 · minibatch of 35 70.00 · best 68.75`"""
    head = f"trial {_trial_label(record)} #{record.get('number', '?')}"
    choices = ", ".join(f"{name}: {_choice(choice)}" for name, choice in (record.get("params") or {}).items())
    parts = [head]
    if choices:
        parts.append(choices)
    parts += [f"{_kind(record)} {_score(record.get('score'))}", f"best {_score(record.get('best_score'))}"]
    return " · ".join(parts)


class TrialTable:
    """`hooks.trial` (a record per finished trial) and, on a terminal, the optimizer phase's display."""

    def __init__(self, *, terminal: bool | None = None) -> None:
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._live: Any = None
        self._phase: Progress | None = None

    # ----- records ---------------------------------------------------------------------------------

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)
        if self._live is not None:
            self._live.refresh()
        elif not self.terminal or self._phase is None:
            try:
                sys.stderr.write(trial_line(record) + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed: the table is not worth failing for
                pass

    def table(self) -> Any:
        """The rich table of the trials so far (the last MAX_ROWS)."""
        from rich.table import Table

        with self._lock:
            records = list(self.records[-MAX_ROWS:])
            hidden = len(self.records) - len(records)
        predictors = list((records[-1].get("params") or {}) if records else {})
        table = Table(title=f"trials ({hidden} earlier not shown)" if hidden else "trials", title_justify="left")
        table.add_column("trial", justify="right")
        table.add_column("#", justify="right", style="dim")
        for name in predictors:
            table.add_column(name)
        table.add_column("scored on")
        table.add_column("score", justify="right")
        table.add_column("best", justify="right", style="bold")
        for record in records:
            params = record.get("params") or {}
            table.add_row(
                _trial_label(record),
                str(record.get("number", "")),
                *(_choice(params[name]) if name in params else "" for name in predictors),
                _kind(record),
                _score(record.get("score")),
                _score(record.get("best_score")),
            )
        return table

    # ----- the optimizer phase on a terminal ----------------------------------------------------------

    def phase(
        self, meter: UsageMeter, label: str, *, total: int | None = None, unit: str = "", scored: bool = False
    ) -> AbstractContextManager[Any]:
        """A progress display (shaped like cli.progress.Progress) for the phase that runs trials."""
        if not self.terminal:
            return Progress(meter, label, total=total, unit=unit, scored=scored)
        return self._live_phase(Progress(meter, label, total=total, unit=unit, scored=scored))

    @contextmanager
    def _live_phase(self, figures: Progress) -> Iterator[Progress]:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.text import Text

        table = self

        class _View:
            def __rich__(self) -> Any:
                parts: list[Any] = [Text(figures.line(), style="bold")]
                if table.records:
                    parts.append(table.table())
                return Group(*parts)

        self._phase = figures
        # Notices written to sys.stderr while the table is up are printed above it, not through it.
        live = Live(
            _View(), console=Console(stderr=True), refresh_per_second=2, redirect_stdout=False, redirect_stderr=True
        )
        with live:
            self._live = live
            try:
                yield figures
            finally:
                self._live = None
                self._phase = None
