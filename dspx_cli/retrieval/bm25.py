"""BM25 over a corpus with `bm25s`, the index cached on disk so a corpus is indexed once.

Tokens: bm25s's tokenizer (lower case, words of two or more letters or digits), English stopwords
(bm25s's list; `stopwords="none"` keeps every word) and, by default, a plural stemmer
(`stemmer="plural"`, Harman's S-stemmer: "countries" and "country" match, nothing more
aggressive; `"none"` matches words exactly). The same tokens are made from queries.

The index lives in `<cache>/retrieval/bm25/<key>/` in bm25s's own format (numpy arrays and JSON,
no pickles). The key hashes the corpus bytes, how the corpus was read, the tokenizer and BM25
settings and the bm25s version, so any change builds a new index and an unchanged corpus is read
back instead of indexed again. bm25s and numpy are imported on first search, not at import.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import orjson

from dspx_cli.retrieval.base import Passage, check_k, retrieval_cache_dir, write_atomically
from dspx_cli.retrieval.corpus import Corpus

if TYPE_CHECKING:
    import bm25s

__all__ = ["BM25Retriever", "plural_stem"]

logger = logging.getLogger(__name__)

Stemmer = Literal["plural", "none"]
Stopwords = Literal["en", "en_plus", "none"]
INDEX_VERSION = 1  # bump when what goes into an index changes, so old ones are not misread
_INDEX_FILE = "params.index.json"  # bm25s writes it; its presence marks a complete index


class BM25Retriever:
    """`await BM25Retriever(load_corpus("corpus.jsonl")).search("question", k=3)`.

    After the first search (or `load()`), `index_source` says whether the index was `"built"` or
    read from the `"cache"`, and `index_dir` where it is stored.
    """

    def __init__(
        self,
        corpus: Corpus,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stemmer: Stemmer = "plural",
        stopwords: Stopwords = "en",
        cache_dir: Path | None = None,
        use_cache: bool = True,
    ) -> None:
        if stemmer not in ("plural", "none"):
            raise ValueError(f"stemmer must be 'plural' or 'none', not {stemmer!r}")
        if stopwords not in ("en", "en_plus", "none"):
            raise ValueError(f"stopwords must be 'en', 'en_plus' or 'none', not {stopwords!r}")
        self.corpus = corpus
        self.k1 = k1
        self.b = b
        self.stemmer = stemmer
        self.stopwords = stopwords
        self.use_cache = use_cache
        self.index_dir = retrieval_cache_dir(cache_dir, "bm25") / self.cache_key()
        self.index_source: Literal["built", "cache"] | None = None
        self._model: bm25s.BM25 | None = None
        self._loading = asyncio.Lock()

    def __repr__(self) -> str:
        return f"BM25Retriever(corpus={self.corpus.name!r}, passages={len(self.corpus)})"

    def cache_key(self) -> str:
        import importlib.metadata

        payload = {
            "v": INDEX_VERSION,
            "corpus": self.corpus.fingerprint,
            "k1": self.k1,
            "b": self.b,
            "stemmer": self.stemmer,
            "stopwords": self.stopwords,
            # bm25s's file layout is its own; a new version must not misread an old index.
            "bm25s": importlib.metadata.version("bm25s"),
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    async def search(self, query: str, k: int) -> list[Passage]:
        """The `k` best passages, best first. As in DSPy, `k` passages come back even when fewer
        share a word with the query (the rest score 0, in corpus order)."""
        check_k(k)
        if self._model is None:
            async with self._loading:
                if self._model is None:
                    # Indexing a large corpus takes seconds of CPU: keep the event loop free.
                    await asyncio.to_thread(self.load)
        return self._rank(query, k)

    def load(self) -> None:
        """Read the index from the cache, or build it (and cache it). Idempotent."""
        if self._model is not None:
            return
        if self.use_cache and self.index_dir.exists():
            model = self._read_cached() if (self.index_dir / _INDEX_FILE).is_file() else None
            if model is not None:
                self._model, self.index_source = model, "cache"
                return
            # Damaged: make room for the rebuilt index (a directory rename cannot replace it).
            shutil.rmtree(self.index_dir, ignore_errors=True)
        self._model, self.index_source = self._build(), "built"
        if self.use_cache:
            model = self._model
            try:
                write_atomically(
                    self.index_dir, lambda scratch: model.save(str(scratch), show_progress=False), directory=True
                )
            except OSError as exc:
                # Not caching costs the next run a rebuild; failing would cost this run.
                logger.warning("could not cache the BM25 index in %s: %s", self.index_dir, exc)

    def _read_cached(self) -> bm25s.BM25 | None:
        import bm25s

        try:
            model = bm25s.BM25.load(str(self.index_dir), show_progress=False, verbosity=0)
        except (OSError, ValueError, KeyError) as exc:
            # A damaged cache entry costs one rebuild, never a failed run.
            logger.warning("rebuilding the BM25 index in %s: %s", self.index_dir, exc)
            return None
        if model.scores.get("num_docs") != len(self.corpus):
            logger.warning("rebuilding the BM25 index in %s: it does not match the corpus", self.index_dir)
            return None
        return model

    def _build(self) -> bm25s.BM25:
        import bm25s

        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.index(self._tokenize(self.corpus.texts), show_progress=False)
        return model

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        tokens: list[list[str]] = bm25s.tokenize(
            texts,
            stopwords=[] if self.stopwords == "none" else self.stopwords,
            stemmer=_stem_words if self.stemmer == "plural" else None,
            return_ids=False,
            show_progress=False,
        )
        return tokens

    def _rank(self, query: str, k: int) -> list[Passage]:
        import numpy as np

        assert self._model is not None
        k = min(k, len(self.corpus))
        words = [word for word in self._tokenize([query])[0] if word in self._model.vocab_dict]
        if words:
            scores = np.asarray(self._model.get_scores(words), dtype=np.float64)
        else:
            scores = np.zeros(len(self.corpus))
        # A stable sort on the negated scores keeps corpus order among equal scores.
        best = np.argsort(-scores, kind="stable")[:k]
        return [replace(self.corpus.passages[i], score=float(scores[i])) for i in best]

    async def aclose(self) -> None:
        self._model = None


def plural_stem(word: str) -> str:
    """Harman's S-stemmer (1991): plural endings only, so it rarely merges unrelated words."""
    if len(word) > 3 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def _stem_words(words: list[str]) -> list[str]:
    # bm25s.tokenize hands a stemmer the list of distinct words at once.
    return [plural_stem(word) for word in words]
