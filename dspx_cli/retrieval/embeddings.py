"""Dense retrieval: passages and queries embedded by an OpenAI-compatible `/embeddings` endpoint,
ranked by cosine similarity.

The corpus is embedded once, `batch_size` passages per request (`max_concurrency` requests at a
time), and the vectors are stored as one float32 `.npy` file in `<cache>/retrieval/embeddings/`,
named by a hash of the corpus (bytes and how it was read), the model, the endpoint and any extra
request parameters. A second retriever over the same corpus reads that file and only ever sends
queries. The API key travels in the Authorization header and nowhere else: it is not part of the
cache key, not written to disk, and scrubbed from every message.

Failures are `RetrievalError`s of one line. Rate limits (429), server errors (5xx), dropped
connections and timeouts are retried with exponential backoff and full jitter; other statuses
fail at once with the server's own words.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

from dspx_cli.lm.openai_compat import PROVIDERS, _one_line, _retry_after, _server_message, split_provider
from dspx_cli.lm.retry import DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY, DEFAULT_MAX_RETRY_AFTER
from dspx_cli.retrieval.base import Passage, RetrievalError, check_k, retrieval_cache_dir, write_atomically
from dspx_cli.retrieval.corpus import Corpus

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EmbeddingsError", "EmbeddingsRetriever"]

logger = logging.getLogger(__name__)

EMBEDDINGS_VERSION = 1  # bump when what goes into a cached matrix changes
_CONNECT_TIMEOUT = 10.0
_QUERY_MEMORY = 1024  # query vectors kept per retriever: optimizers ask the same questions again


class EmbeddingsError(RetrievalError):
    """One failed request to the embeddings endpoint, with what the retry loop needs to decide."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be 1 or more, not {max_concurrency}")
        self.corpus = corpus
        self.model = model
        provider_name, self.model_name = split_provider(model)
        provider = PROVIDERS.get(provider_name) if provider_name else None
        base = api_base or (provider.api_base if provider else None)
        if not base:
            raise RetrievalError(
                f"embeddings model {model!r} names no server: give api_base, "
                f"or use a provider prefix ({', '.join(p + '/' for p in PROVIDERS)})"
            )
        if api_key is None and provider is not None and provider.key_env:
            api_key = os.environ.get(provider.key_env) or None
            if api_key is None and api_base is None:
                raise RetrievalError(f"embeddings model {model!r} needs an API key: export {provider.key_env}")
        self.api_base = base.rstrip("/")
        self._api_key = api_key  # only ever sent in the Authorization header
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.num_retries = num_retries
        self.base_delay = base_delay
        self.extra = dict(extra or {})
        self.use_cache = use_cache
        self.cache_file = retrieval_cache_dir(cache_dir, "embeddings") / f"{self.cache_key()}.npy"
        self.embeddings_source: Literal["computed", "cache"] | None = None
        self._matrix: np.ndarray | None = None  # corpus vectors, each of length 1
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._client: httpx.AsyncClient | None = None
        self._loading = asyncio.Lock()

    def __repr__(self) -> str:
        return f"EmbeddingsRetriever(corpus={self.corpus.name!r}, model={self.model!r}, url={self.url!r})"

    @property
    def url(self) -> str:
        return f"{self.api_base}/embeddings"

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
        gate = asyncio.Semaphore(self.max_concurrency)

        async def embed(batch: list[str]) -> np.ndarray:
            async with gate:
                return await self._embed(batch)

        try:
            # A TaskGroup cancels the other batches as soon as one fails for good.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(embed(batch)) for batch in batches]
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

    # -- HTTP ----------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        # Created on first use so that it belongs to the event loop that runs the searches.
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, _CONNECT_TIMEOUT))
            self._client = httpx.AsyncClient(headers=headers, timeout=timeout)
        return self._client

    async def _embed(self, texts: list[str]) -> np.ndarray:
        """One batch, retried while its failures are transient."""
        attempt = 0
        while True:
            try:
                return await self._post(texts)
            except EmbeddingsError as exc:
                if not exc.retryable or attempt >= self.num_retries:
                    if exc.retryable and attempt:
                        raise EmbeddingsError(f"{exc} (gave up after {attempt + 1} attempts)", status=exc.status) from None
                    raise
                if exc.retry_after is not None and exc.retry_after > DEFAULT_MAX_RETRY_AFTER:
                    raise EmbeddingsError(f"{exc} (not waiting that long)", status=exc.status) from None
                backoff = random.uniform(0, min(DEFAULT_MAX_DELAY, self.base_delay * 2**attempt))
                delay = exc.retry_after + random.uniform(0, self.base_delay) if exc.retry_after is not None else backoff
                logger.info("retrying %s in %.2fs: %s", self.url, delay, exc)
                await asyncio.sleep(delay)
                attempt += 1

    async def _post(self, texts: list[str]) -> np.ndarray:
        body = {**self.extra, "model": self.model_name, "input": texts}
        try:
            reply = await self._http().post(
                self.url, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            stage = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
            raise self._error(f"timed out {stage} {self.url}", retryable=True) from None
        except httpx.ConnectError as exc:
            raise self._error(
                f"cannot connect to {self.api_base}: is the embeddings server running? ({_one_line(str(exc))})",
                retryable=True,
            ) from None
        except httpx.HTTPError as exc:
            raise self._error(
                f"the connection to {self.url} failed: {type(exc).__name__}: {_one_line(str(exc))}", retryable=True
            ) from None
        if reply.status_code >= 400:
            raise self._status_error(reply)
        return self._parse(reply, len(texts))

    def _status_error(self, reply: httpx.Response) -> EmbeddingsError:
        status = reply.status_code
        server = _server_message(reply)
        said = f": {server}" if server else ""
        if status in (401, 403):
            advice = "the API key was rejected or lacks access" if self._api_key else "no API key was sent"
            return self._error(f"HTTP {status} from {self.url}: {advice}{said}", status=status)
        if status == 404:
            return self._error(
                f"HTTP 404 from {self.url}: the model {self.model_name!r} or the api_base is wrong"
                f" (does the server offer /embeddings?){said}",
                status=status,
            )
        transient = status in (408, 409, 429) or status >= 500
        retry_after = _retry_after(reply.headers.get("retry-after")) if transient else None
        wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        return self._error(
            f"HTTP {status} from {self.url} (model {self.model_name!r}){said or ': the request was rejected'}{wait}",
            status=status,
            retryable=transient,
            retry_after=retry_after,
        )

    def _parse(self, reply: httpx.Response, count: int) -> np.ndarray:
        import numpy as np

        try:
            data = orjson.loads(reply.content)
        except ValueError:
            raise self._error(f"{self.url} replied with a body that is not JSON", retryable=True) from None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != count:
            got = f"{len(items)} embeddings" if isinstance(items, list) else "no 'data' list"
            raise self._error(f"{self.url} replied with {got} for {count} inputs")
        try:
            ordered = sorted(items, key=lambda item: item["index"])
            if [item["index"] for item in ordered] != list(range(count)):
                raise ValueError("indexes are not 0..n-1")
            matrix = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._error(
                f"{self.url} replied with embeddings that are not lists of numbers with indexes 0..{count - 1} "
                f"({_one_line(str(exc))[:200]})"
            ) from None
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise self._error(f"{self.url} replied with embeddings of different or zero lengths")
        return matrix

    def _error(self, message: str, **details: Any) -> EmbeddingsError:
        # Whatever a server echoed back, the key never reaches a message.
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return EmbeddingsError(message, **details)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so a dot product is the cosine; a zero row stays zero."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)
