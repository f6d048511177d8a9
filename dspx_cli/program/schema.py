"""The program-file schema: what keys exist, their types and defaults.

Only structure lives here. Meaning (do references resolve, do type strings parse) is checked by
the loader, which knows where each key was written.
"""

# No `from __future__ import annotations`: annotations written plainly are evaluated once,
# when the class is made, instead of from their strings at the first check.

from typing import TYPE_CHECKING, Any, Literal

from dspx_cli.core.spec_model import Field, SpecModel, field_validator
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
TOOL_TYPES = ("calculator", "retrieve", "python", "sandbox")


def _no_demos() -> list[dict[str, Any]]:
    # A Python function, not `list`: pydantic reads a default factory's signature, and the builtin's
    # comes from its text signature through the tokenize module (~3 ms of regex compiling per process).
    return []


class Prices(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")


class LMSpec(Strict):
    """An LM: `lm: openai/gpt-4o-mini` is short for `lm: {model: openai/gpt-4o-mini}`."""

    model: str = Field(description="The model, e.g. openai/gpt-4o-mini or local/smollm2.")
    api_base: str | None = Field(default=None, description="OpenAI-compatible base URL, usually ending in /v1.")
    api_key: str | None = Field(
        default=None, repr=False, description="Sent as a bearer token; never printed or saved; empty means none."
    )
    api_version: str | None = Field(default=None, description="Azure OpenAI's api-version (azure/ models).")
    temperature: float | None = Field(default=None, description="Sampling temperature; default: the provider's.")
    max_tokens: int | None = Field(default=None, gt=0, description="Completion token limit; default: the provider's.")
    n: int = Field(default=1, ge=1, description="Completions per call.")
    timeout: float = Field(default=120.0, gt=0, description="Seconds per request.")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Request parameters passed through (top_p, stop, seed, ...)."
    )
    num_retries: int = Field(default=3, ge=0, description="Retries of retryable failures (408, 409, 429, 5xx, ...).")
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Requests in flight at once, shared by every module using this LM."
    )
    rpm: float | None = Field(default=None, gt=0, description="Requests per minute, paced evenly.")
    tpm: float | None = Field(default=None, gt=0, description="Tokens per minute, paced evenly.")
    prices: Prices | None = Field(default=None, description="USD per million tokens; enables cost reporting.")
    cache: bool = Field(default=True, description="false: never read or write the response cache for this LM.")

    _api_key = field_validator("api_key", mode="wrap")(api_key_validator)


class FieldSpec(Strict):
    type: str = Field(default="str", description="A type: str, int, float, bool, list[T], Literal['a', 'b'], ...")
    desc: str = Field(default="", description="The field's description in the prompt.")


class TypeFieldSpec(Strict):
    """One field of a declared object type (`types:`); `optional` fields default to null."""

    type: str = Field(default="str", description="A type: a built-in one or a declared object type.")
    desc: str = Field(default="", description="The field's description in the JSON schema.")
    optional: bool = Field(default=False, description="true: the field may be null or left out (default null).")


class SignatureSpec(Strict):
    """A signature as a mapping (or DSPy's string form, "question -> answer")."""

    instructions: str | None = Field(default=None, description="Default: Given the fields ..., produce the fields ...")
    inputs: dict[str, str | FieldSpec] = Field(
        default_factory=dict, description="Input fields, in order: name -> type string or {type, desc}."
    )
    outputs: dict[str, str | FieldSpec] = Field(
        description="Output fields, in order: name -> type string or {type, desc}."
    )


class ToolSpec(RetrievalKeys):
    """A tool for `react` modules: a built-in (`calculator`, `retrieve`, `sandbox`) or `python: file.py:fn`."""

    # default: python if given, else the name (a tool named `python` is the sandbox)
    type: Literal["calculator", "retrieve", "python", "sandbox"] | None = Field(
        default=None,
        description="calculator, retrieve, python (implied by `python:`) or sandbox (runs LM-written code).",
    )
    python: str | None = Field(default=None, description='"file.py:function", relative to the program file.')
    desc: str | None = Field(default=None, description="Replaces the tool's description.")
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds; a slower call becomes an error observation."
    )


class ModuleSpec(Strict, extra="allow"):
    """The keys every module type takes. The keys of one type (react's `tools`, best_of_n's `N`,
    retrieve's `corpus`, ...) are kept as extras here and checked by `module_defs` against the
    `settings` model of the type's record (program/module_types.py), where they are located."""

    # Extras (`extra="allow"`) are a type's own keys: each is checked against its type's settings model.

    type: ModuleTypeName = Field(default="predict", description="The module type; it decides the other keys.")
    # required except for best_of_n, refine, retrieve
    signature: str | SignatureSpec | None = Field(
        default=None, description="A name from `signatures:`, DSPy's string form, or a mapping."
    )
    instructions: str | None = Field(default=None, description="Overrides the signature's instructions.")
    demos: list[dict[str, Any]] = Field(
        default_factory=_no_demos, description="Few-shot examples; keys are fields of the module."
    )
    lm: LMSpec | None = Field(default=None, description="The module's LM; default: the program's `lm`.")
    adapter: Literal["chat", "json"] = Field(
        default="chat", description="DSPy's ChatAdapter, or its JSONAdapter (sends response_format)."
    )
    # Unset sampling settings fall back to the module's LM.
    n: int | None = Field(default=None, ge=1, description="Completions per call; default: the LM's.")
    temperature: float | None = Field(default=None, description="Default: the LM's.")
    max_tokens: int | None = Field(default=None, gt=0, description="Default: the LM's.")

    # The type's own keys as its settings model checked them (set by module_defs).
    _settings: SpecModel | None = None

    @property
    def own_keys(self) -> dict[str, Any]:
        """The keys of this module's type, as written (checked by the type's settings model)."""
        return dict(self.model_extra or {})

    def attach_settings(self, settings: SpecModel) -> None:
        self._settings = settings

    def model_dump(self, *, mode: Literal["python", "json"] = "python", by_alias: bool = False) -> dict[str, Any]:
        # The resolved program (run folders) shows a type's own keys checked, with their defaults.
        data = super().model_dump(mode=mode, by_alias=by_alias)
        if self._settings is not None:
            for key in self.model_extra or {}:
                data.pop(key, None)
            data.update(self._settings.model_dump(mode=mode, by_alias=by_alias))
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            return MODULE_ALIASES.get(value.replace("-", "_").lower(), value)
        return value

    _lm_shorthand = field_validator("lm", mode="before")(lambda cls, v: lm_shorthand(v))


