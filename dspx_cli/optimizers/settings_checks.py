"""Checks across an optimizer's settings that its dataclass cannot express (DSPy raises them at
compile time; dspx says so before any LM call, at the line or `--set` that gave the value).

Each check names one setting as the culprit: the error points at that key under `optimizer:` in
the file, or at the `--set` that gave it, or at `optimizer:` itself for a default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from dspx_cli.errors import ProgramError, UsageError
from dspx_cli.program.model import Program

__all__ = ["AUTO_RUNS", "check_cross_fields", "mipro_num_trials"]

# DSPy 3.4.1's AUTO_RUN_SETTINGS: auto mode -> (candidates N, kept valset size).
AUTO_RUNS: dict[str, tuple[int, int]] = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}

Blame = Callable[[str, str], NoReturn]


def mipro_num_trials(num_predictors: int, num_candidates: int, zeroshot: bool) -> int:
    """DSPy's `_set_num_trials_from_num_candidates`: the trials a search over N candidates gets."""
    variables = num_predictors if zeroshot else 2 * num_predictors
    return int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))


def check_cross_fields(
    program: Program,
    name: str,
    settings: dict[str, Any],
    section: dict[str, Any],
    assignments: Sequence[str],
) -> None:
    """Raise ProgramError/UsageError (exit 2) for settings of `name` that do not go together."""

    def blame(key: str, problem: str) -> NoReturn:
        message = f"optimizer {name}: {key}: {problem}"
        given = [a for a in assignments if a.partition("=")[0] == key]
        if given:
            raise UsageError(f"--set {given[-1]}: {message}")
        where = ("optimizer", key) if key in section else ("optimizer",)
        raise ProgramError(message, program.positions.locate(where))

    check = _CHECKS.get(name)
    if check is not None:
        check(program, settings, blame)


def _at_least(settings: dict[str, Any], blame: Blame, minimum: float, *keys: str) -> None:
    for key in keys:
        value = settings[key]
        if value is not None and value < minimum:
            blame(key, f"expected a number >= {minimum:g}, got {value!r}")


def _mipro_v2(program: Program, settings: dict[str, Any], blame: Blame) -> None:
    auto = settings["auto"]
    if auto is not None and auto not in AUTO_RUNS:
        blame("auto", f"expected one of {', '.join(AUTO_RUNS)} or null, got {auto!r}")
    sizes = ("num_candidates", "num_trials", "minibatch_size", "minibatch_full_eval_steps", "view_data_batch_size")
    _at_least(settings, blame, 1, *sizes, "num_threads")
    _at_least(settings, blame, 0, "max_bootstrapped_demos", "max_labeled_demos", "init_temperature")
    _at_least(settings, blame, 0, "seed", "max_errors")
    if auto is not None:
        for key in ("num_candidates", "num_trials"):
            if settings[key] is not None:
                blame(
                    key,
                    f"auto: {auto} chooses num_candidates and num_trials itself; "
                    "set auto: null to give them, or leave them out",
                )
        return
    if settings["num_candidates"] is None:
        blame("num_candidates", "auto: null needs num_candidates (and num_trials)")
    if settings["num_trials"] is None:
        predictors = _count_predictors(program)
        zeroshot = settings["max_bootstrapped_demos"] == 0 and settings["max_labeled_demos"] == 0
        suggested = mipro_num_trials(predictors, settings["num_candidates"], zeroshot)
        blame(
            "num_trials",
            f"auto: null needs num_trials; with {predictors} predictor(s) and "
            f"{settings['num_candidates']} candidates, DSPy suggests num_trials: {suggested}",
        )


def _copro(program: Program, settings: dict[str, Any], blame: Blame) -> None:
    if settings["breadth"] <= 1:
        blame("breadth", f"expected a number > 1 (the original instruction plus new ones), got {settings['breadth']!r}")
    _at_least(settings, blame, 1, "depth", "num_threads")
    _at_least(settings, blame, 0, "init_temperature", "max_errors")


def _count_predictors(program: Program) -> int:
    from dspx_cli.program.module_types import predictor_names

    count = sum(len(predictor_names(d, program.modules)) for d in program.modules.values())
    return max(count, 1)


_CHECKS: dict[str, Callable[[Program, dict[str, Any], Blame], None]] = {"mipro_v2": _mipro_v2, "copro": _copro}
