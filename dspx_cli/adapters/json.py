"""The JSONAdapter: DSPy's JSON-reply prompt format, byte for byte, its reply parser, and the
OpenAI `response_format` that asks the provider to enforce the reply's shape.

It shares everything with the ChatAdapter except three things: the system message describes the
outputs as a JSON object, the closing reminder asks for that object, and assistant turns (demos)
are written as indented JSON. Inputs keep their `[[ ## name ## ]]` sections, as in DSPy.
"""

from __future__ import annotations

import copy
import json
import types
import warnings
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from dspx_cli.adapters.chat import ChatAdapter, PerSignature, _sections
from dspx_cli.adapters.values import (
    annotation_allows_none,
    describe_error,
    parse_value,
    type_placeholder,
)
from dspx_cli.core import Field, Signature, annotation_name
from dspx_cli.core.json_values import jsonable
from dspx_cli.errors import AdapterParseError

__all__ = ["STRUCTURED_OUTPUT_NAME", "JSONAdapter"]

# DSPy's structured-output model is named this; the name becomes the schema's "name" and "title".
STRUCTURED_OUTPUT_NAME = "DSPyProgramOutputs"
_JSON_OBJECT_MODE: dict[str, str] = {"type": "json_object"}


class JSONAdapter(ChatAdapter):
    """Prompts for a JSON object holding the output fields; parses such objects out of replies."""

    # ----- prompt ----------------------------------------------------------------------------------

    def format_field_structure(self, signature: Signature) -> str:
        inputs = _sections([(f.name, type_placeholder(f.name, f.annotation, is_input=True)) for f in signature.inputs])
        outputs = {f.name: type_placeholder(f.name, f.annotation, is_input=False) for f in signature.outputs}
        parts = [
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            "Inputs will have the following structure:",
            inputs,
            "Outputs will be a JSON object with the following fields.",
            json.dumps(outputs, indent=2, ensure_ascii=False),
        ]
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: Signature) -> str:
        def requirement(f: Field) -> str:
            if f.annotation is str:
                return f"`{f.name}`"
            return f"`{f.name}` (must be formatted as a valid Python {annotation_name(f.annotation)})"

        fields = ", then ".join(requirement(f) for f in signature.outputs)
        return f"Respond with a JSON object in the following order of fields: {fields}."

    def format_assistant_message(
        self, signature: Signature, outputs: Mapping[str, Any], missing_field_message: str | None = None
    ) -> str:
        values = {f.name: outputs.get(f.name, missing_field_message) for f in signature.outputs}
        return json.dumps(jsonable(values), indent=2, ensure_ascii=False)

    # ----- parsing ---------------------------------------------------------------------------------

    def parse(self, signature: Signature, completion: str) -> dict[str, Any]:
        """Output fields from the JSON object in the reply (fences, preambles and sloppy JSON allowed)."""
        found = _find_object(completion)
        if found is None:
            wanted = ", ".join(f'"{f.name}" ({annotation_name(f.annotation)})' for f in signature.outputs)
            raise AdapterParseError(
                f"expected a JSON object with the output fields {wanted}; the LM reply contains no JSON object",
                lm_response=completion,
            )

        parsed: dict[str, Any] = {}
        for f in signature.outputs:
            if f.name not in found:
                continue
            value = found[f.name]
            try:
                parsed[f.name] = parse_value(value, f.annotation)
            except Exception as exc:
                shown = json.dumps(value, ensure_ascii=False, default=str)
                shown = shown if len(shown) <= 200 else shown[:200] + " [...]"
                raise AdapterParseError(
                    f'expected output field "{f.name}" to be a valid {annotation_name(f.annotation)}; '
                    f"got {shown} ({describe_error(exc)})",
                    lm_response=completion,
                    parsed=parsed,
                ) from exc

        required = [f for f in signature.outputs if f.name not in parsed and not annotation_allows_none(f.annotation)]
        if required:
            raise AdapterParseError(_missing_message(required, parsed, found), lm_response=completion, parsed=parsed)
        # Fields that admit None may be left out by the LM; keep the signature's field order.
        return {f.name: parsed.get(f.name) for f in signature.outputs}

    # ----- request parameter -----------------------------------------------------------------------

    def response_format(self, signature: Signature, structured: bool = True) -> dict[str, Any]:
        """The OpenAI `response_format` for this signature's outputs.

        `structured=True` gives the strict JSON schema DSPy sends (via LiteLLM) for its
        `DSPyProgramOutputs` model; it falls back to plain JSON mode when an output's shape cannot
        be written as a strict schema. `structured=False` always gives JSON mode, for providers
        without schema support.
        """
        if not structured:
            return dict(_JSON_OBJECT_MODE)
        # Building the schema (a pydantic model) takes ~1 ms: once per signature, and each call gets
        # its own copy (decoded from the stored JSON), which the caller may change.
        stored = _RESPONSE_FORMATS.get(signature, "response_format", _stored_response_format)
        if isinstance(stored, bytes):
            import orjson

            return orjson.loads(stored)
        return copy.deepcopy(stored)


