"""The hosted and local servers a model prefix names: one `Provider` record each, in `PROVIDERS`.

`openai/gpt-4o-mini` means the provider `openai`, model `gpt-4o-mini`. The loader checks prefixes
here without importing any client (`dspx validate` stays fast); the HTTP client reads the same
records for the endpoint and the key variable; `create_lm` builds the record's backend. A new
provider is one record below (and a backend class, if it does not speak OpenAI's API).

Three wire formats: OpenAI's chat completions (most hosts, Gemini's compatibility endpoint
included), Azure OpenAI's (the same body under a deployment's URL, an `api-key` header and an
`api-version` query), and Anthropic's Messages API (lm/anthropic.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ANTHROPIC", "OPENAI_COMPATIBLE", "PROVIDERS", "Provider", "load_backend", "split_provider"]

OPENAI_COMPATIBLE = "dspx_cli.lm.openai_compat:OpenAICompatLM"
ANTHROPIC = "dspx_cli.lm.anthropic:AnthropicLM"

Wire = Literal["openai", "azure", "anthropic"]


@dataclass(frozen=True)
class Provider:
    """A `<prefix>/<model>` family: its default endpoint, key variable and backend class."""

    prefix: str  # `<prefix>/<model>`
    api_base: str  # the default endpoint; a program's api_base replaces it ("": the program must give one)
    # Read when the program gives no api_key; only for hosted APIs where a key is always needed.
    key_env: str | None = None
    backend: str = OPENAI_COMPATIBLE  # "module:Class", called as Class(config, refusals=...)
    # Other names the key is commonly exported under (litellm's spelling), read when key_env is unset.
    also_key_env: tuple[str, ...] = ()
    wire: Wire = "openai"  # how requests are addressed and authenticated (openai_http.resolve_endpoint)


def load_backend(path: str) -> Any:
    """The class a backend path (`"module:Class"`) names, imported now: backends are imported only
    once a model needs one."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _registry(*providers: Provider) -> dict[str, Provider]:
    return {provider.prefix: provider for provider in providers}


_TOGETHER = ("https://api.together.xyz/v1", "TOGETHER_API_KEY")
_FIREWORKS = ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY")

PROVIDERS: dict[str, Provider] = _registry(
    Provider("openai", "https://api.openai.com/v1", key_env="OPENAI_API_KEY"),
    Provider("vllm", "http://localhost:8000/v1"),
    Provider("ollama", "http://localhost:11434/v1"),
    Provider("llamacpp", "http://localhost:8080/v1"),
    Provider(
        "anthropic", "https://api.anthropic.com", key_env="ANTHROPIC_API_KEY", backend=ANTHROPIC, wire="anthropic"
    ),
    # Google's OpenAI-compatible endpoint for Gemini models.
    Provider("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", key_env="GEMINI_API_KEY"),
    # `azure/<deployment>`: api_base (the resource endpoint) is required; lm/openai_http.py builds the URL.
    Provider("azure", "", key_env="AZURE_API_KEY", wire="azure"),
    Provider("openrouter", "https://openrouter.ai/api/v1", key_env="OPENROUTER_API_KEY"),
    Provider("together", *_TOGETHER, also_key_env=("TOGETHERAI_API_KEY",)),
    Provider("together_ai", *_TOGETHER, also_key_env=("TOGETHERAI_API_KEY",)),  # litellm's prefix
    Provider("groq", "https://api.groq.com/openai/v1", key_env="GROQ_API_KEY"),
    Provider("mistral", "https://api.mistral.ai/v1", key_env="MISTRAL_API_KEY"),
    Provider("deepseek", "https://api.deepseek.com/v1", key_env="DEEPSEEK_API_KEY"),
    Provider("fireworks", *_FIREWORKS),
    Provider("fireworks_ai", *_FIREWORKS),  # litellm's prefix
)


def split_provider(model: str) -> tuple[str | None, str]:
    """`vllm/meta-llama/Llama-3-8B` -> ("vllm", "meta-llama/Llama-3-8B"); unknown prefixes stay in the name."""
    prefix, sep, rest = model.partition("/")
    if sep and prefix in PROVIDERS and rest:
        return prefix, rest
    return None, model
