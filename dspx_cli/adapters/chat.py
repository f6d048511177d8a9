"""The ChatAdapter: DSPy's `[[ ## field ## ]]` prompt format, byte for byte, and its reply parser.

Messages are plain `{"role": ..., "content": ...}` dicts. Demos and inputs are any mapping-like
records (dicts or core Examples): only `in`, `[]` and `.get` are used on them.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dspx_cli.adapters.media import format_conversation, history_name, image_mark, split_image_parts
from dspx_cli.adapters.values import (
    annotation_allows_none,
    describe_error,
    format_field_value,
    parse_value,
    type_placeholder,
)
from dspx_cli.core import Field, Signature, annotation_name
from dspx_cli.core.image_file import ImageFile
from dspx_cli.core.media import is_image
from dspx_cli.errors import AdapterParseError

__all__ = ["ChatAdapter"]

_HEADER_RE = re.compile(r"\[\[ ## (\w+) ## \]\]")
# The chat format's end of reply. Nothing after it is parsed, so local backends stop generating there.
COMPLETED_MARKER = "[[ ## completed ## ]]"
_COMPLETED = COMPLETED_MARKER
INCOMPLETE_DEMO_PREFIX = "This is an example of the task, though some input or output fields are not supplied."
NOT_SUPPLIED = "Not supplied for this particular example. "
NOT_IN_HISTORY = "Not supplied for this conversation history message. "

Message = dict[str, Any]  # content is text, or content parts when a user turn has an image


def _sections(fields: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"[[ ## {name} ## ]]\n{text}" for name, text in fields).strip()


class PerSignature:
    """Results of pure functions of a signature, computed once per signature object.

    Signatures are immutable, so a result stays right for the object it was computed from. The key
    is the object's identity, not equality: equal annotations can print differently (`Optional[int]`
    and `int | None` are equal), and the prompt must show the one the signature was written with.
    Each entry keeps its signature alive, so an id is never reused while its entry exists.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: dict[tuple[int, Any], tuple[Signature, Any]] = {}

    def get(self, signature: Signature, kind: Any, compute: Callable[[Signature], Any]) -> Any:
        key = (id(signature), kind)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is signature:
            return hit[1]
        value = compute(signature)
        if len(self._entries) >= self._size:  # e.g. Refine's hinted signatures, new on every attempt
            self._entries.clear()
        self._entries[key] = (signature, value)
        return value


