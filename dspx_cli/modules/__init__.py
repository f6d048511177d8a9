"""Modules: async building blocks that turn inputs into a Prediction."""

from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.predict import Predict

Module = Predict | ChainOfThought

MODULE_CLASSES: dict[str, type[Predict] | type[ChainOfThought]] = {
    "predict": Predict,
    "chain_of_thought": ChainOfThought,
}

__all__ = ["ChainOfThought", "MODULE_CLASSES", "Module", "Predict"]
