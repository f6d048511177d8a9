"""How to reach one LM: the model name, its endpoint and default sampling settings.

An `LMConfig` comes from a program file's `lm:` section (or `--lm`). It carries the API key, so
it is careful about where it shows up: the key is left out of `repr()` and `redacted()`, and the
only place it travels to is the backend that needs it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# `model@http://host:port/v1` on the command line names an OpenAI-compatible server in one string.
_AT_URL = re.compile(r"^(?P<model>.+)@(?P<base>https?://\S+)$")


@dataclass(frozen=True)
class LMConfig:
    """One LM as a program (or --lm) names it: the model string, its endpoint and sampling settings."""

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float | None = None
    max_tokens: int | None = None
    n: int = 1
    timeout: float = 120.0
    # Provider-specific request parameters (top_p, stop, seed, ...), passed through verbatim.
    extra: dict[str, Any] = field(default_factory=dict)
    # Production settings (retries, limits, prices, cache); none of them changes a reply.
    num_retries: int = 3
    max_concurrency: int | None = None  # requests in flight at once, per LM, across the process
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens (prompt + completion) per minute
    price_input: float | None = None  # USD per million prompt tokens
    price_output: float | None = None  # USD per million completion tokens
    cache: bool = True
    # Azure OpenAI's `api-version` query parameter (None: $AZURE_API_VERSION, else a recent GA version).
    api_version: str | None = None

    def key(self) -> tuple[Any, ...]:
        """A hashable identity of every field (the key included), for caching LM instances.

        `extra` is a dict, so it enters as canonical JSON: two configs that mean the same thing
        get the same key whatever order their extra parameters were written in.
        """
        extra = json.dumps(self.extra, sort_keys=True, default=repr)
        return (
            self.model,
            self.api_base,
            self.api_key,
            self.temperature,
            self.max_tokens,
            self.n,
            self.timeout,
            extra,
            self.num_retries,
            self.max_concurrency,
            self.rpm,
            self.tpm,
            self.price_input,
            self.price_output,
            self.cache,
            self.api_version,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LMConfig) and self.key() == other.key()

    def __hash__(self) -> int:
        # The generated hash would fail on the `extra` dict; hash the canonical key instead.
        return hash(self.key())

    def redacted(self) -> dict[str, Any]:
        """The settings safe to show or write out: everything but the API key."""
        shown: dict[str, Any] = {"model": self.model}
        if self.api_base is not None:
            shown["api_base"] = self.api_base
        if self.api_version is not None:
            shown["api_version"] = self.api_version
        for name in ("temperature", "max_tokens"):
            if getattr(self, name) is not None:
                shown[name] = getattr(self, name)
        if self.n != 1:
            shown["n"] = self.n
        shown["timeout"] = self.timeout
        for name in ("num_retries", "max_concurrency", "rpm", "tpm", "price_input", "price_output", "cache"):
            if getattr(self, name) != LMConfig.__dataclass_fields__[name].default:
                shown[name] = getattr(self, name)
        if self.extra:
            shown["extra"] = dict(self.extra)
        return shown

    @classmethod
    def from_model_string(cls, text: str) -> LMConfig:
        """`openai/gpt-4o-mini`, `local/smollm2`, `./model.gguf`, or `<model>@<api_base URL>`."""
        text = text.strip()
        if not text:
            raise ValueError("the model string is empty (e.g. local/smollm2 or openai/gpt-4o-mini)")
        match = _AT_URL.match(text)
        if match:
            return cls(model=match["model"], api_base=match["base"])
        return cls(model=text)
