"""Copies of composite modules whose predictors are their own.

Optimizers copy a program before changing demos (`optimizers/labeled.py:clone_runner`). A plain
`copy.copy` of a ChainOfThought inside a BestOfN would share its predictor with the original, and
concurrent bootstrap runs would change the demos of the program being optimized. A module that
holds other modules inherits `Composite` and names them in `parts`; its `copy()` (and
`copy.copy`) copies each part with that part's own `copy()`, so every predictor at any depth is new.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

__all__ = ["Composite"]


class Composite:
    """Mixin for modules made of other modules (held in the attributes named by `parts`)."""

    parts: ClassVar[tuple[str, ...]] = ()

    def copy(self) -> Self:
        # Built by hand rather than with copy.copy, which would call __copy__ (this method) again.
        clone: Any = object.__new__(type(self))
        clone.__dict__.update(vars(self))
        for name in self.parts:
            part = getattr(self, name)
            if part is not None:
                setattr(clone, name, part.copy())
        return clone

    def __copy__(self) -> Self:
        return self.copy()
