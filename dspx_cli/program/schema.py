"""The program-file schema: what keys exist, their types and defaults.

Only structure lives here. Meaning (do references resolve, do type strings parse) is checked by
the loader, which knows where each key was written.
"""

# No `from __future__ import annotations`: pydantic would then evaluate every field's annotation
# from its string when the class is made; written plainly, Python evaluates them (faster, and the
# schema's names are all defined at run time).

from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from dspx_cli.program.module_types import MODULE_ALIASES, MODULE_TYPES
from dspx_cli.program.spec_base import (
    RetrievalKeys,
    Strict,
    api_key_validator,
    lm_shorthand,
)

# The registered type names (program/module_types.py), so an unknown type lists them all.
if TYPE_CHECKING:
    ModuleTypeName = str
else:
    ModuleTypeName = Literal[tuple(MODULE_TYPES)]
TOOL_TYPES = ("calculator", "retrieve", "python")


def _no_demos() -> list[dict[str, Any]]:
    # A Python function, not `list`: pydantic reads a default factory's signature, and the builtin's
    # comes from its text signature through the tokenize module (~3 ms of regex compiling per process).
    return []


class Prices(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class LMSpec(Strict):
    model: str
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    n: int = Field(default=1, ge=1)
    timeout: float = Field(default=120.0, gt=0)
    extra: dict[str, Any] = Field(default_factory=dict)
    num_retries: int = Field(default=3, ge=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    prices: Prices | None = None
    cache: bool = True

    _api_key = field_validator("api_key", mode="wrap")(api_key_validator)


class FieldSpec(Strict):
    type: str = "str"
    desc: str = ""


class SignatureSpec(Strict):
    instructions: str | None = None
    inputs: dict[str, str | FieldSpec] = Field(default_factory=dict)
    outputs: dict[str, str | FieldSpec]


class ToolSpec(RetrievalKeys):
    """A tool for `react` modules: a built-in (`calculator`, `retrieve`) or `python: file.py:fn`."""

    type: Literal["calculator", "retrieve", "python"] | None = None  # default: python if given, else the name
    python: str | None = None
    desc: str | None = None
    timeout: float | None = Field(default=None, gt=0)


class ModuleSpec(Strict):
    """The keys every module type takes. The keys of one type (react's `tools`, best_of_n's `N`,
    retrieve's `corpus`, ...) are kept as extras here and checked by `module_defs` against the
    `settings` model of the type's record (program/module_types.py), where they are located."""

    # Extras are a type's own keys: each is checked against its type's settings model.
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    type: ModuleTypeName = "predict"
    signature: str | SignatureSpec | None = None  # required except for best_of_n, refine, retrieve
    instructions: str | None = None
    demos: list[dict[str, Any]] = Field(default_factory=_no_demos)
    lm: LMSpec | None = None
    adapter: Literal["chat", "json"] = "chat"
    # Unset sampling settings fall back to the module's LM.
    n: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)

    # The type's own keys as its settings model checked them (set by module_defs).
    _settings: BaseModel | None = PrivateAttr(default=None)

    @property
    def own_keys(self) -> dict[str, Any]:
        """The keys of this module's type, as written (checked by the type's settings model)."""
        return dict(self.model_extra or {})

    def attach_settings(self, settings: BaseModel) -> None:
        self._settings = settings

    @model_serializer(mode="wrap")
    def _dump_settings(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        # The resolved program (run folders) shows a type's own keys checked, with their defaults.
        data: dict[str, Any] = handler(self)
        if self._settings is not None:
            for key in self.model_extra or {}:
                data.pop(key, None)
            mode = "json" if info.mode_is_json() else "python"
            data.update(self._settings.model_dump(mode=mode, by_alias=info.by_alias))
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            return MODULE_ALIASES.get(value.replace("-", "_").lower(), value)
        return value

    _lm_shorthand = field_validator("lm", mode="before")(lambda cls, v: lm_shorthand(v))


class FlowStep(Strict):
    id: str
    module: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    # Map: run the module once per item of a list (`$input.x` or `$step.field`); `$<as>` in `with`
    # is the item. A failed item fails the step once `max_errors` items failed (DSPy's Parallel
    # rule); below that it is null. Default 1: any failed item fails the step, as a plain step.
    foreach: str | None = None
    as_: str = Field(default="item", alias="as")
    max_errors: int = Field(default=1, ge=1)
    # Conditional: `$step.ok` or `not $step.ok`; when false the step is skipped, its outputs null.
    when: str | None = None


class SplitSpec(Strict):
    """Fractions of one shuffled file; the rest of 1.0, if any, is unused."""

    train: float = Field(default=0.0, ge=0, le=1)
    dev: float = Field(default=0.0, ge=0, le=1)
    test: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0


class DataSpec(Strict):
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    path: str | None = None  # one file cut into train/dev/test by `split`
    split: SplitSpec | None = None
    inputs: list[str] | None = None  # the other keys are labels; default: the program's inputs


class ProgramSpec(Strict):
    dspx: Literal[1] = 1
    name: str | None = None
    description: str | None = None
    lm: LMSpec | None = None
    # The LM that writes instructions for mipro_v2/copro (DSPy's prompt_model); default: `lm:`.
    prompt_lm: LMSpec | None = None
    signatures: dict[str, str | SignatureSpec] = Field(default_factory=dict)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    modules: dict[str, ModuleSpec] = Field(min_length=1)
    flow: list[FlowStep] | None = None
    output: dict[str, str] | None = None
    # Filled by later layers (datasets, metrics, optimizers); kept as data until then.
    data: DataSpec | None = None
    # A built-in name ("exact_match"), {name: ..., options}, {python: "file.py:function"} or
    # {judge: {...}}; checked by the evaluate layer.
    metric: str | dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    finetune: dict[str, Any] | None = None  # what `dspx finetune` trains with; finetune/section.py

    _lm_shorthand = field_validator("lm", "prompt_lm", mode="before")(lambda cls, v: lm_shorthand(v))
