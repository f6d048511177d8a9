"""The module types a program may use: one `ModuleType` record each, registered in `MODULE_TYPES`.

Everything that differs by type is read from here: the schema's `type:` values and aliases, which
keys a type takes (a key of another type is an error at its line), what its signature is, the
outputs it puts first, what `modules.<name>` defines besides the common settings, how the live
module is built, which predictors it names, its one-line description, and its docs-table cells.

Importing this file must stay cheap (`dspx validate` loads it): the live module classes are
imported inside `build`, which only runs when a program runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dspx_cli.errors import ProgramError

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
    "predictor_names",
    "register",
]

Leading = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class DefineArgs:
    """What a type's `define` hook may read while the program is loaded (no code runs, no LM)."""

    name: str
    spec: ModuleSpec
    tools: Mapping[str, ToolDef]
    base_dir: Path
    positions: Positions

    def error(self, message: str, *key: str | int) -> ProgramError:
        return ProgramError(message, self.positions.locate(("modules", self.name, *key)))


def _nothing(args: DefineArgs) -> dict[str, Any]:
    return {}


def _no_leading(spec: ModuleSpec) -> Leading:
    return ()


def _no_demo_fields(spec: ModuleSpec) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class ModuleType:
    name: str
    doc: str  # one line: what the module does
    build: Callable[[ModuleDef, Builder], Module]
    # Own predictors as `named_predictors()` names them; a wrapper's come from the module it wraps.
    predictors: tuple[str, ...] = ("",)
    aliases: tuple[str, ...] = ()  # spellings from DSPy's class names; `-` and case are ignored too
    keys: tuple[str, ...] = ()  # keys of ModuleSpec that only this type (and those naming them too) takes
    # declared: `signature:` required; fixed: always `fixed_signature`; wrapped: the wrapped module's.
    signature: Literal["declared", "fixed", "wrapped"] = "declared"
    fixed_signature: str | None = None
    calls_lm: bool = True  # a wrapper needs a module that calls one
    leading_outputs: Callable[[ModuleSpec], Leading] = _no_leading
    demo_fields: Callable[[ModuleSpec], frozenset[str]] = _no_demo_fields  # beyond signature + leading
    # Type-specific fields of the ModuleDef, checked where they are written: its own fields
    # (tools, M, retriever) or, for a new type, `options`. A wrapper's `N`, `reward`, ... are set
    # by module_defs, which builds wrappers after the module they wrap.
    define: Callable[[DefineArgs], dict[str, Any]] = _nothing
    key_docs: str = ""  # the docs table's "keys" column
    outputs_doc: str = "—"  # the docs table's "outputs (before the signature's)" column

    @property
    def wraps(self) -> bool:
        return self.signature == "wrapped"


# --- predict, chain_of_thought -------------------------------------------------------------------


