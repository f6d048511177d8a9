"""Core values every layer shares: signatures, type strings, examples and predictions.

This package imports nothing from dspx_cli except `dspx_cli.errors`.
"""

from dspx_cli.core.example import Completions, Example, Prediction
from dspx_cli.core.signature import Field, Signature, default_instructions
from dspx_cli.core.types import SUPPORTED_TYPES, annotation_name, parse_type

__all__ = [
    "SUPPORTED_TYPES",
    "Completions",
    "Example",
    "Field",
    "Prediction",
    "Signature",
    "annotation_name",
    "default_instructions",
    "parse_type",
]
