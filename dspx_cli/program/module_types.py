"""The module types a program may use: one `ModuleType` record each, registered in `MODULE_TYPES`.

Everything that differs by type is read from here: the schema's `type:` values and aliases, the
`settings` model of the keys only this type takes (react's `tools`, best_of_n's `N`, ...: checked
where they are written, a key of another type is an error at its line), what its signature is,
the outputs it puts first, what `modules.<name>` defines besides the common settings, how the
live module is built, which predictors it names, its `validate` summary line, its one-line
description and its docs-table cells. `program/schema.py` holds only the keys common to all types.

Importing this file must stay cheap (`dspx validate` loads it): the live module classes are
imported inside `build`, which only runs when a program runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from dspx_cli.errors import ProgramError
from dspx_cli.program.spec_base import NoSettings, RetrievalKeys, Strict

if TYPE_CHECKING:
    from dspx_cli.modules.base import Module
    from dspx_cli.program.build import Builder
    from dspx_cli.program.model import ModuleDef, ToolDef
    from dspx_cli.program.schema import ModuleSpec
    from dspx_cli.program.source import Positions

__all__ = [
    "MODULE_ALIASES",
    "MODULE_TYPES",
    "DefineArgs",
    "ModuleType",
    "NoSettings",
    "WrapperSettings",
    "predictor_names",
    "register",
    "settings_keys",
    "typed",
]

Leading = tuple[tuple[str, Any], ...]
S = TypeVar("S", bound=BaseModel)


def typed(settings: BaseModel, cls: type[S]) -> S:
    """A type's settings as its own model, so the code reading them is type-checked."""
    assert isinstance(settings, cls), f"expected {cls.__name__}, got {type(settings).__name__}"
    return settings


def settings_keys(model: type[BaseModel]) -> list[str]:
    """The keys a settings model takes, as they are written in a program file."""
    return [field.alias or name for name, field in model.model_fields.items()]


@dataclass(frozen=True)
class DefineArgs:
    """What a type's `define` hook may read while the program is loaded (no code runs, no LM)."""

    name: str
    spec: ModuleSpec  # the common keys
    settings: BaseModel  # the type's own keys, an instance of its record's `settings` model
    tools: Mapping[str, ToolDef]
    base_dir: Path
    positions: Positions

    def error(self, message: str, *key: str | int) -> ProgramError:
        return ProgramError(message, self.positions.locate(("modules", self.name, *key)))


def _nothing(args: DefineArgs) -> dict[str, Any]:
    return {}


def _no_leading(settings: BaseModel) -> Leading:
    return ()


def _no_demo_fields(settings: BaseModel) -> frozenset[str]:
    return frozenset()


def summary_line(definition: ModuleDef, *details: str) -> str:
    """`react · 2 demos · tools search · lm openai/gpt-4o-mini`: the `validate` line of a step."""
    if definition.wraps is None:
        details = (f"{len(definition.demos)} demos", *details)
    return " · ".join((definition.type, *details, f"lm {definition.lm.model}"))


@dataclass(frozen=True)
class ModuleType:
    name: str
    doc: str  # one line: what the module does
    build: Callable[[ModuleDef, Builder], Module]
    # The keys only this type takes: a pydantic model (extra keys forbidden, every field optional
    # or defaulted); `typed(definition.settings, Model)` reads them back with their types.
    settings: type[BaseModel] = NoSettings
    # Own predictors as `named_predictors()` names them; a wrapper's come from the module it wraps.
    predictors: tuple[str, ...] = ("",)
    aliases: tuple[str, ...] = ()  # spellings from DSPy's class names; `-` and case are ignored too
    # declared: `signature:` required; fixed: always `fixed_signature`; wrapped: the wrapped module's.
    signature: Literal["declared", "fixed", "wrapped"] = "declared"
    fixed_signature: str | None = None
    calls_lm: bool = True  # a wrapper needs a module that calls one
    leading_outputs: Callable[[BaseModel], Leading] = _no_leading  # called with the settings
    demo_fields: Callable[[BaseModel], frozenset[str]] = _no_demo_fields  # beyond signature + leading
    # Checks that need more than the settings model (tools that exist, files that exist) and the
    # ModuleDef fields they fill: `tools`, `retriever` or, for anything else, `options`. A
    # wrapper's ModuleDef is made by module_defs, after the module it wraps.
    define: Callable[[DefineArgs], dict[str, Any]] = _nothing
    summary: Callable[[ModuleDef], str] = summary_line  # the step's line in `dspx validate`
    key_docs: str = ""  # the docs table's "keys" column
    outputs_doc: str = "—"  # the docs table's "outputs (before the signature's)" column

    @property
    def wraps(self) -> bool:
        return self.signature == "wrapped"

    @property
    def keys(self) -> list[str]:
        """The keys only this type takes (besides the common ones of ModuleSpec)."""
        return settings_keys(self.settings)


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
    tools: list[str] | None = None  # names from the program's `tools:` section
    max_iters: int | None = Field(default=None, ge=0)  # None: the module's default (20)


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
    M: int = Field(default=3, ge=1)  # attempts sampled, then compared


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


class WrapperSettings(Strict):
    """The keys of a `signature="wrapped"` type (module_defs reads `module`, `N` and `reward`):
    another module of the program, run up to N times and judged by `reward`."""

    module: str | None = None
    N: int | None = Field(default=None, ge=1)
    reward: str | dict[str, Any] | None = None  # a metric spec, scored without labels
    threshold: float | None = None
    fail_count: int | None = Field(default=None, ge=0)


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


MODULE_TYPES: dict[str, ModuleType] = {}
# Every spelling `type:` accepts, normalised (lower case, `_` for `-`), to its type's name.
MODULE_ALIASES: dict[str, str] = {}


def register(*records: ModuleType) -> None:
    """Add module types. The schema reads the registry when it is imported: register first."""
    for record in records:
        if record.wraps and not issubclass(record.settings, WrapperSettings):
            raise TypeError(f"module type {record.name!r} wraps a module: its settings must extend WrapperSettings")
        MODULE_TYPES[record.name] = record
        MODULE_ALIASES.update(dict.fromkeys((record.name, *record.aliases), record.name))


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


def predictor_names(definition: ModuleDef, modules: Mapping[str, ModuleDef]) -> list[str]:
    """The names `named_predictors()` of the built module gives, known without building it."""
    record = MODULE_TYPES[definition.type]
    if record.wraps:
        assert definition.wraps is not None
        inner = predictor_names(modules[definition.wraps], modules)
        return [f"module.{name}" if name else "module" for name in inner]
    return list(record.predictors)