_RESPONSE_FORMATS = PerSignature()


def _response_format(signature: Signature) -> dict[str, Any]:
    if any(_open_ended(f.annotation) for f in signature.outputs):
        return dict(_JSON_OBJECT_MODE)
    try:
        schema = _outputs_schema(signature)
    except Exception:  # noqa: BLE001 - any failure means the JSON-mode fallback, as in DSPy
        # DSPy retries in JSON mode whenever building the schema fails (e.g. a field name
        # pydantic refuses); the reply is still parsed the same way.
        return dict(_JSON_OBJECT_MODE)
    return {
        "type": "json_schema",
        "json_schema": {"name": STRUCTURED_OUTPUT_NAME, "strict": True, "schema": schema},
    }


def _stored_response_format(signature: Signature) -> bytes | dict[str, Any]:
    """The response format as orjson bytes (fast to copy), or as is if orjson cannot round-trip it
    (an integer beyond 64 bits in a Literal, say)."""
    import orjson

    value = _response_format(signature)
    try:
        stored = orjson.dumps(value)
        if orjson.loads(stored) == value:
            return stored
    except (TypeError, ValueError):
        pass
    return value


# ----- helpers -------------------------------------------------------------------------------------


def _find_object(completion: str) -> dict[str, Any] | None:
    """The reply as a JSON object, else the first balanced `{...}` in it, repaired; None if neither."""
    import json_repair

    whole = _repair(json_repair, completion)
    if isinstance(whole, dict):
        return whole
    # json_repair turns several objects (or a list of them) into a list; DSPy then takes the first.
    span = _first_balanced_object(completion)
    if span is None:
        return None
    found = _repair(json_repair, span)
    return found if isinstance(found, dict) else None


def _repair(json_repair: types.ModuleType, text: str) -> Any:
    try:
        return json_repair.loads(text)
    except Exception:  # noqa: BLE001 - json_repair promises not to raise, but a reply is untrusted input
        return None


def _first_balanced_object(text: str) -> str | None:
    """The leftmost `{...}` whose braces balance, ignoring braces inside double-quoted strings.

    DSPy finds it with a recursive regex that also counts braces inside strings; skipping quoted
    text keeps an object such as `{"a": "}"}` whole instead of cutting it at the quoted brace.
    """
    start = text.find("{")
    while start != -1:
        depth = 0
        in_string = False
        i = start
        while i < len(text):
            ch = text[i]
            if in_string:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
            i += 1
        # This brace never closes (a truncated reply); an object may still start inside it.
        start = text.find("{", start + 1)
    return None


def _missing_message(missing: list[Field], parsed: dict[str, Any], found: dict[str, Any]) -> str:
    plural = "s" if len(missing) > 1 else ""
    wanted = ", ".join(f'"{f.name}" ({annotation_name(f.annotation)})' for f in missing)
    head = f"expected output field{plural} {wanted} as key{plural} of the JSON object in the LM reply"
    if parsed:
        return f"{head}; got only " + ", ".join(f'"{name}"' for name in parsed)
    if found:
        return f"{head}; got no output field, only the keys " + ", ".join(json.dumps(str(k)) for k in found)
    return f"{head}; got an empty object"


