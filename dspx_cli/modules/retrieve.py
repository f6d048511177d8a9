"""Retrieve: DSPy's `dspy.Retrieve` over a dspx retriever: a query in, the top `k` passages out."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Self

from dspx_cli.core import Prediction, Signature
from dspx_cli.lm.base import Message, Usage
from dspx_cli.modules.tool import Tool
from dspx_cli.retrieval import Passage, Retriever


class Retrieve:
    """`await Retrieve(BM25Retriever(corpus), k=3).acall(query="...")` -> `Prediction(passages=[...])`.

    Has no predictor (nothing for an optimizer to tune) and calls no LM; as in DSPy, it leaves no
    step in the trace, so bootstrapped demos come from the predictors that read its passages.
    """

    def __init__(self, retriever: Retriever, k: int = 3) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, not {k!r}")
        self.retriever = retriever
        self.k = k
        self.signature = Signature.parse("query: str -> passages: list[str]")

    def named_predictors(self) -> list[tuple[str, Any]]:
        return []

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        return []  # it searches; no LM call

    def copy(self) -> Self:
        return copy.copy(self)  # nothing to tune: the retriever (and its index) stays shared

    async def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The passages with their scores and ids, for callers that want more than the texts."""
        return await self.retriever.search(query, k or self.k)

    async def acall(self, query: str, k: int | None = None) -> Prediction:
        passages = await self.search(query, k)
        prediction = Prediction(passages=[passage.text for passage in passages])
        prediction.usage = Usage()  # a search spends no LM tokens
        return prediction

    def as_tool(self, name: str = "search", desc: str | None = None, timeout: float | None = None) -> Tool:
        """This search as a ReAct tool: a query in, the top k passages out."""

        async def search(query: str) -> list[str]:
            """Search the corpus and return the passages most relevant to the query."""
            return list((await self.acall(query=query)).passages)

        return Tool(search, name=name, desc=desc, timeout=timeout)

    async def aclose(self) -> None:
        await self.retriever.aclose()
