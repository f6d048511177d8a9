"""The one rule for secrets in what dspx writes: settings are redacted by the name of their key.

Every settings record that leaves the process (program.json, summary.json, a state's metadata,
`--json` summaries, the usage file, history records) goes through `redact`. A key counts as a
secret when its name is, or ends in, one of `key`, `token`, `secret`, `password`, `passwd`,
`authorization`, `credential(s)` (case ignored, after `_`, `-` or `.`): `api_key`, `OPENAI_API_KEY`,
`x-api-key`, `access_token`, `Authorization`. `max_tokens` and `prompt_tokens` are not secrets.

Only settings are redacted: examples, messages and outputs are the user's data and stay as they are.

The same rule says which values are secrets when a program is loaded: `api_key: ${KEY:?message}`
with KEY unset becomes an `UnsetSecret`, so `validate` and `inspect`, which call nothing, do not
need the key; the error is raised when an LM that would send it is created.
"""

from __future__ import annotations

import re
from typing import Any

from dspx_cli.errors import ProgramError

__all__ = ["REDACTED", "UnsetSecret", "is_secret_name", "redact", "redact_text", "redact_urls"]

REDACTED = "<redacted>"

_SECRET_NAME = re.compile(
    r"(?:^|[_.\-])(?:api_?key|key|token|secret|password|passwd|authorization|credentials?)$", re.IGNORECASE
)


# Names that match the rule yet identify rather than unlock: the cache key of a history record is
# how `dspx cache rm` finds an answer.
_NOT_SECRETS = frozenset({"cache_key"})


def is_secret_name(name: object) -> bool:
    if not isinstance(name, str):
        return False
    verdict = _VERDICTS.get(name)
    if verdict is None:
        verdict = name.lower() not in _NOT_SECRETS and _SECRET_NAME.search(name) is not None
        if len(_VERDICTS) < 4096:
            _VERDICTS[name] = verdict
    return verdict


# Every history record (one per LM call) asks again about the same few key names.
_VERDICTS: dict[str, bool] = {}
# Values returned as they are without a call: most of what a record holds.
_LEAVES = frozenset({str, int, float, bool, type(None)})


def redact(value: Any) -> Any:
    """A copy of `value` (dicts, lists, tuples, scalars) with the value of every secret key, at any
    depth, replaced by `<redacted>`. An empty or absent secret stays as it is, so "no key" shows."""
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            secret = _VERDICTS.get(key)
            if secret is None:
                secret = is_secret_name(key)
            if secret and item not in (None, ""):
                copy[key] = REDACTED
            else:
                copy[key] = item if type(item) in _LEAVES else redact(item)
        return copy
    if isinstance(value, list | tuple):
        return [item if type(item) in _LEAVES else redact(item) for item in value]
    return value


# `key: value` or `key = value` at a line's start (YAML, TOML) or after `{`/`,` (a flow mapping,
# an inline table); the value a quoted string or a bare word.
_ASSIGNMENT = re.compile(
    r"(?m)(?P<lead>(?:^|[{,])[ \t]*-?[ \t]*)(?P<key>[\"']?[A-Za-z_][\w.\-]*[\"']?)(?P<sep>[ \t]*[:=][ \t]*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,{}\[\]#]+)"
)


def redact_text(text: str) -> str:
    """A program file's text with the value of every secret key replaced by `<redacted>`: what is
    shown to an LM (mipro_v2's proposer reads the program file). `${VAR}` references stay, they
    hold no secret."""

    def replace(match: re.Match[str]) -> str:
        value = match["value"]
        if not is_secret_name(match["key"].strip("\"'")) or value.strip("\"'").startswith("${"):
            return match[0]
        return f"{match['lead']}{match['key']}{match['sep']}{REDACTED}"

    return _ASSIGNMENT.sub(replace, text)


class UnsetSecret(str):
    """An empty secret whose environment variable was required but unset: carries the error
    (file:line of the value) for whoever is about to use it."""

    error: ProgramError

    def __new__(cls, error: ProgramError) -> UnsetSecret:
        secret = super().__new__(cls, "")
        secret.error = error
        return secret


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#]*)\?[^\s#]*")


def redact_urls(text: str) -> str:
    """`text` with every URL's user:password@ and query (`?api_key=...`) redacted: either may hold
    a token, in a command-line value or an error message that quotes an endpoint."""
    return _QUERY.sub(rf"\1?{REDACTED}", _USERINFO.sub(rf"\1{REDACTED}@", text))
