"""Signatures: named, typed input and output fields plus the instructions of one LM task.

A Signature is an immutable value (DSPy builds a pydantic class per signature; dspx does not need
one). Every "change" returns a new Signature, so optimizers can try variants without copying.
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dspx_cli.core.media import History, Image, contains_media
from dspx_cli.core.types import annotation_name, parse_type
from dspx_cli.errors import SignatureError

__all__ = ["Field", "Signature", "default_instructions"]

_PREFIX_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@dataclass(frozen=True)
class Field:
    """One input or output field. `desc` "" means no description."""

    name: str
    annotation: Any = str
    desc: str = ""
    # DSPy's `prefix` when it is not the one inferred from the name: COPRO rewrites the last output
    # field's prefix and DSPy's saved state carries it. None means inferred. No adapter shows a
    # prefix (DSPy's ChatAdapter and JSONAdapter do not either), so it never changes a prompt.
    custom_prefix: str | None = None

    def __post_init__(self) -> None:
        # DSPy stores "${name}" as the description of an undescribed field and renders it as empty;
        # normalising here means every dspx layer sees a single spelling of "no description".
        if self.desc is None or self.desc == f"${{{self.name}}}":
            object.__setattr__(self, "desc", "")
        # One spelling of "the inferred prefix" too, so a field read back from a state equals the
        # program's own when its prefix was never changed.
        if self.custom_prefix is not None and self.custom_prefix == self.inferred_prefix:
            object.__setattr__(self, "custom_prefix", None)

    @property
    def type_name(self) -> str:
        return annotation_name(self.annotation)

    @property
    def inferred_prefix(self) -> str:
        """DSPy's prefix inferred from the name ("question_text" -> "Question Text:")."""
        words = _PREFIX_WORD_RE.findall(self.name)
        return " ".join(w if w.isupper() else w.capitalize() for w in words) + ":"

    @property
    def prefix(self) -> str:
        """DSPy's prefix: the custom one if set, else the inferred one; kept for its saved-state layout."""
        return self.inferred_prefix if self.custom_prefix is None else self.custom_prefix

    def with_prefix(self, prefix: str) -> Field:
        return replace(self, custom_prefix=prefix)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type_name, "desc": self.desc}


def default_instructions(inputs: Iterable[Field], outputs: Iterable[Field]) -> str:
    """DSPy's instructions for a signature declared without any."""
    named_inputs = ", ".join(f"`{f.name}`" for f in inputs)
    named_outputs = ", ".join(f"`{f.name}`" for f in outputs)
    return f"Given the fields {named_inputs}, produce the fields {named_outputs}."


