"""What `dspx run`, `evaluate` and `validate` do once their arguments are parsed, and the guard every
command runs in. Free of typer, so that cli/fast_path.py can call them without building the app.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dspx_cli.cli.tracing import CommandTrace


def run(
    program: Path,
    inputs: list[str],
    lm: str | None,
    as_json: bool,
    *,
    input_file: str | None = None,
    concurrency: int | None = None,
    usage_file: Path | None = None,
    cache_dir: Path | None = None,
    no_cache: bool = False,
    cache_only: bool = False,
    refresh: bool = False,
    state: Path | None = None,
    trace: bool = False,
    debug: bool = False,
    otlp: str | None = None,
    otlp_content: bool = False,
) -> None:
    from dspx_cli.cli import commands, tracing

    spans = tracing.command_trace(
        "run", otlp, otlp_content, program=program, lm=lm, inputs=inputs, batch=input_file, state=state
    )
    guard(
        debug,
        lambda: commands.run(
            program,
            inputs,
            lm,
            as_json,
            cache=commands.CacheOptions(
                cache_dir, no_cache, cache_only, refresh, telemetry=tracing.telemetry_of(spans)
            ),
            usage_file=usage_file,
            input_file=input_file,
            concurrency=concurrency,
            state_file=state,
            trace=trace,
        ),
        spans,
    )


def evaluate(
    program: Path,
    *,
    split: str = "dev",
    dataset: Path | None = None,
    limit: int | None = None,
    concurrency: int | None = None,
    output: Path | None = None,
    junit: Path | None = None,
    junit_pass: float = 1.0,
    min_score: float | None = None,
    failure_score: float = 0.0,
    max_errors: int | None = 10,
    lm: str | None = None,
    as_json: bool = False,
    cache_dir: Path | None = None,
    no_cache: bool = False,
    cache_only: bool = False,
    refresh: bool = False,
    state: Path | None = None,
    baseline: Path | None = None,
    max_regressions: int | None = None,
    debug: bool = False,
    otlp: str | None = None,
    otlp_content: bool = False,
) -> None:
    from dspx_cli.cli import commands, evaluate_command, tracing

    spans = tracing.command_trace(
        "evaluate", otlp, otlp_content, program=program, lm=lm, split=split, dataset=dataset, limit=limit, state=state
    )
    options = evaluate_command.EvaluateOptions(
        split=split,
        dataset=dataset,
        limit=limit,
        concurrency=concurrency,
        output=output,
        junit=junit,
        junit_pass=junit_pass,
        min_score=min_score,
        failure_score=failure_score,
        max_errors=max_errors,
        as_json=as_json,
        state_file=state,
        baseline=baseline,
        max_regressions=max_regressions,
    )
    guard(
        debug,
        lambda: evaluate_command.run(
            program,
            lm,
            options,
            commands.CacheOptions(cache_dir, no_cache, cache_only, refresh, telemetry=tracing.telemetry_of(spans)),
        ),
        spans,
    )


def validate(program: Path, *, graph: bool = False, mermaid: bool = False, debug: bool = False) -> None:
    from dspx_cli.cli import commands

    guard(debug, lambda: commands.validate(program, graph=graph, mermaid=mermaid))


def guard(debug: bool, action: Callable[[], None], spans: CommandTrace | None = None) -> None:
    """One line on stderr and a documented exit code for every failure; --debug adds the
    traceback but keeps the exit code, so a script can turn it on without changing what it sees.
    `spans`: the command's OpenTelemetry trace (cli/tracing.py), sent before the command ends."""
    from dspx_cli.cli.interrupt import guarded
    from dspx_cli.errors import EXIT_RUNTIME, DspxError

    _route_warnings(debug)
    if spans is not None:
        action = spans.wrap(action)  # inside `guarded`: sent before an interrupted command's os._exit
    try:
        guarded(action)()  # SIGTERM as Ctrl-C; a closed stdout ends quietly (cli/interrupt.py)
    except DspxError as exc:
        _fail(f"error: {exc}", exc.exit_code, debug)
    except KeyboardInterrupt:
        _fail("interrupted", 130, debug=False)
    except Exception as exc:  # noqa: BLE001 - an engine bug: say so in one line, keep the traceback for --debug
        hint = "" if debug else " (rerun with --debug for a traceback)"
        _fail(f"error: internal error: {type(exc).__name__}: {exc}{hint}", EXIT_RUNTIME, debug)


def _fail(message: str, exit_code: int, debug: bool) -> None:
    """Called inside an `except` block: with --debug the traceback comes first, the message last.
    SystemExit rather than typer.Exit: typer lets it through unchanged, and the fast path has no typer."""
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(exit_code) from None


def _route_warnings(debug: bool) -> None:
    """Engine warnings (an agent ending its loop, a cache rebuilt) as `warning: ...` lines on
    stderr, cut to one screen line unless --debug."""
    import logging

    class _Short(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = " ".join(record.getMessage().split())
            if not debug and len(text) > 300:
                text = text[:297] + "..."
            return f"{record.levelname.lower()}: {text}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Short())
    engine = logging.getLogger("dspx_cli")
    engine.handlers[:] = [handler]
    engine.setLevel(logging.DEBUG if debug else logging.WARNING)
    engine.propagate = False
