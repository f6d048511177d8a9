"""The evaluate layer: datasets from the program's `data:` section, and metrics.

It imports core, lm, modules and program; never cli.
"""

from dspx_cli.evaluate.datasets import SPLITS, configured_splits, load_examples
from dspx_cli.evaluate.metrics import (
    BUILTIN_METRICS,
    Metric,
    MetricError,
    as_score,
    resolve_metric,
)

__all__ = [
    "BUILTIN_METRICS",
    "SPLITS",
    "Metric",
    "MetricError",
    "as_score",
    "configured_splits",
    "load_examples",
    "resolve_metric",
]