@dataclass(frozen=True)
class Signature:
    """Inputs, outputs and instructions. Empty instructions resolve to `default_instructions`.

    The default is computed once, when the signature is created: later edits such as
    `prepend_output` keep the text, exactly as DSPy's ChainOfThought keeps "produce the fields
    `answer`" after adding `reasoning`.
    """

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    instructions: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        _validate(self.inputs, self.outputs)
        # DSPy shows instructions through inspect.cleandoc; storing them cleaned keeps prompts equal.
        text = inspect.cleandoc(self.instructions or "")
        object.__setattr__(self, "instructions", text or default_instructions(self.inputs, self.outputs))

    # ----- views -------------------------------------------------------------------------------

    @property
    def input_fields(self) -> dict[str, Field]:
        return {f.name: f for f in self.inputs}

    @property
    def output_fields(self) -> dict[str, Field]:
        return {f.name: f for f in self.outputs}

    @property
    def fields(self) -> dict[str, Field]:
        """Inputs then outputs, the order DSPy uses when checking demos."""
        return {f.name: f for f in (*self.inputs, *self.outputs)}

    def __str__(self) -> str:
        def side(fields: tuple[Field, ...]) -> str:
            return ", ".join(f"{f.name}: {f.type_name}" for f in fields)

        return f"{side(self.inputs)} -> {side(self.outputs)}"

    # ----- construction ------------------------------------------------------------------------

    @classmethod
    def parse(
        cls, text: str, instructions: str | None = None, *, named_types: Mapping[str, Any] | None = None
    ) -> Signature:
        """Read DSPy's string form: `"question, context: list[str] -> answer: str"`.

        `named_types` are the program's declared object types (`types:`), usable as field types.
        """
        if not isinstance(text, str):
            raise SignatureError(f'expected a signature string "inputs -> outputs", got {text!r}')
        arrows = _top_level_positions(text, "->")
        if not arrows:
            raise SignatureError(f'expected "inputs -> outputs", got "{text}"')
        if len(arrows) > 1:
            raise SignatureError(f'expected "inputs -> outputs" with one "->", got {len(arrows)} in "{text}"')
        inputs_text, outputs_text = text[: arrows[0]], text[arrows[0] + 2 :]
        outputs = _parse_side(outputs_text, text, named_types)
        if not outputs:
            raise SignatureError(f'expected at least one output field after "->", got "{text}"')
        return cls(_parse_side(inputs_text, text, named_types), outputs, instructions or "")

    @classmethod
    def from_spec(cls, spec: str | Mapping[str, Any], *, named_types: Mapping[str, Any] | None = None) -> Signature:
        """A string is `parse`d; a mapping has `instructions` and `inputs`/`outputs` in either layout.

        Field layouts: `{name: "type"}`, `{name: {"type": ..., "desc": ...}}`, or a list of
        `{"name": ..., "type": ..., "desc": ...}` (strings `"name: type"` are accepted in lists too).
        """
        if isinstance(spec, str):
            return cls.parse(spec, named_types=named_types)
        if not isinstance(spec, Mapping):
            raise SignatureError(f"expected a signature string or mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"instructions", "inputs", "outputs"}
        if unknown:
            raise SignatureError(
                f"unknown signature key(s) {', '.join(sorted(map(str, unknown)))}; "
                "expected instructions, inputs, outputs"
            )
        instructions = spec.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise SignatureError(f"expected instructions to be text, got {type(instructions).__name__}")
        inputs = _fields_from_spec(spec.get("inputs"), "inputs", named_types)
        outputs = _fields_from_spec(spec.get("outputs"), "outputs", named_types)
        return cls(inputs, outputs, instructions or "")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Inverse of `to_dict` (any structured `from_spec` layout is accepted)."""
        return cls.from_spec(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "inputs": [f.to_dict() for f in self.inputs],
            "outputs": [f.to_dict() for f in self.outputs],
        }

    # ----- derived signatures ------------------------------------------------------------------

    def with_instructions(self, text: str) -> Signature:
        return replace(self, instructions=text)

    def with_updated_field(
        self, name: str, desc: str | None = None, *, annotation: Any = None, prefix: str | None = None
    ) -> Signature:
        """Change a field's description, annotation and/or prefix (None leaves it as it is)."""
        if name not in self.fields:
            raise SignatureError(f'no field "{name}"; fields are: {", ".join(self.fields)}')

        def update(f: Field) -> Field:
            if f.name != name:
                return f
            return replace(
                f,
                annotation=f.annotation if annotation is None else annotation,
                desc=f.desc if desc is None else desc,
                custom_prefix=f.custom_prefix if prefix is None else prefix,
            )

        return replace(self, inputs=tuple(map(update, self.inputs)), outputs=tuple(map(update, self.outputs)))

    def prepend_output(self, name: str, annotation: Any = str, desc: str = "") -> Signature:
        return replace(self, outputs=(Field(name, annotation, desc), *self.outputs))

    def append_output(self, name: str, annotation: Any = str, desc: str = "") -> Signature:
        return replace(self, outputs=(*self.outputs, Field(name, annotation, desc)))

    def append_input(self, name: str, annotation: Any = str, desc: str = "") -> Signature:
        return replace(self, inputs=(*self.inputs, Field(name, annotation, desc)))

    def delete(self, name: str) -> Signature:
        """Drop a field; like DSPy, an unknown name is not an error."""
        return replace(
            self,
            inputs=tuple(f for f in self.inputs if f.name != name),
            outputs=tuple(f for f in self.outputs if f.name != name),
        )


# ----- validation and parsing helpers ----------------------------------------------------------


def _validate(inputs: tuple[Field, ...], outputs: tuple[Field, ...]) -> None:
    for f in (*inputs, *outputs):
        if not isinstance(f, Field):
            raise SignatureError(f"expected Field objects, got {f!r}")
        _check_name(f.name)
    for role, fields in (("input", inputs), ("output", outputs)):
        seen: set[str] = set()
        for f in fields:
            if f.name in seen:
                raise SignatureError(f'field "{f.name}" is declared twice among the {role}s')
            seen.add(f.name)
    both = [f.name for f in inputs if f.name in {o.name for o in outputs}]
    if both:
        raise SignatureError(
            f'field "{both[0]}" is both an input and an output; inputs and outputs need distinct names'
        )
    if not outputs:
        raise SignatureError("expected at least one output field, got none")
    _check_media(inputs, outputs)


def _check_media(inputs: tuple[Field, ...], outputs: tuple[Field, ...]) -> None:
    """History and Image are input types, used whole: the adapters format them apart from text."""
    for f in outputs:
        if contains_media(f.annotation):
            raise SignatureError(f'output field "{f.name}": History and Image are input types only')
    histories = 0
    for f in inputs:
        if f.annotation is History:
            histories += 1
        elif f.annotation is Image or f.annotation == (Image | None):
            continue
        elif contains_media(f.annotation):
            raise SignatureError(
                f'input field "{f.name}": expected History or Image alone (or Optional[Image]), '
                f"got {annotation_name(f.annotation)}"
            )
    if histories > 1:
        raise SignatureError("expected at most one History input; the conversation is a single field")


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise SignatureError(f"expected a field name, got {name!r}")
    # The ChatAdapter's `[[ ## name ## ]]` headers and attribute access both need identifiers.
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(
            f'invalid field name "{name}": expected a Python identifier (letters, digits, _; not a keyword)'
        )


def _top_level_positions(text: str, token: str) -> list[int]:
    """Offsets of `token` outside brackets and quotes; raises on unbalanced brackets or quotes."""
    positions: list[int] = []
    depth = 0
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth < 0:
                raise SignatureError(f'unbalanced brackets in "{text}": unexpected {ch!r} at position {i + 1}')
        elif depth == 0 and text.startswith(token, i):
            positions.append(i)
            i += len(token)
            continue
        i += 1
    if quote:
        raise SignatureError(f'unclosed quote {quote} in "{text}"')
    if depth:
        raise SignatureError(f'unbalanced brackets in "{text}": a "[" is never closed')
    return positions


def _parse_side(side: str, whole: str, named: Mapping[str, Any] | None) -> tuple[Field, ...]:
    if not side.strip():
        return ()
    fields: list[Field] = []
    start = 0
    for end in [*_top_level_positions(side, ","), len(side)]:
        fields.append(_parse_field_text(side[start:end], whole, named))
        start = end + 1
    return tuple(fields)


def _parse_field_text(text: str, whole: str, named: Mapping[str, Any] | None = None) -> Field:
    # Names cannot contain ":", so the first one always ends the name, even if the type has more.
    name, colon, type_text = (part.strip() for part in text.partition(":"))
    if not name:
        raise SignatureError(f'expected a field name before each "," and ":", got an empty name in "{whole}"')
    _check_name(name)
    if colon and not type_text:
        raise SignatureError(f'expected a type after "{name}:" in "{whole}"')
    return Field(name, _parse_field_type(name, type_text, named) if colon else str)


def _parse_field_type(name: str, type_text: str, named: Mapping[str, Any] | None = None) -> Any:
    try:
        return parse_type(type_text, named)
    except SignatureError as exc:
        raise SignatureError(f'field "{name}": {exc}') from None


def _fields_from_spec(raw: Any, role: str, named: Mapping[str, Any] | None = None) -> tuple[Field, ...]:
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        return tuple(_field_from_entry(name, entry, role, named) for name, entry in raw.items())
    if isinstance(raw, list | tuple):
        fields: list[Field] = []
        for entry in raw:
            if isinstance(entry, str):
                fields.append(_parse_field_text(entry, entry, named))
            elif isinstance(entry, Mapping):
                if "name" not in entry:
                    raise SignatureError(f'expected a "name" in each of the {role}, got {dict(entry)!r}')
                rest = {k: v for k, v in entry.items() if k != "name"}
                fields.append(_field_from_entry(entry["name"], rest, role, named))
            else:
                raise SignatureError(f'expected each of the {role} to be a mapping or "name: type", got {entry!r}')
        return tuple(fields)
    raise SignatureError(f"expected {role} to be a mapping of name to type, or a list, got {type(raw).__name__}")


def _field_from_entry(name: Any, entry: Any, role: str, named: Mapping[str, Any] | None = None) -> Field:
    _check_name(name)
    if entry is None:  # `question:` with nothing after it in YAML
        return Field(name, str)
    if isinstance(entry, str):
        return Field(name, _parse_field_type(name, entry, named))
    if not isinstance(entry, Mapping):
        raise SignatureError(f'field "{name}" in {role}: expected a type string or {{type, desc}}, got {entry!r}')
    unknown = set(entry) - {"type", "desc"}
    if unknown:
        raise SignatureError(
            f'field "{name}" in {role}: unknown key(s) {", ".join(sorted(map(str, unknown)))}; expected type, desc'
        )
    desc = entry.get("desc") or ""
    if not isinstance(desc, str):
        raise SignatureError(f'field "{name}" in {role}: expected desc to be text, got {desc!r}')
    type_text = entry.get("type")
    return Field(name, str if type_text is None else _parse_field_type(name, type_text, named), desc)