def _open_ended(annotation: Any) -> bool:
    """Whether a value of this type may be an object with arbitrary keys, or may be anything.

    Strict structured outputs need every object's keys declared, so such a field cannot be
    described. DSPy checks only for a top-level `dict[K, V]`; a nested or bare `dict`, `Any`, an
    unparameterized container (whose items are `Any`), or an object type with such a field is just
    as undescribable (DSPy would send a schema that forbids every key of such a dict).
    """
    if annotation is Any or annotation is dict:
        return True
    model_fields = getattr(annotation, "model_fields", None)
    if isinstance(annotation, type) and isinstance(model_fields, dict):
        # A declared object type (`types:`): open-ended if any of its fields is. Declared types
        # cannot contain themselves (the loader refuses cycles), so this ends.
        return any(_open_ended(info.annotation) for info in model_fields.values())
    if annotation in (list, set, tuple, frozenset):
        return True
    origin = get_origin(annotation)
    if origin is dict:
        return True
    if origin is Literal:
        return False
    if origin in (list, set, tuple, frozenset, Union, types.UnionType):
        return any(_open_ended(arg) for arg in get_args(annotation) if arg is not Ellipsis)
    return False


def _outputs_schema(signature: Signature) -> dict[str, Any]:
    """The strict JSON schema of an object holding every output field (all required, no extras)."""
    import pydantic

    fields: dict[str, Any] = {f.name: (f.annotation, ...) for f in signature.outputs}
    with warnings.catch_warnings():
        # Names like `json` or `model_name` shadow BaseModel attributes: harmless for a schema.
        warnings.simplefilter("ignore")
        model = pydantic.create_model(
            STRUCTURED_OUTPUT_NAME,
            __config__=pydantic.ConfigDict(extra="forbid", protected_namespaces=()),
            **fields,
        )
    if list(model.model_fields) != list(fields):
        # pydantic quietly turns `_name` into a private attribute and `model_config` into config.
        raise ValueError("some output field names cannot be pydantic fields")
    schema: dict[str, Any] = model.model_json_schema()
    _close_objects(schema)
    return schema


def _close_objects(schema: dict[str, Any]) -> None:
    """Make the schema strict in the two passes DSPy's request goes through, in their order.

    First DSPy's own: every object with properties requires them all and forbids other keys
    (walking properties, array items and definitions). Then the pass LiteLLM/OpenAI apply to a
    pydantic `response_format` before sending it (`_strict`). The order of keys is theirs too, so
    the request body is the same text.
    """
    _require_all(schema)
    _strict(schema, schema)


def _require_all(node: dict[str, Any]) -> None:
    if node.get("type") == "object":
        properties = node.get("properties")
        if properties is None:
            node.update(properties={}, required=[], additionalProperties=False)
        else:
            node["required"] = list(properties)
            node["additionalProperties"] = False
            for sub in properties.values():
                if isinstance(sub, dict):
                    _require_all(sub)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        _require_all(node["items"])
    for key in ("$defs", "definitions"):
        for sub in (node.get(key) or {}).values():
            _require_all(sub)


def _strict(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's strict-schema pass: definitions first, then objects closed, unions and items
    walked, a lone allOf merged, `default: null` dropped, and a `$ref` with sibling keys (a
    described nested object) replaced by the definition it points to, merged under those keys."""
    for key in ("$defs", "definitions"):
        definitions = node.get(key)
        if isinstance(definitions, dict):
            for sub in definitions.values():
                _strict(sub, root)
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = False
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["required"] = list(properties)
        node["properties"] = {name: _strict(sub, root) for name, sub in properties.items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(sub, root) for sub in node["anyOf"]]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            node.update(_strict(all_of[0], root))
            node.pop("allOf")
        else:
            node["allOf"] = [_strict(sub, root) for sub in all_of]
    if "default" in node and node["default"] is None:
        del node["default"]
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        # The node's own keys keep their places and win; the definition's keys follow.
        node.update({**target, **node})
        node.pop("$ref")
        return _strict(node, root)
    return node
