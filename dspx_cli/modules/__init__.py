"""Modules: async building blocks that turn inputs into a Prediction.

The names below are loaded on first access (PEP 562): a program of `predict` modules does not
pay for importing ReAct, retrieval and the rest when it runs (`dspx run` of one call).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dspx_cli.modules.base import Module
    from dspx_cli.modules.best_of_n import BestOfN, RewardFn
    from dspx_cli.modules.calculator import calculator
    from dspx_cli.modules.chain_of_thought import ChainOfThought
    from dspx_cli.modules.code_act import CodeAct
    from dspx_cli.modules.multi_chain_comparison import MultiChainComparison
    from dspx_cli.modules.predict import Predict
    from dspx_cli.modules.program_of_thought import ProgramOfThought
    from dspx_cli.modules.react import ReAct
    from dspx_cli.modules.refine import Refine
    from dspx_cli.modules.retrieve import Retrieve
    from dspx_cli.modules.tool import Tool

    # The types an LM judge metric may use.
    MODULE_CLASSES: dict[str, type[Predict] | type[ChainOfThought]]

_WHERE = {
    "Module": "base",
    "BestOfN": "best_of_n",
    "RewardFn": "best_of_n",
    "calculator": "calculator",
    "ChainOfThought": "chain_of_thought",
    "CodeAct": "code_act",
    "MultiChainComparison": "multi_chain_comparison",
    "Predict": "predict",
    "ProgramOfThought": "program_of_thought",
    "ReAct": "react",
    "Refine": "refine",
    "Retrieve": "retrieve",
    "Tool": "tool",
}

__all__ = [
    "MODULE_CLASSES",
    "BestOfN",
    "ChainOfThought",
    "CodeAct",
    "Module",
    "MultiChainComparison",
    "Predict",
    "ProgramOfThought",
    "ReAct",
    "Refine",
    "Retrieve",
    "RewardFn",
    "Tool",
    "calculator",
]


def __getattr__(name: str) -> Any:
    if name == "MODULE_CLASSES":
        value: Any = {"predict": __getattr__("Predict"), "chain_of_thought": __getattr__("ChainOfThought")}
    elif name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups find it without this function
    return value
