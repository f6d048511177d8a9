"""The one async LM interface every backend implements.

A backend turns an `LMRequest` (chat messages plus sampling settings) into an `LMResponse`
(n completions plus token usage). Everything above this layer (adapters' callers, modules,
the cache and retries of later layers) speaks only these types.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

# {"role": "system" | "user" | "assistant", "content": text, or a list of content parts when a user
# turn carries an image: [{"type": "text", "text": ...}, {"type": "image_url", "image_url": {"url": ...}}]}
Message = dict[str, Any]


@dataclass(frozen=True)
class LMRequest:
    """What is sent to a model. Holds no secrets and no transport settings, so it can be hashed."""

    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    n: int = 1
    # Provider-specific parameters passed through verbatim (top_p, stop, seed, response_format...).
    extra: dict[str, Any] = field(default_factory=dict)
    # Distinguishes otherwise identical requests in the cache (DSPy's rollout_id); never sent.
    rollout_id: int | None = None
    # Cache keys already hashed for this request, by model: the cache and the history both need
    # one on every call (lm/cache.request_key fills it; the request is frozen, so it stays valid).
    keys: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class LMResponse:
    completions: list[str]
    usage: Usage
    model: str
    latency_s: float = 0.0
    finish_reasons: list[str | None] = field(default_factory=list)
    cached: bool = False  # served from the cache: no tokens were paid for


class LM(abc.ABC):
    """An async language model. `model` is the name users wrote (e.g. "local/smollm2")."""

    model: str

    @abc.abstractmethod
    async def complete(self, request: LMRequest) -> LMResponse:
        """Run one request. Raises dspx_cli.errors.LMError with a message that says what to fix."""

    def forget(self, request: LMRequest) -> None:
        """Drop any stored answer to `request`: its reply did not fit the signature, so replaying
        it would replay the failure. Wrappers (which keep the LM below as `inner`) pass it down;
        only the cache acts on it."""
        inner = getattr(self, "inner", None)
        if isinstance(inner, LM):
            inner.forget(request)

    async def aclose(self) -> None:  # noqa: B027 - optional: most backends hold nothing to release
        """Release connections; local models stay loaded for the life of the process."""


def text_messages(messages: tuple[Message, ...], model: str) -> list[dict[str, str]]:
    """The messages of a text-only backend; an image (a content-part list) is a one-line error."""
    from dspx_cli.errors import LMError

    if any(not isinstance(m.get("content"), str) for m in messages):
        raise LMError(
            f"{model} takes text only and this prompt has an image input; "
            "use a vision model behind an OpenAI-compatible API (e.g. --lm openai/gpt-4o-mini)"
        )
    return [dict(m) for m in messages]