class FlowStep(Strict):
    id: str = Field(description="The step's id, unique; `input` is reserved.")
    module: str = Field(description="A key of `modules`.")
    with_: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        description="Every input of the module: $input.<field>, $<step>.<field>, or a literal value.",
    )
    foreach: str | None = Field(
        default=None, description="Run the module once per item of this list ($input.x or $step.field)."
    )
    as_: str = Field(default="item", alias="as", description="The item's name in `with` ($item, $item.key).")
    max_errors: int = Field(
        default=1, ge=1, description="foreach: failed items that fail the step (DSPy's Parallel); fewer are null."
    )
    when: str | None = Field(
        default=None, description="$step.ok or not $step.ok: a false value skips the step (its outputs are null)."
    )


class SplitSpec(Strict):
    """Fractions of one shuffled file; the rest of 1.0, if any, is unused."""

    train: float = Field(default=0.0, ge=0, le=1, description="Fraction for the train split.")
    dev: float = Field(default=0.0, ge=0, le=1, description="Fraction for the dev split.")
    test: float = Field(default=0.0, ge=0, le=1, description="Fraction for the test split.")
    seed: int = Field(default=0, description="random.Random(seed) shuffles the file.")


class DataSpec(Strict):
    """Datasets: a file per split, or `path` cut by `split`; .jsonl, .json or .csv."""

    train: str | None = Field(default=None, description="The train split's file.")
    dev: str | None = Field(default=None, description="The dev split's file.")
    test: str | None = Field(default=None, description="The test split's file.")
    path: str | None = Field(default=None, description="One file cut into train, dev, test by `split`.")
    split: SplitSpec | None = Field(default=None, description="Fractions {train, dev, test, seed} of `path`.")
    inputs: list[str] | None = Field(
        default=None, description="The input keys (default: the program's inputs); the other keys are labels."
    )


class ProgramSpec(Strict):
    dspx: Literal[1] = Field(default=1, description="The format version.")
    name: str | None = Field(default=None, description="Shown in summaries and run folders; default: the file stem.")
    description: str | None = Field(default=None, description="Free text.")
    lm: LMSpec | None = Field(default=None, description="The default LM of every module; default: local/smollm2.")
    # The LM that writes instructions for mipro_v2/copro (DSPy's prompt_model); default: `lm:`.
    prompt_lm: LMSpec | None = Field(
        default=None, description="The LM that writes instructions for mipro_v2 and copro; default: `lm`."
    )
    # Object types usable as field types (`outputs: {order: Order}`): name -> field -> type.
    types: dict[str, dict[str, str | TypeFieldSpec]] = Field(
        default_factory=dict,
        description="Object types usable as field types: name -> field -> type or {type, desc, optional}.",
    )
    signatures: dict[str, str | SignatureSpec] = Field(
        default_factory=dict, description="Named signatures modules refer to."
    )
    tools: dict[str, ToolSpec] = Field(default_factory=dict, description="Tools react modules may call, by name.")
    modules: dict[str, ModuleSpec] = Field(min_length=1, description="The building blocks, by name.")
    flow: list[FlowStep] | None = Field(default=None, description="The steps; required when there are several modules.")
    output: dict[str, str] | None = Field(
        default=None, description="The program's outputs: name -> $<step>.<field>; default: the last step's."
    )
    # Filled by later layers (datasets, metrics, optimizers); kept as data until then.
    data: DataSpec | None = Field(default=None, description="The datasets evaluate, compile and finetune read.")
    # A built-in name ("exact_match"), {name: ..., options}, {python: "file.py:function"} or
    # {judge: {...}}; checked by the evaluate layer.
    metric: str | dict[str, Any] | None = Field(
        default=None, description='A built-in name, {name: ..., options}, {python: "file.py:fn"} or {judge: {...}}.'
    )
    optimizer: dict[str, Any] | None = Field(
        default=None, description="What `dspx compile` runs: `type` and its settings."
    )
    # what `dspx finetune` trains with; finetune/section.py
    finetune: dict[str, Any] | None = Field(default=None, description="How `dspx finetune` trains.")

    _lm_shorthand = field_validator("lm", "prompt_lm", mode="before")(lambda cls, v: lm_shorthand(v))
