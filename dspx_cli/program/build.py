"""Turn a ModuleDef into a live module: its LM from the run context, its tools, its retriever.

`context=None` builds modules that can render prompts but not call anything (`dspx inspect`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core.pyfile import PyFileError, split_target
from dspx_cli.errors import UsageError
from dspx_cli.lm.base import LM
from dspx_cli.modules.base import Module
from dspx_cli.program.context import RunContext
from dspx_cli.program.model import ModuleDef, Program, RetrieverDef, ToolDef
from dspx_cli.program.module_types import MODULE_TYPES

if TYPE_CHECKING:
    from dspx_cli.modules.best_of_n import RewardFn
    from dspx_cli.modules.tool import Tool
    from dspx_cli.sandbox import Sandbox


def build_module(
    definition: ModuleDef,
    program: Program,
    context: RunContext | None,
    rewards: Mapping[str, RewardFn] | None = None,
) -> Module:
    """The live module of `definition`, built by its type's record (program/module_types.py)."""
    return MODULE_TYPES[definition.type].build(definition, Builder(program, context, rewards))


@dataclass(frozen=True)
class Builder:
    """What a module type's `build` may ask for: LMs, settings, tools, retrievers, other modules."""

    program: Program
    context: RunContext | None
    rewards: Mapping[str, RewardFn] | None = None

    def lm(self, definition: ModuleDef) -> LM | None:
        return self.context.lm(definition.lm) if self.context else None

    def predict_options(self, definition: ModuleDef) -> dict[str, Any]:
        """Predict's keyword settings for the module's predictors: demos, adapter, sampling, meters."""
        context = self.context
        return {
            "demos": definition.demos,
            "adapter": JSONAdapter() if definition.adapter == "json" else ChatAdapter(),
            "n": definition.n,
            "temperature": definition.temperature,
            "max_tokens": definition.max_tokens,
            "extra": definition.lm.extra,
            "on_fallback": context.meter.record_fallback if context else None,
            "on_unusable_reply": context.meter.record_unusable_reply if context else None,
        }

    def module(self, name: str) -> Module:
        """Another module of the program, built afresh (a wrapper owns the module it runs)."""
        return build_module(self.program.modules[name], self.program, self.context, self.rewards)

    def reward(self, definition: ModuleDef) -> RewardFn:
        return (self.rewards or {}).get(definition.name) or _no_reward(definition.name)

    def tool(self, definition: ToolDef) -> Tool:
        tool: Tool
        if definition.kind == "sandbox":
            from dspx_cli.modules.sandbox_tool import SandboxPythonTool

            tool = SandboxPythonTool(self._sandbox_opener(), name=definition.name, desc=definition.desc)
        else:
            tool = _tool(definition, self.context)
        if self.context is not None and self.context.telemetry.enabled:  # its calls in spans (program/spans.py)
            from dspx_cli.program.spans import traced_tool

            tool = traced_tool(tool, self.context.telemetry)
        return tool

    def _sandbox_opener(self) -> Callable[[], Sandbox] | None:
        """The run's sandbox, asked for at an agent run's first call, so an agent that never writes
        code starts no interpreter."""
        context = self.context
        if context is None:
            return None
        from dspx_cli.program.code_module_types import sandbox_limits

        program = self.program
        return lambda: context.sandbox(sandbox_limits(program))

    def retriever(self, definition: RetrieverDef) -> Any:
        return _retriever(definition, self.context)

    def program_code(self) -> str:
        return self.program.path.read_text(encoding="utf-8")

    def reward_code(self, definition: ModuleDef) -> str:
        return _reward_code(definition.reward, self.program)


def _tool(definition: ToolDef, context: RunContext | None) -> Tool:
    name, desc, timeout = definition.name, definition.desc, definition.timeout
    if definition.kind == "calculator":
        from dspx_cli.modules.calculator import calculator
        from dspx_cli.modules.tool import Tool

        return Tool(calculator, name=name, desc=desc, timeout=timeout)
    if definition.kind == "retrieve":
        from dspx_cli.modules.retrieve import Retrieve

        assert definition.retriever is not None
        search = Retrieve(_retriever(definition.retriever, context), k=definition.retriever.k)
        return search.as_tool(name=name, desc=desc, timeout=timeout)
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