def _build_predict(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import Predict

    return Predict(definition.signature, builder.lm(definition), **builder.predict_options(definition))


def _build_chain_of_thought(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import ChainOfThought

    return ChainOfThought(definition.signature, builder.lm(definition), **builder.predict_options(definition))


# --- react -----------------------------------------------------------------------------------------

_REACT_STEP_FIELDS = frozenset({"trajectory", "next_thought", "next_tool_name", "next_tool_args"})


def _define_react(args: DefineArgs) -> dict[str, Any]:
    spec = args.spec
    if not spec.tools:
        raise args.error(
            f"module {args.name!r}: a react module needs `tools:`, a list of names from the program's `tools:` section"
        )
    for index, tool in enumerate(spec.tools):
        if tool not in args.tools:
            raise args.error(
                f"module {args.name!r} uses unknown tool {tool!r}; defined tools: {', '.join(args.tools) or 'none'}",
                "tools",
                index,
            )
    return {"tools": tuple(args.tools[tool] for tool in spec.tools), "max_iters": spec.max_iters}


def _build_react(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import ReAct

    options = builder.predict_options(definition)
    if definition.max_iters is not None:
        options["max_iters"] = definition.max_iters
    tools = [builder.tool(tool) for tool in definition.tools]
    return ReAct(definition.signature, tools, builder.lm(definition), **options)


# --- multi_chain_comparison ------------------------------------------------------------------------

# DSPy's MultiChainComparison samples and compares at this temperature unless told otherwise.
MCC_TEMPERATURE = 0.7


def _build_mcc(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import MultiChainComparison

    options = builder.predict_options(definition)
    if options["temperature"] is None:
        options["temperature"] = MCC_TEMPERATURE
    options.pop("n")
    return MultiChainComparison(definition.signature, builder.lm(definition), M=definition.M or 3, **options)


# --- best_of_n, refine -----------------------------------------------------------------------------

_WRAPPER_KEYS = ("module", "N", "reward", "threshold", "fail_count")


def _build_best_of_n(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import BestOfN

    assert definition.wraps is not None and definition.N is not None
    return BestOfN(
        builder.module(definition.wraps),
        definition.N,
        builder.reward(definition),
        definition.threshold,
        definition.fail_count,
    )


def _build_refine(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import Refine

    assert definition.wraps is not None and definition.N is not None
    # What the feedback LM reads as "the program" and "the reward": the user's own files.
    return Refine(
        builder.module(definition.wraps),
        definition.N,
        builder.reward(definition),
        definition.threshold,
        definition.fail_count,
        lm=builder.lm(definition),
        program_code=builder.program_code(),
        reward_code=builder.reward_code(definition),
    )


# --- retrieve --------------------------------------------------------------------------------------

RETRIEVE_SIGNATURE = "query: str -> passages: list[str]"


def _define_retrieve(args: DefineArgs) -> dict[str, Any]:
    from dspx_cli.program.tools import build_retriever

    return {"retriever": build_retriever(args.spec, args.base_dir, ("modules", args.name), args.positions)}


def _build_retrieve(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules import Retrieve

    assert definition.retriever is not None
    return Retrieve(builder.retriever(definition.retriever), k=definition.retriever.k)


MODULE_TYPES: dict[str, ModuleType] = {}
# Every spelling `type:` accepts, normalised (lower case, `_` for `-`), to its type's name.
MODULE_ALIASES: dict[str, str] = {}


def register(*records: ModuleType) -> None:
    """Add module types. The schema reads the registry when it is imported: register first."""
    for record in records:
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
        leading_outputs=lambda spec: (("reasoning", str),),
        outputs_doc="`reasoning`",
    ),
    ModuleType(
        "react",
        "think, call a tool, observe, until `finish` or `max_iters`; then extract the outputs",
        _build_react,
        predictors=("react", "extract.predict"),
        keys=("tools", "max_iters"),
        leading_outputs=lambda spec: (("trajectory", dict[str, Any]), ("reasoning", str)),
        demo_fields=lambda spec: _REACT_STEP_FIELDS,
        define=_define_react,
        key_docs="`tools` (names from `tools:`, required), `max_iters` (20)",
        outputs_doc="`trajectory`, `reasoning`",
    ),
    ModuleType(
        "multi_chain_comparison",
        "samples M ChainOfThought attempts, then compares them and answers",
        _build_mcc,
        predictors=("predict", "sample.predict"),
        aliases=("multichaincomparison",),
        keys=("M",),
        leading_outputs=lambda spec: (("rationale", str),),
        demo_fields=lambda spec: frozenset(f"reasoning_attempt_{i}" for i in range(1, (spec.M or 3) + 1)),
        define=lambda args: {"M": args.spec.M},
        key_docs="`M` (3)",
        outputs_doc="`rationale`",
    ),
    ModuleType(
        "best_of_n",
        "runs `module` up to N times; returns the first prediction reaching `threshold`, else the best",
        _build_best_of_n,
        predictors=(),
        aliases=("bestofn",),
        keys=_WRAPPER_KEYS,
        signature="wrapped",
        key_docs="`module`, `N`, `reward`, `threshold`, `fail_count`",
        outputs_doc="the wrapped module's",
    ),
    ModuleType(
        "refine",
        "like best_of_n, but after a miss an LM writes advice for the next attempt",
        _build_refine,
        predictors=(),
        keys=_WRAPPER_KEYS,
        signature="wrapped",
        key_docs="same as `best_of_n`",
        outputs_doc="the wrapped module's",
    ),
    ModuleType(
        "retrieve",
        "`query -> passages`: BM25 or embeddings search over a corpus",
        _build_retrieve,
        predictors=(),
        keys=("corpus", "k", "text_field", "embeddings"),
        signature="fixed",
        fixed_signature=RETRIEVE_SIGNATURE,
        calls_lm=False,
        define=_define_retrieve,
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
