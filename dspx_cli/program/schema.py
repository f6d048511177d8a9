"""The program-file schema: what keys exist, their types and defaults.

Only structure lives here. Meaning (do references resolve, do type strings parse) is checked by
the loader, which knows where each key was written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator

from dspx_cli.core.redact import UnsetSecret
from dspx_cli.program.module_types import MODULE_ALIASES, MODULE_TYPES

# The registered type names (program/module_types.py), so an unknown type lists them all.
if TYPE_CHECKING:
    ModuleTypeName = str
else:
    ModuleTypeName = Literal[tuple(MODULE_TYPES)]
TOOL_TYPES = ("calculator", "retrieve", "python")


def _api_key(cls: Any, value: Any, handler: ValidatorFunctionWrapHandler) -> str | None:
    # An UnsetSecret passes as it is (pydantic would copy it into a plain str and lose its error);
    # `api_key: ${OPENAI_API_KEY}` with the variable unset interpolates to "", which means no key.
    if isinstance(value, UnsetSecret):
        return value
    return handler(value) or None


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `temprature` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Prices(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class LMSpec(_Strict):
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

    _api_key = field_validator("api_key", mode="wrap")(_api_key)


def _lm_shorthand(value: Any) -> Any:
    return {"model": value} if isinstance(value, str) else value


class FieldSpec(_Strict):
    type: str = "str"
    desc: str = ""


class SignatureSpec(_Strict):
    instructions: str | None = None
    inputs: dict[str, str | FieldSpec] = Field(default_factory=dict)
    outputs: dict[str, str | FieldSpec]


class EmbeddingsSpec(_Strict):
    """An OpenAI-compatible `/v1/embeddings` endpoint; a corpus is embedded once and cached."""

    model: str
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    batch_size: int = Field(default=128, ge=1)
    timeout: float = Field(default=60.0, gt=0)

    _api_key = field_validator("api_key", mode="wrap")(_api_key)


class RetrievalKeys(_Strict):
    """What a `retrieve` module or tool searches: BM25 over `corpus`, or its embeddings."""

    corpus: str | None = None
    k: int | None = Field(default=None, ge=1)
    text_field: str | None = None
    embeddings: EmbeddingsSpec | None = None

    _embeddings_shorthand = field_validator("embeddings", mode="before")(lambda cls, v: _lm_shorthand(v))


class ToolSpec(RetrievalKeys):
    """A tool for `react` modules: a built-in (`calculator`, `retrieve`) or `python: file.py:fn`."""

    type: Literal["calculator", "retrieve", "python"] | None = None  # default: python if given, else the name
    python: str | None = None
    desc: str | None = None
    timeout: float | None = Field(default=None, gt=0)


class ModuleSpec(RetrievalKeys):
    type: ModuleTypeName = "predict"
    signature: str | SignatureSpec | None = None  # required except for best_of_n, refine, retrieve
    instructions: str | None = None
    demos: list[dict[str, Any]] = Field(default_factory=list)
    lm: LMSpec | None = None
    adapter: Literal["chat", "json"] = "chat"
    # Unset sampling settings fall back to the module's LM.
    n: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    # Keys of one or a few types (module_types.py says which): react
    tools: list[str] | None = None
    max_iters: int | None = Field(default=None, ge=0)
    # best_of_n, refine: another module of the program, run N times and judged by `reward`
    module: str | None = None
    N: int | None = Field(default=None, ge=1)
    reward: str | dict[str, Any] | None = None  # a metric spec, scored without labels
    threshold: float | None = None
    fail_count: int | None = Field(default=None, ge=0)
    # multi_chain_comparison
    M: int | None = Field(default=None, ge=1)

    @field_validator("type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            return MODULE_ALIASES.get(value.replace("-", "_").lower(), value)
        return value

    _lm_shorthand = field_validator("lm", mode="before")(lambda cls, v: _lm_shorthand(v))


class FlowStep(_Strict):
    id: str
    module: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class SplitSpec(_Strict):
    """Fractions of one shuffled file; the rest of 1.0, if any, is unused."""

    train: float = Field(default=0.0, ge=0, le=1)
    dev: float = Field(default=0.0, ge=0, le=1)
    test: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0


class DataSpec(_Strict):
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    path: str | None = None  # one file cut into train/dev/test by `split`
    split: SplitSpec | None = None
    inputs: list[str] | None = None  # the other keys are labels; default: the program's inputs


class ProgramSpec(_Strict):
    dspx: Literal[1] = 1
    name: str | None = None
    description: str | None = None
    lm: LMSpec | None = None
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

    _lm_shorthand = field_validator("lm", mode="before")(lambda cls, v: _lm_shorthand(v))
