"""The module types a program may use: one `ModuleType` record each, registered in `MODULE_TYPES`.

Everything that differs by type is read from here: the schema's `type:` values and aliases, the
`settings` model of the keys only this type takes (react's `tools`, best_of_n's `N`, ...: checked
where they are written, a key of another type is an error at its line), what its signature is,
the outputs it puts first, what `modules.<name>` defines besides the common settings, how the
live module is built, which predictors it names, its `validate` summary line, its one-line
description and its docs-table cells. `program/schema.py` holds only the keys common to all types.
The built-in records are in `program/builtin_module_types.py`, imported at the end of this file.

Importing this file must stay cheap (`dspx validate` loads it): the live module classes are
imported inside `build`, which only runs when a program runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from dspx_cli.core.spec_model import Field, SpecModel
from dspx_cli.errors import ProgramError
from dspx_cli.program.spec_base import NoSettings, Strict

if TYPE_CHECKING:
    from dspx_cli.core import Signature
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
    "summary_line",
    "typed",
]

Leading = tuple[tuple[str, Any], ...]
S = TypeVar("S", bound=SpecModel)


def typed(settings: SpecModel, cls: type[S]) -> S:
    """A type's settings as its own model, so the code reading them is type-checked."""
    assert isinstance(settings, cls), f"expected {cls.__name__}, got {type(settings).__name__}"
    return settings


def settings_keys(model: type[SpecModel]) -> list[str]:
    """The keys a settings model takes, as they are written in a program file."""
    return [field.alias or name for name, field in model.model_fields.items()]


@dataclass(frozen=True)
class DefineArgs:
    """What a type's `define` hook may read while the program is loaded (no code runs, no LM)."""

    name: str
    spec: ModuleSpec  # the common keys
    signature: Signature  # the module's own, as built (declared types resolved, a named one looked up)
    settings: SpecModel  # the type's own keys, an instance of its record's `settings` model
    tools: Mapping[str, ToolDef]
    base_dir: Path
    positions: Positions

    def error(self, message: str, *key: str | int) -> ProgramError:
        return ProgramError(message, self.positions.locate(("modules", self.name, *key)))


def _nothing(args: DefineArgs) -> dict[str, Any]:
    return {}


def _no_leading(settings: SpecModel) -> Leading:
    return ()


def _no_demo_fields(settings: SpecModel) -> frozenset[str]:
    return frozenset()


def summary_line(definition: ModuleDef, *details: str) -> str:
    """`react · 2 demos · tools search · lm openai/gpt-4o-mini`: the `validate` line of a step."""
    if definition.wraps is None:
        details = (f"{len(definition.demos)} demos", *details)
    return " · ".join((definition.type, *details, f"lm {definition.lm.model}"))


@dataclass(frozen=True)
class ModuleType:
    """One module type's record in the registry: everything that differs by type (module docstring)."""

    name: str
    doc: str  # one line: what the module does
    build: Callable[[ModuleDef, Builder], Module]
    # The keys only this type takes: a SpecModel (core/spec_model.py; extra keys forbidden, every field optional
    # or defaulted); `typed(definition.settings, Model)` reads them back with their types.
    settings: type[SpecModel] = NoSettings
    # Own predictors as `named_predictors()` names them; a wrapper's come from the module it wraps.
    predictors: tuple[str, ...] = ("",)
    aliases: tuple[str, ...] = ()  # spellings from DSPy's class names; `-` and case are ignored too
    # declared: `signature:` required; fixed: always `fixed_signature`; wrapped: the wrapped module's.
    signature: Literal["declared", "fixed", "wrapped"] = "declared"
    fixed_signature: str | None = None
    # False: the module calls no LM, so the keys that only mean something to an LM call (lm, adapter,
    # n, temperature, max_tokens, demos, instructions) are errors on it, and no wrapper may wrap it.
    calls_lm: bool = True
    leading_outputs: Callable[[SpecModel], Leading] = _no_leading  # called with the settings
    demo_fields: Callable[[SpecModel], frozenset[str]] = _no_demo_fields  # beyond signature + leading
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


class WrapperSettings(Strict):
    """The keys of a `signature="wrapped"` type (module_defs reads `module`, `N` and `reward`):
    another module of the program, run up to N times and judged by `reward`."""

    module: str | None = Field(default=None, description="The module of the program to run (a key of `modules`).")
    N: int | None = Field(default=None, ge=1, description="Attempts at most.")
    # a metric spec, scored without labels
    reward: str | dict[str, Any] | None = Field(
        default=None, description="A metric spec (as under `metric:`) scored on the inputs only."
    )
    threshold: float | None = Field(default=None, description="Stop at the first prediction whose reward reaches it.")
    fail_count: int | None = Field(default=None, ge=0, description="Failed attempts allowed before giving up.")


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


def predictor_names(definition: ModuleDef, modules: Mapping[str, ModuleDef]) -> list[str]:
    """The names `named_predictors()` of the built module gives, known without building it."""
    record = MODULE_TYPES[definition.type]
    if record.wraps:
        assert definition.wraps is not None
        inner = predictor_names(modules[definition.wraps], modules)
        return [f"module.{name}" if name else "module" for name in inner]
    return list(record.predictors)


# The built-in types register themselves; imported last, as they build on everything above.
from dspx_cli.program import builtin_module_types as _builtin_module_types  # noqa: E402, F401
