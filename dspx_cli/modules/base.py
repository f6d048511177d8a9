"""The one interface every module type implements, and what runners, wrappers and optimizers use.

A module is anything with a signature, predictors an optimizer may tune, the messages its first LM
call would send, an async `acall`, and a `copy` whose predictors are its own. Runners, BestOfN and
Refine, the LM judge and the optimizers rely on these and on nothing else (no attribute probes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self

from dspx_cli.core import Prediction, Signature
from dspx_cli.lm.base import Message

if TYPE_CHECKING:
    from dspx_cli.modules.predict import Predict

__all__ = ["Module"]


class Module(Protocol):
    @property
    def signature(self) -> Signature:
        """What a caller binds and gets back (before any outputs the module puts first)."""
        ...

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every predictor, named as DSPy names it; `[]` for a module that calls no LM."""
        ...

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        """What the first LM call would send (`dspx inspect`); `[]` for a module that calls no LM."""
        ...

    @property
    def acall(self) -> Callable[..., Awaitable[Prediction]]:
        """Called with keyword inputs; declared loosely so a module may name its inputs."""
        ...

    def copy(self) -> Self:
        """A shallow copy whose predictors, however deep, have their own demos and extras.

        LMs, adapters and callbacks stay shared: they hold connections, caches and meters.
        Optimizers change the copy's demos while other runs read the original's."""
        ...
