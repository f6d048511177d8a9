"""The hosted and local servers a model prefix names: one `Provider` record each, in `PROVIDERS`.

`openai/gpt-4o-mini` means the provider `openai`, model `gpt-4o-mini`. The loader checks prefixes
here without importing any client (`dspx validate` stays fast); the HTTP client reads the same
records for the endpoint and the key variable; `create_lm` builds the record's backend. A new
provider is one record below (and a backend class, if it does not speak OpenAI's API).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["OPENAI_COMPATIBLE", "PROVIDERS", "Provider", "load_backend", "split_provider"]

OPENAI_COMPATIBLE = "dspx_cli.lm.openai_compat:OpenAICompatLM"


@dataclass(frozen=True)
class Provider:
    """A `<prefix>/<model>` family: its default endpoint, key variable and backend class."""

    prefix: str  # `<prefix>/<model>`
    api_base: str  # the default endpoint; a program's api_base replaces it
    # Read when the program gives no api_key; only for hosted APIs where a key is always needed.
    key_env: str | None = None
    backend: str = OPENAI_COMPATIBLE  # "module:Class", called as Class(config, refusals=...)


def load_backend(path: str) -> Any:
    """The class a backend path (`"module:Class"`) names, imported now: backends are imported only
    once a model needs one."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _registry(*providers: Provider) -> dict[str, Provider]:
    return {provider.prefix: provider for provider in providers}


PROVIDERS: dict[str, Provider] = _registry(
    Provider("openai", "https://api.openai.com/v1", key_env="OPENAI_API_KEY"),
    Provider("vllm", "http://localhost:8000/v1"),
    Provider("ollama", "http://localhost:11434/v1"),
    Provider("llamacpp", "http://localhost:8080/v1"),
)


def split_provider(model: str) -> tuple[str | None, str]:
    """`vllm/meta-llama/Llama-3-8B` -> ("vllm", "meta-llama/Llama-3-8B"); unknown prefixes stay in the name."""
    prefix, sep, rest = model.partition("/")
    if sep and prefix in PROVIDERS and rest:
        return prefix, rest
    return None, model
