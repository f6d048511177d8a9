"""Telling a context-window overflow apart from other LM failures.

DSPy's LMs raise a dedicated `ContextWindowExceededError` (LiteLLM maps each provider's error to
it), and ReAct reacts to it by dropping the oldest steps of its trajectory. dspx's backends report
every failure as an `LMError` with the server's own words, so the overflow is recognised by those
words. The phrasings below are the ones the supported backends use:

- OpenAI, Azure, vLLM, Mistral: "This model's maximum context length is 8192 tokens. However, ..."
- vLLM (v1 engine): "The decoder prompt (length 9000) is longer than the maximum model length of 8192"
- llama.cpp's server: "the request exceeds the available context size, try increasing it"
- llama-cpp-python (local GGUF): "Requested tokens (2100) exceed context window of 2048"
- Anthropic-style: "prompt is too long: 210000 tokens > 200000 maximum"
- OpenAI's error code `context_length_exceeded`, when a proxy puts it in the message

Rate limits also talk about tokens ("too many tokens per minute"), so an error that is retryable
or has status 429 is never taken for an overflow.
"""

from __future__ import annotations

import re

from dspx_cli.errors import LMError

__all__ = ["ContextWindowExceededError", "is_context_window_error"]

_OVERFLOW = re.compile(
    r"context[ _-]?length[ _-]?exceeded"
    r"|maximum context length"
    r"|maximum model length"
    r"|(longer than|exceeds?|exceeded|exceeding) (the )?(model'?s? )?(maximum |available )?"
    r"(context|context window|context length|context size|model length)\b"
    r"|context (window|size) (has been |was |is )?exceeded"
    r"|(prompt|input) is too long"
    r"|too many (input |prompt )?tokens"
    r"|exceeds? the maximum number of tokens",
    re.IGNORECASE,
)


class ContextWindowExceededError(LMError):
    """The prompt did not fit the model's context window (dspx's counterpart of DSPy's error)."""


def is_context_window_error(error: BaseException) -> bool:
    """Whether `error` says the prompt was longer than the model's context window."""
    if isinstance(error, ContextWindowExceededError):
        return True
    if not isinstance(error, LMError):
        return False
    if getattr(error, "status", None) == 429 or getattr(error, "retryable", False):
        return False
    return _OVERFLOW.search(str(error)) is not None
