"""The `dspx` entry point.

A plain `dspx run` or `dspx validate` (the calls shell scripts make) runs without building the
typer app: typer converts every option of the command through a pydantic TypeAdapter, which costs
more than the rest of `dspx validate`'s command line together. Anything else (help, other commands,
unusual option forms, a mistake that needs typer's message) goes to the typer app, unchanged.
`app` is that typer app, built on first access (tests and front ends import it from here).
"""

from __future__ import annotations

import sys
from typing import Any

# Optional packages that httpx and httpcore import whenever they are installed, and that dspx never
# uses: httpx's own command line (click, pygments, rich's progress and syntax: ~45 ms) and trio
# (httpcore checks for it: ~70 ms). Marked absent for the `dspx` process only, before anything
# imports httpx; a library user of dspx_cli keeps them.
_UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")
_FAST_COMMANDS = frozenset(("run", "evaluate", "validate"))  # what cli/fast_path.py may parse


def main() -> None:
    for name in _UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type] # None makes `import name` fail
    argv = sys.argv[1:]
    if argv and argv[0] in _FAST_COMMANDS:
        from dspx_cli.cli.fast_path import dispatch

        if dispatch(argv):
            return
    from dspx_cli.cli.typer_app import app as typer_app

    typer_app(prog_name="dspx")


def __getattr__(name: str) -> Any:
    if name == "app":
        from dspx_cli.cli.typer_app import app as typer_app

        return typer_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
