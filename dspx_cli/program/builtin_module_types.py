"""The built-in module types: each one's settings model (the keys only it takes), its checks at
load time, how it is built, and its `validate` line, registered as one `ModuleType` record each.

A new module type is its class in `dspx_cli/modules/` plus a record here (or in a file of its
own that calls `register`). Nothing here imports a module class at import time: `dspx validate`
reads these records; the classes are imported inside each `build`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dspx_cli.core.spec_model import Field
from dspx_cli.program.module_types import (
    DefineArgs,
    ModuleType,
    WrapperSettings,
    register,
    summary_line,
    typed,
)
from dspx_cli.program.spec_base import RetrievalKeys, Strict

if TYPE_CHECKING:
    from dspx_cli.modules.base import Module
    from dspx_cli.program.build import Builder
    from dspx_cli.program.model import ModuleDef

__all__ = ["MCC_TEMPERATURE", "RETRIEVE_SIGNATURE", "MultiChainSettings", "ReActSettings", "RetrieveSettings"]


# --- predict, chain_of_thought -------------------------------------------------------------------


def _build_predict(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import Predict

    return Predict(definition.signature, builder.lm(definition), **builder.predict_options(definition))


def _build_chain_of_thought(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import ChainOfThought

    return ChainOfThought(definition.signature, builder.lm(definition), **builder.predict_options(definition))


# --- react -----------------------------------------------------------------------------------------

_REACT_STEP_FIELDS = frozenset({"trajectory", "next_thought", "next_tool_name", "next_tool_args"})


class ReActSettings(Strict):
    tools: list[str] | None = Field(default=None, description="Names from the program's `tools:` section (required).")
    # None: the module's default (20)
    max_iters: int | None = Field(default=None, ge=0, description="Think/act steps at most (20).")


def _define_react(args: DefineArgs) -> dict[str, Any]:
    settings = typed(args.settings, ReActSettings)
    if not settings.tools:
        raise args.error(
            f"module {args.name!r}: a react module needs `tools:`, a list of names from the program's `tools:` section"
        )
    for index, tool in enumerate(settings.tools):
        if tool not in args.tools:
            raise args.error(
                f"module {args.name!r} uses unknown tool {tool!r}; defined tools: {', '.join(args.tools) or 'none'}",
                "tools",
                index,
            )
    return {"tools": tuple(args.tools[tool] for tool in settings.tools)}


def _build_react(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import ReAct

    options = builder.predict_options(definition)
    max_iters = typed(definition.settings, ReActSettings).max_iters
    if max_iters is not None:
        options["max_iters"] = max_iters
    tools = [builder.tool(tool) for tool in definition.tools]
    return ReAct(definition.signature, tools, builder.lm(definition), **options)


def _summary_react(definition: ModuleDef) -> str:
    return summary_line(definition, "tools " + ", ".join(tool.name for tool in definition.tools))


# --- multi_chain_comparison ------------------------------------------------------------------------

# DSPy's MultiChainComparison samples and compares at this temperature unless told otherwise.
MCC_TEMPERATURE = 0.7


class MultiChainSettings(Strict):
    M: int = Field(default=3, ge=1, description="Attempts sampled, then compared.")


def _build_mcc(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import MultiChainComparison

    options = builder.predict_options(definition)
    if options["temperature"] is None:
        options["temperature"] = MCC_TEMPERATURE
    options.pop("n")
    return MultiChainComparison(
        definition.signature, builder.lm(definition), M=typed(definition.settings, MultiChainSettings).M, **options
    )


# --- best_of_n, refine -----------------------------------------------------------------------------


def _build_best_of_n(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import BestOfN

    settings = typed(definition.settings, WrapperSettings)
    assert definition.wraps is not None and settings.N is not None
    return BestOfN(
        builder.module(definition.wraps),
        settings.N,
        builder.reward(definition),
        settings.threshold,
        settings.fail_count,
    )


def _build_refine(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import Refine

    settings = typed(definition.settings, WrapperSettings)
    assert definition.wraps is not None and settings.N is not None
    # What the feedback LM reads as "the program" and "the reward": the user's own files.
    return Refine(
        builder.module(definition.wraps),
        settings.N,
        builder.reward(definition),
        settings.threshold,
        settings.fail_count,
        lm=builder.lm(definition),
        program_code=builder.program_code(),
        reward_code=builder.reward_code(definition),
    )


def _summary_wrapper(definition: ModuleDef) -> str:
    return summary_line(definition, f"{definition.wraps} × {typed(definition.settings, WrapperSettings).N}")


# --- retrieve --------------------------------------------------------------------------------------

RETRIEVE_SIGNATURE = "query: str -> passages: list[str]"


class RetrieveSettings(RetrievalKeys):
    """`corpus` (required), `k`, `text_field`, `embeddings`: the same keys as a retrieve tool's."""