class ChatAdapter:
    """Formats a signature, demos and inputs into chat messages; parses the LM's reply."""

    def __init__(self) -> None:
        # The system message and the closing reminder depend only on the signature: made once each.
        self._per_signature = PerSignature()

    # ----- the whole prompt ----------------------------------------------------------------------

    def format(
        self, signature: Signature, demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[Message]:
        system = self._per_signature.get(signature, "system", self.format_system_message)
        messages: list[Message] = [{"role": "system", "content": system}]
        messages.extend(self.format_demos(signature, demos))
        history = self._per_signature.get(signature, "history", history_name)
        current = signature
        if history is not None:
            # Past turns and the current input are formatted without the history field; the
            # system message above still lists it, as DSPy's does.
            current = self._per_signature.get(signature, "without_history", lambda s: s.delete(history))
            messages.extend(format_conversation(self, current, inputs.get(history)))
        content = self.format_user_message(current, inputs, main_request=True)
        if content:
            messages.append({"role": "user", "content": content})
        return split_image_parts(messages)

    def format_finetune_data(
        self,
        signature: Signature,
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
    ) -> dict[str, list[Message]]:
        """One chat-format training record: the prompt plus the wanted assistant reply."""
        reply = {"role": "assistant", "content": self.format_assistant_message(signature, outputs)}
        return {"messages": [*self.format(signature, demos, inputs), reply]}

    # ----- system message ------------------------------------------------------------------------

    def format_system_message(self, signature: Signature) -> str:
        return "\n".join(
            (
                self.format_field_description(signature),
                self.format_field_structure(signature),
                self.format_task_description(signature),
            )
        )

    def format_field_description(self, signature: Signature) -> str:
        return (
            f"Your input fields are:\n{_describe_fields(signature.inputs)}\n"
            f"Your output fields are:\n{_describe_fields(signature.outputs)}"
        )

    def format_field_structure(self, signature: Signature) -> str:
        inputs = _sections([(f.name, type_placeholder(f.name, f.annotation, is_input=True)) for f in signature.inputs])
        outputs = _sections(
            [(f.name, type_placeholder(f.name, f.annotation, is_input=False)) for f in signature.outputs]
        )
        parts = [
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            inputs,
            outputs,
            _COMPLETED + "\n",
        ]
        return "\n\n".join(parts).strip()

    def format_task_description(self, signature: Signature) -> str:
        lines = textwrap.dedent(signature.instructions).splitlines()
        # Every line, the first included, starts on its own line indented by eight spaces.
        objective = "".join("\n" + " " * 8 + line for line in lines)
        return f"In adhering to this structure, your objective is: {objective}"

    # ----- user and assistant turns --------------------------------------------------------------

    def format_user_message(
        self,
        signature: Signature,
        inputs: Mapping[str, Any],
        main_request: bool = False,
        prefix: str = "",
        suffix: str = "",
    ) -> str:
        parts = [prefix]
        for f in signature.inputs:
            if f.name in inputs:
                value = inputs.get(f.name)
                if isinstance(value, ImageFile):  # a dataset row's image that reached a prompt unread
                    value = value.data_uri()
                text = image_mark(value) if isinstance(value, str) and is_image(f.annotation) else None
                parts.append(f"[[ ## {f.name} ## ]]\n{text or format_field_value(f.annotation, value)}")
        if main_request:
            parts.append(self._per_signature.get(signature, "requirements", self.user_message_output_requirements))
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: Signature) -> str:
        """The reminder closing the last user turn: which headers, in which order, of which type."""

        def requirement(f: Field) -> str:
            header = f"`[[ ## {f.name} ## ]]`"
            if f.annotation is str:
                return header
            return f"{header} (must be formatted as a valid Python {annotation_name(f.annotation)})"

        fields = ", then ".join(requirement(f) for f in signature.outputs)
        return (
            f"Respond with the corresponding output fields, starting with the field {fields}, "
            f"and then ending with the marker for `{_COMPLETED}`."
        )

    def format_assistant_message(
        self, signature: Signature, outputs: Mapping[str, Any], missing_field_message: str | None = None
    ) -> str:
        sections = _sections(
            [
                (f.name, format_field_value(f.annotation, outputs.get(f.name, missing_field_message)))
                for f in signature.outputs
            ]
        )
        return f"{sections}\n\n{_COMPLETED}\n"

    def format_demos(self, signature: Signature, demos: Sequence[Mapping[str, Any]]) -> list[Message]:
        """Demos as user/assistant pairs: partial ones first (flagged as such), then complete ones.

        A demo lacking every input or every output teaches nothing and is dropped, as in DSPy.
        """
        complete: list[Mapping[str, Any]] = []
        partial: list[Mapping[str, Any]] = []
        for demo in demos:
            if all(name in demo and demo[name] is not None for name in signature.fields):
                complete.append(demo)
            elif any(f.name in demo for f in signature.inputs) and any(f.name in demo for f in signature.outputs):
                partial.append(demo)

        messages: list[Message] = []
        for demo in partial:
            user = self.format_user_message(signature, demo, prefix=INCOMPLETE_DEMO_PREFIX)
            assistant = self.format_assistant_message(signature, demo, missing_field_message=NOT_SUPPLIED)
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        for demo in complete:
            user = self.format_user_message(signature, demo)
            assistant = self.format_assistant_message(signature, demo, missing_field_message=NOT_IN_HISTORY)
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return messages

    # ----- parsing -------------------------------------------------------------------------------

    def parse(self, signature: Signature, completion: str) -> dict[str, Any]:
        """Output fields from `[[ ## name ## ]]` sections (the first section of a name wins)."""
        outputs = signature.output_fields
        parsed: dict[str, Any] = {}
        for name, text in _split_sections(completion):
            if name is None or name in parsed or name not in outputs:
                continue
            annotation = outputs[name].annotation
            try:
                parsed[name] = parse_value(text, annotation)
            except Exception as exc:
                shown = text if len(text) <= 200 else text[:200] + " [...]"
                raise AdapterParseError(
                    f'expected output field "{name}" to be a valid {annotation_name(annotation)}; '
                    f"got {shown!r} ({describe_error(exc)})",
                    lm_response=completion,
                    parsed=parsed,
                ) from exc

        missing = [f for f in signature.outputs if f.name not in parsed]
        if any(not annotation_allows_none(f.annotation) for f in missing):
            required = [f for f in missing if not annotation_allows_none(f.annotation)]
            raise AdapterParseError(_missing_message(required, parsed), lm_response=completion, parsed=parsed)
        # Fields that admit None may be left out by the LM; keep the signature's field order.
        return {f.name: parsed.get(f.name) for f in signature.outputs}


def _describe_fields(fields: tuple[Field, ...]) -> str:
    # An empty description still leaves "name (type): ", and only the block's end is stripped.
    lines = [f"{i}. `{f.name}` ({annotation_name(f.annotation)}): {f.desc}" for i, f in enumerate(fields, start=1)]
    return "\n".join(lines).strip()


def _split_sections(completion: str) -> list[tuple[str | None, str]]:
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in completion.splitlines():
        stripped = line.strip()
        # Most lines are field text: only one that starts like a header is matched against it.
        match = _HEADER_RE.match(stripped) if stripped.startswith("[[") else None
        if match is None:
            sections[-1][1].append(line)
            continue
        # Text after the header on the same line belongs to the field.
        rest = stripped[match.end() :].strip()
        sections.append((match.group(1), [rest] if rest else []))
    return [(name, "\n".join(lines).strip()) for name, lines in sections]


def _missing_message(missing: list[Field], parsed: dict[str, Any]) -> str:
    plural = "s" if len(missing) > 1 else ""
    wanted = ", ".join(f'"{f.name}" ({annotation_name(f.annotation)})' for f in missing)
    if parsed:
        return f"expected output field{plural} {wanted} in the LM reply; got only " + ", ".join(
            f'"{name}"' for name in parsed
        )
    headers = ", ".join(f"[[ ## {f.name} ## ]]" for f in missing)
    return f"expected output field{plural} {wanted} in the LM reply under {headers}; got no output field"
