"""Token usage and cost of a run, split into fresh calls and calls served from the cache, with
the calls that failed and the attempts that were retried (each costs a request, maybe tokens)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ModelUsage:
    calls: int = 0  # calls that got a reply (cached ones included)
    cached_calls: int = 0
    failed_calls: int = 0  # calls that ended in an error, after their retries
    retries: int = 0  # attempts made again after a transient error, whether the call then succeeded or not
    prompt_tokens: int = 0  # fresh calls only: what was paid for
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # what the cache saved
    cached_completion_tokens: int = 0
    cost: float | None = None  # USD for fresh calls, when the program gives prices
    saved_cost: float | None = None

    def describe_calls(self) -> str:
        """`3 calls (1 cached)`, `4 calls, 1 failed (2 retries)`, `3 calls failed (2 retries)`."""
        total = self.calls + self.failed_calls
        text = f"{total} call{'s' if total != 1 else ''}"
        if self.failed_calls:
            text += " failed" if not self.calls else f", {self.failed_calls} failed"
        details = []
        if self.cached_calls:
            details.append(f"{self.cached_calls} cached")
        if self.retries:
            details.append(f"{self.retries} retr{'ies' if self.retries != 1 else 'y'}")
        return f"{text} ({', '.join(details)})" if details else text


class UsageMeter:
    """One per run context; every LM call of the run is recorded here, whichever module made it."""

    def __init__(self) -> None:
        self._models: dict[str, ModelUsage] = {}
        self._lock = threading.Lock()
        self.adapter_fallbacks = 0
        # Replies that came back but did not fit the signature: counted in `calls` (they were made,
        # and paid for when fresh), yet no prediction used them.
        self.unusable_replies = 0
        self.unusable_cached_replies = 0

    def record(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cached: bool,
        price_input: float | None = None,
        price_output: float | None = None,
    ) -> None:
        priced = price_input is not None and price_output is not None
        cost = (prompt_tokens * price_input + completion_tokens * price_output) / 1e6 if priced else None  # type: ignore[operator]
        with self._lock:
            usage = self._models.setdefault(model, ModelUsage())
            usage.calls += 1
            if cached:
                usage.cached_calls += 1
                usage.cached_prompt_tokens += prompt_tokens
                usage.cached_completion_tokens += completion_tokens
                if cost is not None:
                    usage.saved_cost = (usage.saved_cost or 0.0) + cost
            else:
                usage.prompt_tokens += prompt_tokens
                usage.completion_tokens += completion_tokens
                if cost is not None:
                    usage.cost = (usage.cost or 0.0) + cost

    def record_failure(self, model: str) -> None:
        with self._lock:
            self._models.setdefault(model, ModelUsage()).failed_calls += 1

    def record_retry(self, model: str) -> None:
        with self._lock:
            self._models.setdefault(model, ModelUsage()).retries += 1

    def record_fallback(self) -> None:
        with self._lock:
            self.adapter_fallbacks += 1

    def record_unusable_reply(self, cached: bool) -> None:
        with self._lock:
            self.unusable_replies += 1
            self.unusable_cached_replies += int(cached)

    @property
    def models(self) -> dict[str, ModelUsage]:
        return dict(self._models)

    def totals(self) -> ModelUsage:
        total = ModelUsage()
        for usage in self._models.values():
            for name in (
                "calls",
                "cached_calls",
                "failed_calls",
                "retries",
                "prompt_tokens",
                "completion_tokens",
                "cached_prompt_tokens",
                "cached_completion_tokens",
            ):
                setattr(total, name, getattr(total, name) + getattr(usage, name))
            for name in ("cost", "saved_cost"):
                if getattr(usage, name) is not None:
                    setattr(total, name, (getattr(total, name) or 0.0) + getattr(usage, name))
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": {model: asdict(usage) for model, usage in self._models.items()},
            "total": asdict(self.totals()),
            "adapter_fallbacks": self.adapter_fallbacks,
            "unusable_replies": self.unusable_replies,
            "unusable_cached_replies": self.unusable_cached_replies,
        }
