"""Turn a ModuleDef into a live module: its LM from the run context, its tools, its retriever.

`context=None` builds modules that can render prompts but not call anything (`dspx inspect`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core.pyfile import PyFileError, split_target
from dspx_cli.errors import UsageError
from dspx_cli.modules import (
    BestOfN,
    ChainOfThought,
    Module,
    MultiChainComparison,
    Predict,
    ReAct,
    Refine,
    Retrieve,
    RewardFn,
    Tool,
    calculator,
)
from dspx_cli.program.context import RunContext
from dspx_cli.program.model import ModuleDef, Program, RetrieverDef, ToolDef

# DSPy's MultiChainComparison samples and compares at this temperature unless told otherwise.
MCC_TEMPERATURE = 0.7


def build_module(
    definition: ModuleDef,
    program: Program,
    context: RunContext | None,
    rewards: Mapping[str, RewardFn] | None = None,
) -> Module:
    lm = context.lm(definition.lm) if context else None
    if definition.type in ("best_of_n", "refine"):
        assert definition.wraps is not None and definition.N is not None
        inner = build_module(program.modules[definition.wraps], program, context, rewards)
        reward = (rewards or {}).get(definition.name) or _no_reward(definition.name)
        if definition.type == "best_of_n":
            return BestOfN(inner, definition.N, reward, definition.threshold, definition.fail_count)
        # What the feedback LM reads as "the program" and "the reward": the user's own files.
        return Refine(inner, definition.N, reward, definition.threshold, definition.fail_count, lm=lm,
                      program_code=program.path.read_text(encoding="utf-8"),
                      reward_code=_reward_code(definition.reward, program))
    if definition.type == "retrieve":
        assert definition.retriever is not None
        return Retrieve(_retriever(definition.retriever, context), k=definition.retriever.k)

    options: dict[str, Any] = {
        "demos": definition.demos,
        "adapter": JSONAdapter() if definition.adapter == "json" else ChatAdapter(),
        "n": definition.n,
        "temperature": definition.temperature,
        "max_tokens": definition.max_tokens,
        "extra": definition.lm.extra,
        "on_fallback": context.meter.record_fallback if context else None,
        "on_unusable_reply": context.meter.record_unusable_reply if context else None,
    }
    if definition.type == "react":
        tools = [_tool(tool, context) for tool in definition.tools]
        if definition.max_iters is not None:
            options["max_iters"] = definition.max_iters
        return ReAct(definition.signature, tools, lm, **options)
    if definition.type == "multi_chain_comparison":
        if options["temperature"] is None:
            options["temperature"] = MCC_TEMPERATURE
        options.pop("n")
        return MultiChainComparison(definition.signature, lm, M=definition.M or 3, **options)
    cls = ChainOfThought if definition.type == "chain_of_thought" else Predict
    return cls(definition.signature, lm, **options)


def _tool(definition: ToolDef, context: RunContext | None) -> Tool:
    named = {"name": definition.name, "desc": definition.desc, "timeout": definition.timeout}
    if definition.kind == "calculator":
        return Tool(calculator, **named)
    if definition.kind == "retrieve":
        assert definition.retriever is not None
        search = Retrieve(_retriever(definition.retriever, context), k=definition.retriever.k)
        return search.as_tool(**named)
    assert definition.tool is not None
    return definition.tool


def _retriever(definition: RetrieverDef, context: RunContext | None) -> Any:
    return context.retriever(definition) if context else _NoRetriever()


class _NoRetriever:
    """Stands in when modules are built only to render prompts."""

    async def search(self, query: str, k: int) -> list[Any]:
        raise RuntimeError("this program was built without a run context; it cannot search")

    async def aclose(self) -> None:
        return None


def _reward_code(spec: Any, program: Program) -> str:
    """A Python reward's file as written; any other reward, its spec as JSON."""
    if isinstance(spec, dict) and "python" in spec:
        try:
            path, _ = split_target(spec["python"], program.base_dir)
            return path.read_text(encoding="utf-8")
        except (PyFileError, OSError):
            pass
    return json.dumps(spec, ensure_ascii=False)


def _no_reward(name: str) -> RewardFn:
    def reward(inputs: dict[str, Any], prediction: Any) -> float:
        raise UsageError(f"module {name!r}: no reward function was built for it")

    return reward
