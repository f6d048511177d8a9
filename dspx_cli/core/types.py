"""Type strings (`list[str]`, `Literal['a', 'b']`, `int | None`, ...) to Python annotations and back.

Program files spell field types as text. DSPy resolves such text with Python's own machinery; dspx
reads it with a small recursive-descent parser over a closed vocabulary instead, so a program
file can never name (or import) arbitrary objects, and every mistake gets a message that lists
what is supported.

`annotation_name` renders annotations the way DSPy shows them in prompts; its output is accepted
by `parse_type` again, which is what saved signatures rely on.
"""

from __future__ import annotations

# `re` costs nothing extra here: `typing` already imports it.
import re
import typing
from typing import Any, Literal, Optional, Union

from dspx_cli.core.media import MEDIA_TYPES
from dspx_cli.errors import SignatureError

__all__ = ["SUPPORTED_TYPES", "annotation_name", "parse_type"]

SUPPORTED_TYPES = (
    "str, int, float, bool, Any, None, list, dict, list[T], dict[K, V], set[T], tuple[T, ...], "
    "Literal['a', 'b', 1], Optional[T], Union[A, B], A | B, History, Image (inputs only)"
)

_NONE_TYPE = type(None)

# Names that stand for a type on their own. typing's capitalised aliases map to the builtins so a
# parsed annotation has one canonical form, whichever spelling the program used.
_SCALARS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "Any": Any,
    "None": _NONE_TYPE,
    "NoneType": _NONE_TYPE,
    "list": list,
    "List": list,
    "dict": dict,
    "Dict": dict,
    "tuple": tuple,
    "Tuple": tuple,
    "set": set,
    "Set": set,
    # DSPy's conversation and image inputs (core/media.py); the signature keeps them to inputs.
    **MEDIA_TYPES,
}
_CONTAINERS: dict[str, Any] = {"list": list, "dict": dict, "tuple": tuple, "set": set}
_CONTAINER_ALIASES = {"List": "list", "Dict": "dict", "Tuple": "tuple", "Set": "set"}
_SPECIAL = {"Optional", "Union", "Literal"}

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<ellipsis>\.\.\.)
    | (?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    | (?P<punct>[\[\],|])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


class _Token(typing.NamedTuple):
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SignatureError(f"cannot read type {text!r}: unexpected {text[pos]!r} at position {pos + 1}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


def _unquote(literal: str) -> str:
    # Only the escapes annotation_name can produce (and a few common ones) are understood.
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), literal[1:-1])


class _Parser:
    def __init__(self, text: str, named: typing.Mapping[str, Any] | None = None) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        # The program's own object types (its `types:` section), by name.
        self.named: typing.Mapping[str, Any] = named if named is not None else {}

    def fail(self, message: str) -> SignatureError:
        return SignatureError(f"cannot read type {self.text!r}: {message}")

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.fail("it ends before the type is complete (a missing ']'?)")
        self.index += 1
        return token

    def expect(self, punct: str) -> None:
        token = self.take()
        if token.text != punct:
            raise self.fail(f"expected {punct!r} at position {token.pos + 1}, got {token.text!r}")

    def at(self, punct: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "punct" and token.text == punct

    def parse(self) -> Any:
        if not self.tokens:
            raise SignatureError(f"expected a type ({SUPPORTED_TYPES}), got an empty string")
        result = self.union()
        token = self.peek()
        if token is not None:
            raise self.fail(f"unexpected {token.text!r} at position {token.pos + 1}")
        return result

    def union(self) -> Any:
        members = [self.atom()]
        while self.at("|"):
            self.take()
            members.append(self.atom())
        # Like DSPy, `A | B` becomes typing.Union, so it renders as `Union[A, B]` in prompts.
        return members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007

    def atom(self) -> Any:
        token = self.take()
        if token.kind != "name":
            raise self.fail(f"expected a type name at position {token.pos + 1}, got {token.text!r}")
        name = token.text.removeprefix("typing.")
        if name in _SPECIAL:
            if not self.at("["):
                raise self.fail(f"{name} needs arguments in brackets, e.g. {name}[...]")
            return self.special(name)
        if name not in _SCALARS and name in self.named:
            if self.at("["):
                raise self.fail(f"{name} takes no type arguments")
            return self.named[name]
        if name not in _SCALARS:
            declared = f", or a declared type ({', '.join(self.named)})" if self.named else ""
            raise SignatureError(
                f"unknown type {token.text!r} in {self.text!r}; supported: {SUPPORTED_TYPES}{declared}"
            )
        container = _CONTAINER_ALIASES.get(name, name)
        if not self.at("["):
            return _SCALARS[name]
        if container not in _CONTAINERS:
            raise self.fail(f"{name} takes no type arguments")
        return self.container(container)

    def arguments(self, item: typing.Callable[[], Any]) -> list[Any]:
        self.expect("[")
        items = [item()]
        while self.at(","):
            self.take()
            if self.at("]"):  # a trailing comma, as Python allows
                break
            items.append(item())
        self.expect("]")
        return items

    def container(self, name: str) -> Any:
        if name == "tuple":
            args = self.arguments(self.tuple_item)
            if Ellipsis in args and (len(args) != 2 or args[1] is not Ellipsis):
                raise self.fail("'...' is only allowed as the second argument, as in tuple[int, ...]")
            return _CONTAINERS["tuple"][tuple(args)]
        args = self.arguments(self.union)
        expected = 2 if name == "dict" else 1
        if len(args) != expected:
            raise self.fail(f"{name} takes {expected} type argument{'s' if expected > 1 else ''}, got {len(args)}")
        return _CONTAINERS[name][tuple(args) if expected > 1 else args[0]]

    def tuple_item(self) -> Any:
        token = self.peek()
        if token is not None and (token.kind == "ellipsis" or token.text == "Ellipsis"):
            self.take()
            return Ellipsis
        return self.union()

    def special(self, name: str) -> Any:
        if name == "Literal":
            return Literal[tuple(self.arguments(self.literal_value))]
        args = self.arguments(self.union)
        if name == "Optional":
            if len(args) != 1:
                raise self.fail(f"Optional takes 1 type argument, got {len(args)}")
            return Optional[args[0]]  # noqa: UP045 - rendered as Optional[...] in prompts, as DSPy
        return Union[tuple(args)]  # noqa: UP007

    def literal_value(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "name" and token.text in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[token.text]
        raise self.fail(f"Literal values must be quoted strings, numbers, True, False or None; got {token.text!r}")


def parse_type(text: str, named: typing.Mapping[str, Any] | None = None) -> Any:
    """Read a type string into an annotation; raises SignatureError naming what is supported.

    `named` maps the program's declared object type names (its `types:` section) to their
    annotations; they are looked up only when a name is not a built-in type.
    """
    if not isinstance(text, str):
        raise SignatureError(f"expected a type string ({SUPPORTED_TYPES}), got {text!r}")
    return _Parser(text, named).parse()


def _quote_literal(value: str) -> str:
    # Pick the quote that needs no escaping; with both kinds present, escape the single quotes.
    if "'" in value and '"' not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "\\'") + "'"


def annotation_name(annotation: Any) -> str:
    """Render an annotation the way DSPy names it in prompts (`Union[str, NoneType]`, `list[str]`)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        name = getattr(annotation, "__name__", None)
        return name if isinstance(name, str) else str(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        rendered = ", ".join(_quote_literal(a) if isinstance(a, str) else annotation_name(a) for a in args)
    else:
        rendered = ", ".join(annotation_name(a) for a in args)
    return f"{annotation_name(origin)}[{rendered}]"
