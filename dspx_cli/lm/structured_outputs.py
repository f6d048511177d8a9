"""Which `response_format` an OpenAI-compatible endpoint is sent, and which endpoints refused a schema.

The JSONAdapter asks for DSPy's strict `json_schema` (or `json_object` for shapes a strict schema
cannot describe). DSPy 3.4.1 sends that only to models its catalog (LiteLLM's model list) says
enforce a schema; models the catalog knows for JSON mode only get `json_object`; every other model
gets no `response_format` at all, since it may well reject one. That last group holds every name
the catalog does not know: a model on vLLM, Ollama or llama.cpp, or any custom name on an
`api_base`. `catalog_mode` reproduces those three answers for the OpenAI model families
(checked against DSPy 3.4.1's answers for every OpenAI chat model in its catalog). Models behind
the other presets (gemini/, groq/, openrouter/, ...) match none of those families and get no
response_format; an Azure deployment named after an OpenAI model gets that model's answer.
`anthropic/` models never reach this module: the Messages API has no response_format, so the
Anthropic client (lm/anthropic.py) drops the adapter's and the JSON comes from the prompt alone.
(DSPy 3.4.1 asks litellm for a schema on the Claude models its catalog marks, e.g. Sonnet 4,
which litellm turns into Anthropic's own structured output; dspx does not reproduce that.)

Servers differ in how they refuse a schema: llama-cpp-python's own server answers HTTP 500,
others 400 or 422. `SchemaRefusals` remembers, per endpoint and model, that one did, so the run
sends `json_object` there from then on instead of failing (or retrying) every call.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Literal

Mode = Literal["json_schema", "json_object", "none"]

JSON_OBJECT: dict[str, str] = {"type": "json_object"}

_DATE = r"(-\d{4}-\d{2}-\d{2})?"
# First match wins. Families are written as patterns rather than a copied model list, so a newly
# dated snapshot of a known family gets the family's answer.
_PATTERNS: tuple[tuple[str, Mode], ...] = (
    # gpt-4o before structured outputs, and the audio models: JSON mode only.
    (r"gpt-4o-2024-05-13", "json_object"),
    (r"gpt-4o(-mini)?-audio-preview.*|gpt-audio.*", "json_object"),
    (r"gpt-4o(-mini)?" + _DATE + r"|gpt-4o(-mini)?-search-preview|chatgpt-4o-latest|chat-latest", "json_schema"),
    (r"gpt-4\.1(-mini|-nano)?" + _DATE, "json_schema"),
    (r"gpt-[5-9](\.\d+)?(-[a-z]+)*" + _DATE, "json_schema"),
    (r"o1" + _DATE + r"|o3(-mini)?" + _DATE + r"|o4-mini" + _DATE, "json_schema"),
    (r"gpt-3\.5-turbo(-\d{4})?|gpt-4(-\d{4})?|gpt-4-turbo" + _DATE + r"|gpt-4-\d{4}-preview", "json_object"),
    (r"computer-use-preview", "json_object"),
)

# Providers whose models DSPy's catalog does not describe: they get no response_format.
_UNCATALOGUED_PROVIDERS = frozenset({"vllm", "ollama", "llamacpp"})


def catalog_mode(provider: str | None, model_name: str) -> Mode:
    """What DSPy 3.4.1 would send this model: the schema, JSON mode, or no response_format.

    `provider` is the dspx prefix (None for a bare name on an api_base, which DSPy spells
    `openai/<name>`); `model_name` is the name sent to the server.
    """
    if provider in _UNCATALOGUED_PROVIDERS:
        return "none"
    name = model_name.strip()
    if name.startswith("ft:"):
        # The catalog lists fine-tunable bases (`ft:gpt-4o-mini-2024-07-18`) but not the names of
        # actual fine-tunes (`...:org::id`), nor any gpt-3.5 fine-tune.
        name = name[3:]
        if ":" in name or name.startswith("gpt-3.5"):
            return "none"
    for pattern, mode in _PATTERNS:
        # Compiled on first use (re caches them), not when this module is imported.
        if re.fullmatch(pattern, name):
            return mode
    return "none"


def asks_for_schema(body: dict[str, Any]) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_schema"


def may_refuse_schema(status: int) -> bool:
    """Whether an error status can be a server's refusal of the schema.

    Refusals come as 400, 422 or, from llama-cpp-python, 500. A wrong key (401, 403), a wrong model
    or path (404) and the transient 408, 409 and 429 say nothing about the schema.
    """
    return status >= 500 or (400 <= status < 500 and status not in (401, 403, 404, 408, 409, 429))


class SchemaRefusals:
    """Endpoints (URL and model) that refused a `json_schema` response_format during this run.

    One is shared by every LM a run context builds, so two configs on one server (different
    timeouts, say) learn it once. Thread-safe: local models run in threads, evaluate in tasks.
    """

    def __init__(self) -> None:
        self._refused: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def refused(self, url: str, model: str) -> bool:
        return (url, model) in self._refused

    def remember(self, url: str, model: str) -> bool:
        """Record a refusal; True the first time, so the caller warns once per endpoint."""
        with self._lock:
            if (url, model) in self._refused:
                return False
            self._refused.add((url, model))
            return True


def outgoing(response_format: Any, mode: Mode) -> Any:
    """The response_format to send in place of the adapter's, or None to send none."""
    if mode == "none":
        return None
    if mode == "json_object" and asks_for_schema({"response_format": response_format}):
        return dict(JSON_OBJECT)
    return response_format
