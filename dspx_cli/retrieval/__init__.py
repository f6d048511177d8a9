"""Retrieval: passages from a local corpus for a query, by BM25 or by embeddings.

    corpus = load_corpus("datasets/rag/corpus.jsonl")
    passages = await BM25Retriever(corpus).search("Who painted the Mona Lisa?", k=3)

This layer imports `dspx_cli.errors`, `dspx_cli.core` and `dspx_cli.lm` only. Importing it is
cheap: bm25s and numpy load on the first search, httpx when `EmbeddingsRetriever` is first named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dspx_cli.retrieval.base import CorpusError, Passage, RetrievalError, Retriever
from dspx_cli.retrieval.bm25 import BM25Retriever, plural_stem
from dspx_cli.retrieval.corpus import Corpus, load_corpus

if TYPE_CHECKING:
    from dspx_cli.retrieval.embeddings import EmbeddingsError, EmbeddingsRetriever

__all__ = [
    "BM25Retriever",
    "Corpus",
    "CorpusError",
    "EmbeddingsError",
    "EmbeddingsRetriever",
    "Passage",
    "RetrievalError",
    "Retriever",
    "load_corpus",
    "plural_stem",
]


def __getattr__(name: str) -> Any:
    # httpx costs ~150 ms to import; a program that only uses BM25 should not pay it.
    if name in ("EmbeddingsError", "EmbeddingsRetriever"):
        from dspx_cli.retrieval import embeddings

        return getattr(embeddings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
