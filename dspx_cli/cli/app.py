"""The `dspx` entry point.

A plain `dspx run` or `dspx validate` (the calls shell scripts make) runs without building the
typer app: typer converts every option of the command through a pydantic TypeAdapter, which costs
more than the rest of `dspx validate`'s command line together. Anything else (help, other commands,
unusual option forms, a mistake that needs typer's message) goes to the typer app, unchanged; the
help of one command is printed by that command of the app without parsing the root's options
(cli/typer_app.py command_help: the root's --otlp would import pydantic).
`app` is that typer app, built on first access (tests and front ends import it from here).

A command the fast path ran ends the process with os._exit once its output is flushed and the
atexit functions have run: tearing the interpreter down (freeing every module and object one by
one) costs 30-100 ms of CPU after the work is done, more than anything else left in a one-call
run. A help or version request (`-h`, `--help`, `--version`, no arguments) ends the same way after
the typer app printed it: the teardown of typer's modules is ~10 ms, an eighth of `dspx --help`.
Either ends normally instead when a thread other than daemons is still alive (the interpreter
would join it) or when a program's own Python file was imported (user code may leave a file to be
flushed by its finalizer). `main` therefore does not return; call `app` to run dspx inside
another program.

The fast path also runs start-up with the garbage collector paused: importing dspx and loading
the program make many objects and no garbage cycles worth looking for (the collector's passes
cost 10-15 ms when the program-file models were pydantic's; less now, and still nothing to find). `run` and `evaluate` turn it back on once
the program is loaded, before their first LM call (cli/commands.py, cli/evaluate_command.py);
`validate` ends first.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

# Optional packages that httpx and httpcore import whenever they are installed, and that dspx never
# uses: httpx's own command line (click, pygments, rich's progress and syntax: ~45 ms) and trio
# (httpcore checks for it: ~70 ms). Marked absent for the `dspx` process only, before anything
# imports httpx; a library user of dspx_cli keeps them.
_UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")
_FAST_COMMANDS = frozenset(("run", "evaluate", "validate"))  # what cli/fast_path.py may parse
# Words that make the typer app print and stop (a command given one as an option's value, as in
# `-i -h`, runs, and still ends as the fast path's commands do).
_HELP_WORDS = frozenset(("-h", "--help", "--version"))
# The module-name prefixes of a program's own Python files (tools, metrics: core/pyfile.py).
_USER_CODE_PREFIXES = ("dspx_user_", "dspx_metric_", "dspx_tool_")


def main() -> None:
    # pydantic looks for plugins (observability hooks for a user's own models) by reading the entry
    # points of every installed distribution the first time it builds a model (in dspx: a file
    # with a mistake, declared object types, typed outputs): ~5 ms per process.
    # dspx's models are its internal program-file and settings schema, not a user's to instrument.
    # setdefault: a user's explicit setting (say, naming the one plugin to skip) wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    for name in _UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type] # None makes `import name` fail
    argv = sys.argv[1:]
    if argv and argv[0] in _FAST_COMMANDS:
        import gc

        from dspx_cli.cli.fast_path import dispatch

        gc.disable()
        try:
            handled = dispatch(argv)
        except SystemExit as exc:
            _leave(exc.code)
        if handled:
            _leave(0)
        gc.enable()  # nothing was run: the typer app parses the command line
    from dspx_cli.cli.typer_app import app as typer_app
    from dspx_cli.cli.typer_app import command_help

    if argv and not (len(argv) == 1 and argv[0] in _HELP_WORDS):
        try:
            command_help(argv)  # `dspx COMMAND -h`: prints and exits; anything else returns
        except SystemExit as exc:
            _leave(exc.code)
        # A command (or a -h given as an option's value) ends the normal way: it may run user code.
        typer_app(prog_name="dspx")
        return
    try:  # `dspx`, `dspx -h`, `dspx --help`, `dspx --version`: only printing
        typer_app(prog_name="dspx")
    except SystemExit as exc:
        _leave(exc.code)


def _leave(code: Any) -> NoReturn:
    """Exit with `code` (an int or None, as SystemExit takes) without the interpreter's teardown
    when nothing can be lost by skipping it (see the module docstring); else exit normally."""
    import atexit
    import threading

    if not (code is None or isinstance(code, int)):
        raise SystemExit(code)
    if any(
        thread.is_alive() and not thread.daemon
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
    ):
        raise SystemExit(code)
    if any(name.startswith(_USER_CODE_PREFIXES) for name in sys.modules):
        raise SystemExit(code)
    atexit._run_exitfuncs()  # logging's flush, weakref finalizers: what a normal exit runs first
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        raise SystemExit(code) from None  # the interpreter's own exit reports it, as before
    os._exit(code or 0)


def __getattr__(name: str) -> Any:
    if name == "app":
        from dspx_cli.cli.typer_app import app as typer_app

        return typer_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
