"""Modules: async building blocks that turn inputs into a Prediction."""

from dspx_cli.modules.base import Module
from dspx_cli.modules.best_of_n import BestOfN, RewardFn
from dspx_cli.modules.calculator import calculator
from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.multi_chain_comparison import MultiChainComparison
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.react import ReAct
from dspx_cli.modules.refine import Refine
from dspx_cli.modules.retrieve import Retrieve
from dspx_cli.modules.tool import Tool

# The types an LM judge metric may use.
MODULE_CLASSES: dict[str, type[Predict] | type[ChainOfThought]] = {
    "predict": Predict,
    "chain_of_thought": ChainOfThought,
}

__all__ = [
    "MODULE_CLASSES",
    "BestOfN",
    "ChainOfThought",
    "Module",
    "MultiChainComparison",
    "Predict",
    "ReAct",
    "Refine",
    "Retrieve",
    "RewardFn",
    "Tool",
    "calculator",
]
