"""The built-in `calculator` tool: arithmetic on numbers, evaluated by walking Python's syntax tree.

An LM writes the expression, so it is untrusted text. It is parsed with `ast.parse` and only a
closed set of node types is evaluated: number literals, `+ - * / // % **`, unary signs,
parentheses, and calls of the functions and constants in `FUNCTIONS` and `CONSTANTS` by bare name.
Names, attribute access, subscripts, keyword arguments, strings and everything else are rejected
before anything runs; nothing is ever passed to `eval` or `exec`.

Arithmetic on Python integers is exact and unbounded, so a short expression can ask for a number
with billions of digits (`9**9**9`). Every intermediate result is checked: integers may have at
most `MAX_INT_BITS` bits, floats must be finite, and a power whose result would be too large is
refused before it is computed.

Every failure raises a ValueError whose message says what was wrong; in ReAct it becomes the
observation the LM reads next.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

# Every rejected expression is a ValueError, whatever check found it: one exception for callers.

__all__ = ["CONSTANTS", "FUNCTIONS", "MAX_EXPRESSION_LENGTH", "MAX_INT_BITS", "calculator"]

Number = int | float

# Long enough for any arithmetic an agent needs; short enough that parsing (whose nesting depth is
# bounded by the text) stays trivial.
MAX_EXPRESSION_LENGTH = 1000
# About 3000 decimal digits; also keeps results under Python's 4300-digit int-to-text limit, so
# every result can be shown to the LM.
MAX_INT_BITS = 10_000

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or not -400 <= ndigits <= 400:
        raise ValueError("round's second argument must be a whole number of digits between -400 and 400")
    return round(x, ndigits)


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


# name -> (function, smallest and largest number of arguments; None means no upper bound)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "degrees": (math.degrees, 1, 1),
    "radians": (math.radians, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "min": (min, 1, None),
    "max": (max, 1, None),
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def calculator(expression: str) -> int | float:
    # The docstring is the tool's description in ReAct's prompt, shown raw as DSPy shows it (line
    # breaks become two spaces, indentation stays), so it is written as one line.
    "Evaluate an arithmetic expression and return its value, e.g. `(3 + 4) * 2 ** 3 / sqrt(16)`. Supports numbers, + - * / // % ** and parentheses, the constants pi, e and tau, and the functions sqrt, exp, log (natural, or log(x, base)), log10, log2, sin, cos, tan, asin, acos, atan (radians), degrees, radians, abs, round, floor, ceil, min and max."
    if not isinstance(expression, str):
        raise ValueError(f"expected the expression as text, got {type(expression).__name__}")
    text = expression.strip()
    if not text:
        raise ValueError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot read {text!r} as arithmetic: {exc.msg}") from None
    except (MemoryError, RecursionError):  # pathological nesting
        raise ValueError(f"the expression {text!r} is nested too deeply") from None
    return _Evaluator().visit(tree.body)


class _Evaluator:
    def visit(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ValueError(f"unknown name {node.id!r}; the constants are {', '.join(CONSTANTS)}")
        if isinstance(node, ast.Attribute):
            raise ValueError("attribute access (a.b) is not allowed; only arithmetic is")
        raise ValueError(f"{_describe(node)} is not allowed; only numbers, arithmetic operators and functions are")

    def constant(self, node: ast.Constant) -> Number:
        value = node.value
        # bool is an int subclass; True + 1 is not arithmetic an LM should be doing here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number; only numbers are allowed")
        return _checked(value)

    def binary(self, node: ast.BinOp) -> Number:
        op = type(node.op)
        if op not in _BINARY:
            raise ValueError(f"the operator {type(node.op).__name__} is not allowed; use + - * / // % **")
        left, right = self.visit(node.left), self.visit(node.right)
        if op is ast.Pow:
            _check_power(left, right)
        try:
            result = _BINARY[op](left, right)
        except ZeroDivisionError:
            raise ValueError(f"division by zero ({_SYMBOLS[op]} by 0)") from None
        except OverflowError:
            raise ValueError(f"the result of {_SYMBOLS[op]} is too large") from None
        if isinstance(result, complex):  # (-8) ** (1/3)
            raise ValueError("the result is not a real number (a fractional power of a negative number)")
        return _checked(result)

    def unary(self, node: ast.UnaryOp) -> Number:
        op = type(node.op)
        if op not in _UNARY:
            raise ValueError(f"the operator {type(node.op).__name__} is not allowed; use + - * / // % **")
        return _checked(_UNARY[op](self.visit(node.operand)))

    def call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise ValueError("attribute access (a.b) is not allowed; call functions by their bare name")
            raise ValueError("only the listed functions can be called, by their bare name")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ValueError(f"unknown function {name!r}; the functions are {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise ValueError(f"{name}() takes no keyword arguments")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ValueError(f"{name}() takes plain arguments, not *args")
        function, least, most = FUNCTIONS[name]
        count = len(node.args)
        if count < least or (most is not None and count > most):
            wanted = str(least) if least == most else f"{least} or more" if most is None else f"{least} to {most}"
            raise ValueError(f"{name}() takes {wanted} argument{'s' if wanted != '1' else ''}, got {count}")
        args = [self.visit(arg) for arg in node.args]
        try:
            result = function(*args)
        except ZeroDivisionError:
            raise ValueError(f"division by zero in {name}()") from None
        except OverflowError:
            raise ValueError(f"the result of {name}() is too large") from None
        except ValueError as exc:  # math domain errors: sqrt(-1), log(0)
            raise ValueError(f"{name}() of {', '.join(map(repr, args))}: {exc}") from None
        return _checked(result)


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse a power whose exact result would exceed MAX_INT_BITS, before computing it."""
    if not isinstance(base, int) or not isinstance(exponent, int) or exponent <= 0 or abs(base) <= 1:
        return  # float powers raise OverflowError on their own; 0, 1, -1 stay small
    if exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise ValueError(f"the result of {base} ** {exponent} is too large")


def _checked(value: Any) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ValueError(f"a result is too large (more than {MAX_INT_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a result is too large or not a number (inf or nan)")
    return value


def _describe(node: ast.AST) -> str:
    names = {
        ast.Subscript: "indexing (a[b])",
        ast.Compare: "comparison",
        ast.BoolOp: "and/or",
        ast.Lambda: "lambda",
        ast.IfExp: "if/else",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.JoinedStr: "an f-string",
        ast.NamedExpr: "assignment (:=)",
    }
    return names.get(type(node), type(node).__name__)
