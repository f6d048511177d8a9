"""Pieces of the program-file schema that module types and tools share with `schema.py`.

Separate so a module type's settings model (program/module_types.py) can build on them without
importing the schema, which reads the module-type registry.
"""

# No `from __future__ import annotations`: annotations written plainly are evaluated once,
# when the class is made, instead of from their strings at the first check.

from collections.abc import Callable
from typing import Any

from dspx_cli.core.redact import UnsetSecret
from dspx_cli.core.spec_model import Field, SpecModel, field_validator

__all__ = ["EmbeddingsSpec", "NoSettings", "RetrievalKeys", "Strict", "api_key_validator", "lm_shorthand"]


def api_key_validator(cls: Any, value: Any, handler: Callable[[Any], Any]) -> str | None:
    # An UnsetSecret passes as it is (pydantic would copy it into a plain str and lose its error);
    # `api_key: ${OPENAI_API_KEY}` with the variable unset interpolates to "", which means no key.
    if isinstance(value, UnsetSecret):
        return value
    return handler(value) or None


def lm_shorthand(value: Any) -> Any:
    return {"model": value} if isinstance(value, str) else value


# Unknown keys are errors: a typo such as `temprature` must not be silently ignored.
class Strict(SpecModel, extra="forbid"):
    """Keys checked strictly: an unknown one is an error."""


class NoSettings(Strict):
    """The settings of a module type that takes no keys beyond the common ones."""


class EmbeddingsSpec(Strict):
    """An OpenAI-compatible `/v1/embeddings` endpoint; a corpus is embedded once and cached."""

    model: str = Field(description="The embedding model, e.g. openai/text-embedding-3-small.")
    api_base: str | None = Field(default=None, description="OpenAI-compatible base URL.")
    api_key: str | None = Field(default=None, repr=False, description="Sent as a Bearer header only; never stored.")
    batch_size: int = Field(default=128, ge=1, description="Texts per embeddings request.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds per request.")

    _api_key = field_validator("api_key", mode="wrap")(api_key_validator)


class RetrievalKeys(Strict):
    """What a `retrieve` module or tool searches: BM25 over `corpus`, or its embeddings."""

    corpus: str | None = Field(default=None, description="The corpus file, relative to the program file (required).")
    k: int | None = Field(default=None, ge=1, description="Passages returned (3).")
    text_field: str | None = Field(default=None, description="The record key holding the text (text).")
    embeddings: EmbeddingsSpec | None = Field(
        default=None,
        description="Search by embeddings from this endpoint instead of BM25; a model string or a mapping.",
    )

    _embeddings_shorthand = field_validator("embeddings", mode="before")(lambda cls, v: lm_shorthand(v))
