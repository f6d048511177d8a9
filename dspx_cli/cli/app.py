"""The `dspx` command line: parse arguments, call the engine, render results.

Heavy modules (pydantic, httpx, rich, the engine) are imported inside the commands, so that
`dspx --help` pays only for typer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dspx_cli import __version__

app = typer.Typer(
    name="dspx",
    help="Run, inspect and validate declarative LM programs written as YAML or TOML files.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click-style help: rendering it with rich imports markdown-it and pygments, which
    # more than doubles the time of `dspx --help` (220 ms against 90 ms here).
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ProgramArg = Annotated[Path, typer.Argument(help="Program file (.yaml, .yml or .toml).", show_default=False)]
InputOpt = Annotated[
    Optional[list[str]],
    typer.Option("-i", "--input", help="An input as FIELD=VALUE (JSON for non-str fields). Repeatable."),
]
LMOpt = Annotated[
    Optional[str],
    typer.Option("--lm", envvar="DSPX_LM", help="Use this model for every module (e.g. openai/gpt-4o-mini)."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dspx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """dspx: DSPy-style LM programs from the shell."""


@app.command()
def run(
    program: ProgramArg,
    inputs: InputOpt = None,
    lm: LMOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as one JSON object.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Run PROGRAM on one input and print its output fields."""
    from dspx_cli.cli import commands

    _guard(debug, lambda: commands.run(program, inputs or [], lm, as_json))


@app.command()
def inspect(
    program: ProgramArg,
    inputs: InputOpt = None,
    lm: LMOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Print the exact messages PROGRAM would send, without calling any LM."""
    from dspx_cli.cli import commands

    _guard(debug, lambda: commands.inspect(program, inputs or [], lm, as_json))


@app.command()
def validate(program: ProgramArg, debug: DebugOpt = False) -> None:
    """Check PROGRAM and exit 0 if it is valid, 2 if not."""
    from dspx_cli.cli import commands

    _guard(debug, lambda: commands.validate(program))


def _guard(debug: bool, action) -> None:  # type: ignore[no-untyped-def]
    """One line on stderr and a documented exit code for every failure, unless --debug."""
    from dspx_cli.errors import EXIT_RUNTIME, DspxError

    try:
        action()
    except DspxError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # an engine bug: say so in one line, keep the traceback for --debug
        if debug:
            raise
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", err=True)
        raise typer.Exit(EXIT_RUNTIME) from None


def main() -> None:
    app(prog_name="dspx")


if __name__ == "__main__":
    sys.exit(main())
