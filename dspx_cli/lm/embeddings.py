"""Embeddings calls through the LM stack: the request and response types, and their parsing.

An OpenAI-compatible `/embeddings` endpoint is reached by the same backend, retries, limits, usage
meter and history as chat completions (`OpenAICompatLM.embed` and each wrapper's `embed`), so its
calls are paced, retried, counted and logged like any other. Nothing here caches: the retriever
keeps corpus vectors on disk and recent query vectors in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dspx_cli.lm.base import Usage

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class EmbeddingsRequest:
    texts: tuple[str, ...]
    # Provider-specific parameters passed through verbatim (dimensions, encoding_format, ...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddingsResponse:
    vectors: np.ndarray  # float32, one row per text, in the request's order
    usage: Usage
    model: str
    latency_s: float = 0.0


class Embedder(Protocol):
    """What the retriever needs: `embed` and `aclose` (every layer of an LM stack has both)."""

    model: str

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse: ...

    async def aclose(self) -> None: ...


class EmbeddingsShapeError(ValueError):
    """The reply's `data` is not one embedding per input with indexes 0..n-1."""


def parse_vectors(data: Any, count: int) -> np.ndarray:
    """The vectors of an OpenAI embeddings reply body, ordered by index, as a float32 matrix."""
    import numpy as np

    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != count:
        got = f"{len(items)} embeddings" if isinstance(items, list) else "no 'data' list"
        raise EmbeddingsShapeError(f"replied with {got} for {count} inputs")
    try:
        ordered = sorted(items, key=lambda item: item["index"])
        if [item["index"] for item in ordered] != list(range(count)):
            raise ValueError("indexes are not 0..n-1")
        matrix = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise EmbeddingsShapeError(
            f"replied with embeddings that are not lists of numbers with indexes 0..{count - 1} ({detail})"
        ) from None
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise EmbeddingsShapeError("replied with embeddings of different or zero lengths")
    return matrix


def estimate_tokens(request: EmbeddingsRequest) -> int:
    """~4 characters a token, to pace by under a tpm limit until the reply says."""
    return sum(len(text) for text in request.texts) // 4 + len(request.texts)
