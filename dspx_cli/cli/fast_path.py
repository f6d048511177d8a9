"""`dspx run`, `evaluate` and `validate` parsed by hand when the arguments are plain: one PROGRAM, known
options spelled out (`--lm MODEL`, `-i FIELD=VALUE`, flags). Whatever this does not recognise
returns False and goes to the typer app, which parses it (and words its errors) as always.

The options mirror cli/typer_app.py's commands (environment variables included);
tests/test_cli_fast_path.py runs the same command lines both ways and compares what they print.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from dspx_cli.cli import actions


class _Option(NamedTuple):
    """How one option of a fast-path command is read, and the parameter it fills. A NamedTuple, as
    are the other private records on the start-up path: a frozen dataclass costs ~0.4 ms to define
    on Python 3.11 (six generated methods, each compiled), a NamedTuple ~0.06 ms."""

    dest: str
    kind: str  # "flag", "str", "path", "many" (repeatable str), "count" (an int >= 1), "natural" (an int >= 0),
    # "number" (a plain decimal)
    envvar: str | None = None


_FLAG = "flag"
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")

_RUN = {
    "-i": _Option("inputs", "many"),
    "--input": _Option("inputs", "many"),
    "--lm": _Option("lm", "str", "DSPX_LM"),
    "--json": _Option("as_json", _FLAG),
    "--batch": _Option("input_file", "str"),
    "-j": _Option("concurrency", "count"),
    "--concurrency": _Option("concurrency", "count"),
    "--usage-file": _Option("usage_file", "path"),
    "--cache-dir": _Option("cache_dir", "path", "DSPX_CACHE_DIR"),
    "--no-cache": _Option("no_cache", _FLAG),
    "--cache-only": _Option("cache_only", _FLAG),
    "--refresh": _Option("refresh", _FLAG),
    "--state": _Option("state", "path"),
    "--trace": _Option("trace", _FLAG),
    "--debug": _Option("debug", _FLAG),
    "--otlp": _Option("otlp", "str", "DSPX_OTLP"),
    "--otlp-content": _Option("otlp_content", _FLAG),
}
_EVALUATE = {
    "--split": _Option("split", "str"),
    "--dataset": _Option("dataset", "path"),
    "--limit": _Option("limit", "count"),
    "-j": _Option("concurrency", "count"),
    "--concurrency": _Option("concurrency", "count"),
    "--output": _Option("output", "path"),
    "--junit": _Option("junit", "path"),
    "--junit-pass": _Option("junit_pass", "number"),
    "--min-score": _Option("min_score", "number"),
    "--failure-score": _Option("failure_score", "number"),
    "--max-errors": _Option("max_errors", "count"),
    "--lm": _Option("lm", "str", "DSPX_LM"),
    "--json": _Option("as_json", _FLAG),
    "--cache-dir": _Option("cache_dir", "path", "DSPX_CACHE_DIR"),
    "--no-cache": _Option("no_cache", _FLAG),
    "--cache-only": _Option("cache_only", _FLAG),
    "--refresh": _Option("refresh", _FLAG),
    "--state": _Option("state", "path"),
    "--baseline": _Option("baseline", "path"),
    "--max-regressions": _Option("max_regressions", "natural"),
    "--debug": _Option("debug", _FLAG),
    "--otlp": _Option("otlp", "str", "DSPX_OTLP"),
    "--otlp-content": _Option("otlp_content", _FLAG),
}
_VALIDATE = {
    "--graph": _Option("graph", _FLAG),
    "--mermaid": _Option("mermaid", _FLAG),
    "--debug": _Option("debug", _FLAG),
}


def _run(program: Path, values: dict[str, Any]) -> None:
    actions.run(program, values.pop("inputs", []), values.pop("lm", None), values.pop("as_json", False), **values)


def _evaluate(program: Path, values: dict[str, Any]) -> None:
    actions.evaluate(program, **values)


def _validate(program: Path, values: dict[str, Any]) -> None:
    actions.validate(program, **values)


_COMMANDS: dict[str, tuple[dict[str, _Option], Callable[[Path, dict[str, Any]], None]]] = {
    "run": (_RUN, _run),
    "evaluate": (_EVALUATE, _evaluate),
    "validate": (_VALIDATE, _validate),
}


def dispatch(argv: list[str]) -> bool:
    """Run argv and return True, or return False (nothing done) when typer must parse it."""
    if not argv or argv[0] not in _COMMANDS:
        return False
    options, action = _COMMANDS[argv[0]]
    parsed = parse(argv[1:], options)
    if parsed is None:
        return False
    program, values = parsed
    action(program, values)
    return True


def parse(args: list[str], options: dict[str, _Option]) -> tuple[Path, dict[str, Any]] | None:
    """PROGRAM and the options' values by their parameter names, or None when anything is unusual:
    help, `--opt=value`, `--`, a value that starts with '-', an option given twice, a bad count."""
    program: str | None = None
    values: dict[str, Any] = {}
    tokens = iter(args)
    for token in tokens:
        if not token.startswith("-") and token:
            if program is not None:
                return None  # typer says "Got unexpected extra argument"
            program = token
            continue
        option = options.get(token)
        if option is None:
            return None
        if option.kind == _FLAG:
            values[option.dest] = True
            continue
        value = next(tokens, None)
        if value is None or value.startswith("-") or (option.kind != "many" and option.dest in values):
            return None
        if option.kind == "many":
            values.setdefault(option.dest, []).append(value)
        elif option.kind in ("count", "natural"):
            if not (value.isascii() and value.isdigit() and int(value) >= (option.kind == "count")):
                return None
            values[option.dest] = int(value)
        elif option.kind == "number":
            if not _PLAIN_DECIMAL.fullmatch(value):
                return None  # "inf", "1e3", "+1" and the like: typer decides
            values[option.dest] = float(value)
        else:
            values[option.dest] = Path(value) if option.kind == "path" else value
    if not program:
        return None
    for option in options.values():
        if option.envvar and option.dest not in values:
            # Like click: an unset or empty variable is no value.
            from_env = os.environ.get(option.envvar) or None
            if from_env is not None:
                values[option.dest] = Path(from_env) if option.kind == "path" else from_env
    return Path(program), values
