"""The run context: what a run needs that is not in the program file.

It is created once per command from the command line and passed explicitly; nothing in dspx
reads global settings. It owns the LM instances, so modules that share an LM share its
connections, cache, rate limits and usage meter.

Each LM is a stack of wrappers around its backend, outermost first:
    Observed (usage, history) -> Cached -> Retrying -> Limited (concurrency, rpm, tpm) -> backend
so a cache hit is counted and logged but never waits for a rate limit or a retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dspx_cli.core.redact import UnsetSecret
from dspx_cli.lm.base import LM
from dspx_cli.lm.cache import CachedLM, CacheMode, ResponseCache, default_cache_dir
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.history import History
from dspx_cli.lm.observed import ObservedLM
from dspx_cli.lm.structured_outputs import SchemaRefusals
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.program.model import RetrieverDef

if TYPE_CHECKING:
    from dspx_cli.retrieval import Retriever
    from dspx_cli.sandbox import Sandbox, SandboxLimits


class RunContext:
    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        cache_dir: Path | None = None,
        cache_mode: CacheMode = CacheMode.ON,
        history: bool = True,
    ) -> None:
        self.base_dir = base_dir
        self.cache_dir = cache_dir or default_cache_dir()
        self.cache_mode = cache_mode
        self.meter = UsageMeter()
        self._cache: ResponseCache | None = None
        self._history = History(self.cache_dir) if history else None
        self._lms: dict[tuple[object, ...], LM] = {}
        self._schema_refusals = SchemaRefusals()
        self._retrievers: dict[tuple[object, ...], Retriever] = {}
        self._sandbox: Sandbox | None = None

    @property
    def cache(self) -> ResponseCache:
        if self._cache is None:
            self._cache = ResponseCache(self.cache_dir)
        return self._cache

    def lm(self, config: LMConfig) -> LM:
        # Sampling settings travel with each request; one stack per endpoint, model and policy.
        key = (
            config.model,
            config.api_base,
            config.api_key,
            config.timeout,
            config.num_retries,
            config.max_concurrency,
            config.rpm,
            config.tpm,
            config.price_input,
            config.price_output,
            config.cache,
        )
        if key not in self._lms:
            self._lms[key] = self._build(config)
        return self._lms[key]

    def retriever(self, definition: RetrieverDef) -> Retriever:
        """One retriever per corpus and search method: a module and a tool over the same corpus
        share its index. The corpus is read now (its errors come before any LM call); the index is
        built or loaded from the cache at the first search."""
        if definition.key not in self._retrievers:
            from dspx_cli.retrieval import BM25Retriever, load_corpus

            corpus = load_corpus(definition.corpus, text_field=definition.text_field)
            use_cache = self.cache_mode is not CacheMode.OFF
            e = definition.embeddings
            if e is None:
                retriever: Retriever = BM25Retriever(corpus, cache_dir=self.cache_dir, use_cache=use_cache)
            else:
                from dspx_cli.retrieval import EmbeddingsRetriever

                if isinstance(e.api_key, UnsetSecret):  # its ${VAR:?...} was unset when the program loaded
                    raise e.api_key.error

                # Its calls go through the LM stack: counted in this run's usage, logged in its history.
                retriever = EmbeddingsRetriever(
                    corpus,
                    e.model,
                    api_base=e.api_base,
                    api_key=e.api_key,
                    batch_size=e.batch_size,
                    timeout=e.timeout,
                    cache_dir=self.cache_dir,
                    use_cache=use_cache,
                    meter=self.meter,
                    history=self._history,
                )
            self._retrievers[definition.key] = retriever
        return self._retrievers[definition.key]

    def sandbox(self, limits: SandboxLimits | None = None) -> Sandbox:
        """The run's code sandbox, made at first use (programs without code modules never import
        it). One per run: its limits are those of the first caller; its processes start lazily."""
        if self._sandbox is None:
            from dspx_cli.sandbox import Sandbox, SandboxLimits

            self._sandbox = Sandbox(limits or SandboxLimits())
        return self._sandbox

    def _build(self, config: LMConfig) -> LM:
        from dspx_cli.lm.registry import create_lm
        from dspx_cli.lm.stack import guarded

        lm = guarded(create_lm(config, base_dir=self.base_dir, refusals=self._schema_refusals), config, self.meter)
        mode = self.cache_mode if config.cache else CacheMode.OFF
        if mode is not CacheMode.OFF:
            lm = CachedLM(lm, self.cache, mode)
        return ObservedLM(lm, config, self.meter, self._history)

    async def aclose(self) -> None:
        for lm in self._lms.values():
            await lm.aclose()
        self._lms.clear()
        for retriever in self._retrievers.values():
            await retriever.aclose()
        self._retrievers.clear()
        if self._sandbox is not None:
            await self._sandbox.aclose()
            self._sandbox = None
        if self._cache is not None:
            self._cache.close()
        if self._history is not None:
            self._history.close()
