"""Errors every layer may raise, and the exit code each maps to.

This module sits below every layer (it imports nothing from dspx_cli), so the CLI can map any
failure to a one-line message and a documented exit code without knowing where it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_RUNTIME = 1  # the program was fine, running it failed (LM unreachable, unparseable reply, ...)
EXIT_USAGE = 2  # the program file or the command line is wrong; nothing was run
EXIT_BELOW_MIN_SCORE = 3  # `dspx evaluate --min-score`: the run worked, the score is too low


class DspxError(Exception):
    """Base of every error dspx reports to users as one line."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DspxError):
    """Bad command-line arguments (an unknown input field, a malformed -i, ...)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Location:
    """Where in a program file something was written (1-based line and column)."""

    path: Path | str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class ProgramError(DspxError):
    """The program file is invalid; the message names file, line, column and what was expected."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.detail = message


class SignatureError(ValueError):
    """A signature string, type string or field spec cannot be understood.

    A plain ValueError subclass: the program loader catches it and re-raises a ProgramError that
    carries the file position.
    """


class ScoreBelowMinimum(DspxError):
    exit_code = EXIT_BELOW_MIN_SCORE


class LMError(DspxError):
    """An LM call failed (HTTP error, connection refused, model file missing, ...)."""

    exit_code = EXIT_RUNTIME


class AdapterParseError(DspxError):
    """The LM replied, but its reply does not fit the signature. Keeps the reply to show it."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, lm_response: str, parsed: dict | None = None) -> None:
        shown = lm_response if len(lm_response) <= 2000 else lm_response[:2000] + " [...]"
        # json.dumps keeps the reply on the same line as the message: one error, one line.
        super().__init__(f"{message}; the LM replied: {json.dumps(shown, ensure_ascii=False)}")
        self.lm_response = lm_response
        self.parsed = parsed or {}


class SandboxUnavailableError(DspxError):
    """The code sandbox cannot run: Deno is not installed, Pyodide cannot be fetched, or the
    interpreter process does not start. Errors of the code it runs are not raised: they go back to
    the LM as text."""

    exit_code = EXIT_RUNTIME
