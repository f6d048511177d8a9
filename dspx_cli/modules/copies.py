"""Copies of composite modules whose predictors are their own.

Optimizers copy a program before changing demos (`optimizers/labeled.py:clone_runner`): a
`copy.copy` of each module, then a copy of every attribute that is a `Predict`. That reaches the
predictor of a ChainOfThought, but not the predictors of a module nested one level deeper, such as
the ChainOfThought inside a BestOfN. Without their own copies, concurrent bootstrap runs would
change the demos of the program being optimized. Modules that hold other modules inherit
`OwnPredictorsOnCopy`, so `copy.copy` gives them copies of every predictor at any depth.
"""

from __future__ import annotations

import copy
from typing import Any, Self, TypeVar

from dspx_cli.modules.predict import Predict

__all__ = ["OwnPredictorsOnCopy", "copy_module"]

T = TypeVar("T")


def copy_module(module: T) -> T:
    """A shallow copy whose predictors, however deep, are copies with their own demos and extras.

    LMs, adapters and callbacks stay shared: they hold connections, caches and meters.
    """
    if isinstance(module, Predict):
        clone = copy.copy(module)
        clone.demos = list(module.demos)
        clone.extra = dict(module.extra)
        return clone  # type: ignore[return-value]
    # Built by hand rather than with copy.copy, which would call OwnPredictorsOnCopy.__copy__ again.
    composite: Any = object.__new__(type(module))
    composite.__dict__.update(vars(module))
    for name, value in vars(module).items():
        if _is_module(value):
            setattr(composite, name, copy_module(value))
    return composite  # type: ignore[no-any-return]


def _is_module(value: Any) -> bool:
    return isinstance(value, Predict) or callable(getattr(value, "named_predictors", None))


class OwnPredictorsOnCopy:
    """Mixin: `copy.copy(module)` copies the predictors of every nested module too."""

    def __copy__(self) -> Self:
        return copy_module(self)
