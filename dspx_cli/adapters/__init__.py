"""Adapters turn a signature, demos and inputs into LM messages, and LM replies into fields.

This package imports only `dspx_cli.core` and `dspx_cli.errors`. The adapter classes load on
first use (PEP 562): `dspx validate` reads only `adapters.media`'s helpers, not the adapters.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dspx_cli.adapters.chat import ChatAdapter
    from dspx_cli.adapters.json import JSONAdapter

__all__ = ["ChatAdapter", "JSONAdapter"]

_HOMES = {"ChatAdapter": "chat", "JSONAdapter": "json"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
