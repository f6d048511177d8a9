"""What the grounded proposer shows the prompt model about the program (docs/mipro-design.md, 4).

DSPy shows `program_code`: for a bare `Predict` or `ChainOfThought` student nothing at all (the
text is exactly two newlines), otherwise the `repr` of each distinct predictor signature (pydantic's
`StringSignature(...)` layout), joined by blank lines, then the module class's Python source. dspx
has no Python source; a program file says the same things (signatures and how they are wired), so
it stands in for the class source, comments included.

- One module that is a `predict` or `chain_of_thought`: `"\\n\\n"`, byte for byte DSPy's.
- Anything else: the signature blocks in DSPy's layout, then the program file's text. DSPy's walk
  over the module's attributes adds an empty entry after the first plain `Predict` it meets (its
  own source, which is empty), so the joined header has one more blank line there; dspx does the
  same, so the usual "ChainOfThought, then Predict" program gets DSPy's spacing.

The `module` line names one predictor as `Predict(inputs) -> outputs`: DSPy prints the predictor's
class, which is `Predict` even inside a ChainOfThought (whose outputs start with `reasoning`).
"""

from __future__ import annotations

import re
from typing import Any

from dspx_cli.core import Field, Signature
from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.predict import Predict
from dspx_cli.program.runner import ProgramRunner

__all__ = ["BARE_PROGRAM_CODE", "module_line", "program_code", "signature_block"]

# DSPy's get_dspy_source_code for a bare Predict/ChainOfThought: an empty header and no source.
BARE_PROGRAM_CODE = "\n\n"
# The field ChainOfThought adds; DSPy declares it with an explicit `${reasoning}` description.
REASONING = "reasoning"


def module_line(predictor: Predict) -> str:
    """`Predict(message) -> reasoning, queue`: DSPy's `module` input of DescribeModule."""
    signature = predictor.signature
    return f"Predict({', '.join(signature.input_fields)}) -> {', '.join(signature.output_fields)}"


def program_code(runner: ProgramRunner, program_text: str) -> str:
    """The `program_code` input: see the module docstring."""
    modules = list(runner.modules.values())
    if len(modules) == 1 and isinstance(modules[0], Predict | ChainOfThought):
        return BARE_PROGRAM_CODE
    header: list[str] = []
    for module_name, module in runner.modules.items():
        string_spec = _string_spec(runner, module_name)
        for _, predictor in module.named_predictors():
            block = signature_block(predictor.signature, string_spec=string_spec)
            if block not in header:
                header.append(block)
        if isinstance(module, Predict) and "" not in header:
            header.append("")
    return "\n\n".join(header) + "\n\n" + program_text


def _string_spec(runner: ProgramRunner, module_name: str) -> str | None:
    """The module's signature when the file wrote it as a string (`"a, b -> c"`): DSPy builds such
    a signature with make_signature, which marks untyped inputs and lays out fields differently."""
    spec = runner.program.spec
    module = spec.modules.get(module_name)
    declared: Any = getattr(module, "signature", None)
    if isinstance(declared, str) and "->" not in declared:
        declared = spec.signatures.get(declared)
    return declared if isinstance(declared, str) and "->" in declared else None


def signature_block(signature: Signature, *, string_spec: str | None = None) -> str:
    """pydantic's repr of DSPy's StringSignature class for `signature`.

    The key order of each field's `json_schema_extra` is how DSPy happened to build it: a field
    declared with a description lists `desc` first, one without gets `${name}` appended last, and
    inputs of a string signature start with `IS_TYPE_UNDEFINED`.
    """
    inputs_part = string_spec.split("->", 1)[0] if string_spec is not None else None
    lines = [
        f"StringSignature({', '.join(signature.input_fields)} -> {', '.join(signature.output_fields)}",
        f"    instructions={signature.instructions!r}",
    ]
    for role, fields in (("input", signature.inputs), ("output", signature.outputs)):
        for field in fields:
            extra = _schema_extra(field, role, inputs_part)
            lines.append(
                f"    {field.name} = Field(annotation={field.type_name} required=True json_schema_extra={extra!r})"
            )
    lines.append(")")
    return "\n".join(lines)


def _schema_extra(field: Field, role: str, inputs_part: str | None) -> dict[str, Any]:
    placeholder = f"${{{field.name}}}"
    if field.desc or (field.name == REASONING and role == "output"):
        return {"desc": field.desc or placeholder, "__dspy_field_type": role, "prefix": field.prefix}
    extra: dict[str, Any] = {}
    if role == "input" and inputs_part is not None:
        typed = re.search(rf"(?<![\w]){re.escape(field.name)}\s*:", inputs_part) is not None
        extra["IS_TYPE_UNDEFINED"] = not typed
    extra.update({"__dspy_field_type": role, "prefix": field.prefix, "desc": placeholder})
    return extra
