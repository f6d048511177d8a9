"""Tool functions for the CodeAct tests and for the script that records DSPy's golden output
(tests/fixtures/code_modules/generate.py).

DSPy's CodeAct runs each tool's source inside its interpreter, so these functions use nothing but
builtins; dspx runs them on the host and the sandboxed code calls them back. The answers are the
same either way.
"""

from __future__ import annotations


def price_of(fruit: str) -> int:
    """The price of one fruit, in cents."""
    return {"apple": 3, "pear": 5, "plum": 2}.get(fruit, 0)


def multiply(a: int, b: int = 2) -> int:
    """Multiply two whole numbers."""
    return a * b


TOOL_FUNCTIONS = {"price_of": price_of, "multiply": multiply}