def _define_retrieve(args: DefineArgs) -> dict[str, Any]:
    from dspx_cli.program.tools import build_retriever

    settings = typed(args.settings, RetrieveSettings)
    return {"retriever": build_retriever(settings, args.base_dir, ("modules", args.name), args.positions)}


def _build_retrieve(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import Retrieve

    assert definition.retriever is not None
    return Retrieve(builder.retriever(definition.retriever), k=definition.retriever.k)


def _summary_retrieve(definition: ModuleDef) -> str:
    retriever = definition.retriever
    assert retriever is not None
    how = f"embeddings {retriever.embeddings.model}" if retriever.embeddings else "bm25"
    return f"retrieve · {how} over {retriever.corpus.name} · k {retriever.k}"


register(
    ModuleType("predict", "one LM call", _build_predict),
    ModuleType(
        "chain_of_thought",
        "one LM call with a reasoning field first",
        _build_chain_of_thought,
        predictors=("predict",),
        aliases=("chainofthought", "cot"),
        leading_outputs=lambda settings: (("reasoning", str),),
        outputs_doc="`reasoning`",
    ),
    ModuleType(
        "react",
        "think, call a tool, observe, until `finish` or `max_iters`; then extract the outputs",
        _build_react,
        predictors=("react", "extract.predict"),
        settings=ReActSettings,
        leading_outputs=lambda settings: (("trajectory", dict[str, Any]), ("reasoning", str)),
        demo_fields=lambda settings: _REACT_STEP_FIELDS,
        define=_define_react,
        summary=_summary_react,
        key_docs="`tools` (names from `tools:`, required), `max_iters` (20)",
        outputs_doc="`trajectory`, `reasoning`",
    ),
    ModuleType(
        "multi_chain_comparison",
        "samples M ChainOfThought attempts, then compares them and answers",
        _build_mcc,
        predictors=("predict", "sample.predict"),
        aliases=("multichaincomparison",),
        settings=MultiChainSettings,
        leading_outputs=lambda settings: (("rationale", str),),
        demo_fields=lambda settings: frozenset(
            f"reasoning_attempt_{i}" for i in range(1, typed(settings, MultiChainSettings).M + 1)
        ),
        key_docs="`M` (3)",
        outputs_doc="`rationale`",
    ),
    ModuleType(
        "best_of_n",
        "runs `module` up to N times; returns the first prediction reaching `threshold`, else the best",
        _build_best_of_n,
        predictors=(),
        aliases=("bestofn",),
        settings=WrapperSettings,
        signature="wrapped",
        summary=_summary_wrapper,
        key_docs="`module`, `N`, `reward`, `threshold`, `fail_count`",
        outputs_doc="the wrapped module's",
    ),
    ModuleType(
        "refine",
        "like best_of_n, but after a miss an LM writes advice for the next attempt",
        _build_refine,
        predictors=(),
        settings=WrapperSettings,
        signature="wrapped",
        summary=_summary_wrapper,
        key_docs="same as `best_of_n`",
        outputs_doc="the wrapped module's",
    ),
    ModuleType(
        "retrieve",
        "`query -> passages`: BM25 or embeddings search over a corpus",
        _build_retrieve,
        predictors=(),
        settings=RetrieveSettings,
        signature="fixed",
        fixed_signature=RETRIEVE_SIGNATURE,
        calls_lm=False,
        define=_define_retrieve,
        summary=_summary_retrieve,
        key_docs="`corpus` (required), `k` (3), `text_field` (`text`), `embeddings`",
    ),
)

# The code module types (program_of_thought, code_act, which run code in the sandbox) and the
# `python` type live in files of their own and register themselves after the built-ins above.
from dspx_cli.program import code_module_types as _code_module_types  # noqa: E402, F401
from dspx_cli.program import python_module_type as _python_module_type  # noqa: E402, F401
