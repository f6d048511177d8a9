"""Dense retrieval: passages and queries embedded by an OpenAI-compatible `/embeddings` endpoint,
ranked by cosine similarity.

The corpus is embedded once, `batch_size` passages per request (`max_concurrency` requests at a
time), and the vectors are stored as one float32 `.npy` file in `<cache>/retrieval/embeddings/`,
named by a hash of the corpus (bytes and how it was read), the model, the endpoint and any extra
request parameters. A second retriever over the same corpus reads that file and only ever sends
queries. The API key travels in the Authorization header and nowhere else: it is not part of the
cache key, not written to disk, and scrubbed from every message.

Requests go through the LM stack (`dspx_cli/lm/stack.py`): the same endpoint resolution, error
messages, retries (429, 5xx, dropped connections, timeouts, with backoff), limits (at most
`max_concurrency` requests in flight), usage meter and history as chat calls, so a run's usage line
and history show them. Failures reach callers as `EmbeddingsError`s of one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from dspx_cli.core.telemetry import OFF, Telemetry
from dspx_cli.errors import LMError
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.embeddings import EmbeddingsRequest
from dspx_cli.lm.history import History
from dspx_cli.lm.retry import DEFAULT_BASE_DELAY
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.retrieval.base import Passage, RetrievalError, check_k, retrieval_cache_dir, write_atomically
from dspx_cli.retrieval.corpus import Corpus

if TYPE_CHECKING:
    import numpy as np

    from dspx_cli.lm.observed import ObservedLM
    from dspx_cli.lm.spans import TracedLM

__all__ = ["EmbeddingsError", "EmbeddingsRetriever"]

logger = logging.getLogger(__name__)

EMBEDDINGS_VERSION = 1  # bump when what goes into a cached matrix changes
_QUERY_MEMORY = 1024  # query vectors kept per retriever: optimizers ask the same questions again


class EmbeddingsError(RetrievalError):
    """A failed embeddings request, in the LM layer's words (`status` is the HTTP status, if any)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EmbeddingsRetriever:
    """`await EmbeddingsRetriever(corpus, "openai/text-embedding-3-small").search("question", k=3)`.

    `model` takes the LM's provider prefixes (`openai/` reads $OPENAI_API_KEY; `vllm/`, `ollama/`,
    `llamacpp/` have default endpoints), or any name with `api_base`. After the first search,
    `embeddings_source` says whether the corpus vectors were `"computed"` or read from the
    `"cache"`, and `cache_file` where they are stored.
    """

    def __init__(
        self,
        corpus: Corpus,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        batch_size: int = 128,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        num_retries: int = 3,
        base_delay: float = DEFAULT_BASE_DELAY,
        extra: Mapping[str, Any] | None = None,
        cache_dir: Path | None = None,
        use_cache: bool = True,
        meter: UsageMeter | None = None,
        history: History | None = None,
        telemetry: Telemetry = OFF,
    ) -> None:
        from dspx_cli.lm.openai_compat import OpenAICompatLM
        from dspx_cli.lm.stack import embeddings_stack

        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be 1 or more, not {max_concurrency}")
        self.corpus = corpus
        self.model = model
        self.batch_size = batch_size
        self.extra = dict(extra or {})
        config = LMConfig(
            model=model,
            api_base=api_base,
            api_key=api_key,
            timeout=timeout,
            extra=self.extra,
            num_retries=num_retries,
            max_concurrency=max_concurrency,
            cache=False,
        )
        self.meter = meter if meter is not None else UsageMeter()
        try:
            # The LM layer resolves the endpoint (provider prefixes, $OPENAI_API_KEY) as for chat.
            backend = OpenAICompatLM(config, what="embeddings model", section="embeddings")
        except LMError as exc:
            raise RetrievalError(str(exc)) from None
        self._embedder: ObservedLM | TracedLM = embeddings_stack(
            backend, config, self.meter, history, base_delay=base_delay
        )
        if telemetry.enabled:
            from dspx_cli.lm.spans import TracedLM

            self._embedder = TracedLM(self._embedder, config, telemetry)  # a span per embeddings call
        endpoint = backend.endpoint
        self.api_base = endpoint.api_base
        self.model_name = endpoint.model_name
        self.url = endpoint.embeddings_url
        self.use_cache = use_cache
        self.cache_file = retrieval_cache_dir(cache_dir, "embeddings") / f"{self.cache_key()}.npy"
        self.embeddings_source: Literal["computed", "cache"] | None = None
        self._matrix: np.ndarray | None = None  # corpus vectors, each of length 1
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._loading = asyncio.Lock()

    def __repr__(self) -> str:
        return f"EmbeddingsRetriever(corpus={self.corpus.name!r}, model={self.model!r}, url={getattr(self, 'url', None)!r})"

    def cache_key(self) -> str:
        # No key: another key for the same endpoint returns the same vectors, and it must not reach disk.
        payload = {
            "v": EMBEDDINGS_VERSION,
            "corpus": self.corpus.fingerprint,
            "model": self.model,
            "api_base": self.api_base,
            "extra": self.extra,
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    async def search(self, query: str, k: int) -> list[Passage]:
        """The `k` passages most similar to the query (cosine), best first."""
        import numpy as np

        check_k(k)
        matrix = await self._corpus_matrix()
        vector = await self._query_vector(query)
        if vector.shape[0] != matrix.shape[1]:
            raise RetrievalError(
                f"{self.url} gave the query a {vector.shape[0]}-dimensional embedding but the corpus "
                f"{matrix.shape[1]}-dimensional ones; does {self.model!r} always embed the same way?"
            )
        scores = matrix @ vector
        best = np.argsort(-scores, kind="stable")[: min(k, len(self.corpus))]
        return [replace(self.corpus.passages[i], score=float(scores[i])) for i in best]

    async def load(self) -> None:
        """Embed the corpus now (or read it from the cache) instead of on the first search."""
        await self._corpus_matrix()

    async def _corpus_matrix(self) -> np.ndarray:
        if self._matrix is None:
            async with self._loading:
                if self._matrix is None:
                    matrix = await asyncio.to_thread(self._read_cached) if self.use_cache else None
                    if matrix is None:
                        matrix = await self._embed_corpus()
                        if self.use_cache:
                            await asyncio.to_thread(self._write_cached, matrix)
                        self.embeddings_source = "computed"
                    else:
                        self.embeddings_source = "cache"
                    self._matrix = _unit_rows(matrix)
        return self._matrix

    def _read_cached(self) -> np.ndarray | None:
        import numpy as np

        if not self.cache_file.is_file():
            return None
        try:
            matrix = np.load(self.cache_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("embedding the corpus again: %s is unreadable (%s)", self.cache_file, exc)
            return None
        if matrix.ndim != 2 or matrix.shape[0] != len(self.corpus):
            logger.warning("embedding the corpus again: %s does not match the corpus", self.cache_file)
            return None
        return matrix

    def _write_cached(self, matrix: np.ndarray) -> None:
        import numpy as np

        def write(path: Path) -> None:
            # Through a file object: np.save given a name without ".npy" would add the suffix.
            with open(path, "wb") as handle:
                np.save(handle, matrix, allow_pickle=False)

        try:
            write_atomically(self.cache_file, write)
        except OSError as exc:
            # Not caching costs the next run the embedding calls; failing would cost this run.
            logger.warning("could not cache the corpus embeddings in %s: %s", self.cache_file, exc)

    async def _embed_corpus(self) -> np.ndarray:
        import numpy as np

        texts = self.corpus.texts
        batches = [texts[start : start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        try:
            # A TaskGroup cancels the other batches as soon as one fails for good; the stack's
            # max_concurrency bounds how many are in flight.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._embed(batch)) for batch in batches]
        except* RetrievalError as failures:
            raise failures.exceptions[0] from None
        return np.concatenate([task.result() for task in tasks])

    async def _query_vector(self, query: str) -> np.ndarray:
        vector = self._queries.get(query)
        if vector is None:
            vector = _unit_rows(await self._embed([query]))[0]
            self._queries[query] = vector
            while len(self._queries) > _QUERY_MEMORY:
                self._queries.popitem(last=False)
        else:
            self._queries.move_to_end(query)
        return vector

    async def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            response = await self._embedder.embed(EmbeddingsRequest(tuple(texts)))
        except LMError as exc:
            raise EmbeddingsError(str(exc), status=getattr(exc, "status", None)) from exc
        return response.vectors

    async def aclose(self) -> None:
        await self._embedder.aclose()


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so a dot product is the cosine; a zero row stays zero."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)
