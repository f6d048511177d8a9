"""Language models behind one async interface: `create_lm(LMConfig(...)).complete(LMRequest(...))`.

Importing this package is cheap: backends (httpx, llama_cpp, transformers) load when chosen, and the
names below load on first use (PEP 562), so `dspx validate`, which needs only `lm.config` and
`lm.registry`, does not pay for the request and response types of `lm.base`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dspx_cli.lm.base import LM, LMRequest, LMResponse, Message, Usage
    from dspx_cli.lm.config import LMConfig
    from dspx_cli.lm.registry import create_lm

__all__ = ["LM", "LMConfig", "LMRequest", "LMResponse", "Message", "Usage", "create_lm"]

_HOMES = {
    "LM": "base",
    "LMRequest": "base",
    "LMResponse": "base",
    "Message": "base",
    "Usage": "base",
    "LMConfig": "config",
    "create_lm": "registry",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
