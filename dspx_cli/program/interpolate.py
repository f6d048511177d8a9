"""`${VAR}`, `${VAR:-default}` and `${VAR:?message}` in program files.

Interpolation runs on every string value after parsing, so YAML and TOML behave the same and an
error can point at the key whose value asked for the variable. `$${` writes a literal `${`.

A secret (`api_key: ${OPENAI_API_KEY:?set it}`, any key `is_secret_name` matches) that is unset
does not fail the load: it becomes an `UnsetSecret` holding the error, raised only when an LM
that would send it is created, so `validate` and `inspect` work without keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dspx_cli.core.redact import UnsetSecret, is_secret_name
from dspx_cli.errors import ProgramError
from dspx_cli.program.source import KeyPath, Positions

_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-|:?\?)([^}]*))?\}|\$\{([^}]*)\}?")


def interpolate(data: Any, env: Mapping[str, str], positions: Positions, key_path: KeyPath = ()) -> Any:
    if isinstance(data, dict):
        return {k: interpolate(v, env, positions, (*key_path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, positions, (*key_path, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        try:
            return _expand(data, env, positions, key_path)
        except _Unset as unset:
            if key_path and is_secret_name(key_path[-1]):
                return UnsetSecret(unset.error)
            raise unset.error from None
    return data


class _Unset(Exception):
    def __init__(self, error: ProgramError) -> None:
        self.error = error


def _expand(text: str, env: Mapping[str, str], positions: Positions, key_path: KeyPath) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if name is None:
            raise ProgramError(
                f"malformed variable reference {match.group(0)!r}: expected ${{NAME}}, "
                "${NAME:-default} or ${NAME:?message}",
                positions.locate(key_path),
            )
        value = env.get(name)
        # With a colon, an empty variable counts as unset (the shell's rule).
        unset = value is None or (value == "" and operator is not None and operator.startswith(":"))
        if operator in ("-", ":-"):
            return argument if unset else value  # type: ignore[return-value]
        if operator in ("?", ":?"):
            if unset:
                reason = f"is not set: {argument}" if argument else "is not set"
                raise _Unset(ProgramError(f"environment variable {name} {reason}", positions.locate(key_path)))
            return value  # type: ignore[return-value]
        return value or ""

    return _PATTERN.sub(replace, text)
