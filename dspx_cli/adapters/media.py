"""Conversation history and image inputs in prompts, as DSPy 3.4.1's adapters format them.

History: each past turn becomes a user message (the turn's input fields, with the closing format
reminder when it has any input) and an assistant message (its output fields), placed after the
demos and before the current input. The history field itself stays in the system message.

Image: the field's section holds a marked URL while the prompt is text; once the messages are
built, each user message holding a mark is split into content parts around it:
text, `{"type": "image_url", "image_url": {"url": ...}}`, text. DSPy marks with fixed strings any
text could contain; dspx's mark carries a random per-process token, so a text input (a dataset
row, a retrieved passage) can never smuggle in an image part.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dspx_cli.core import Signature
from dspx_cli.core.media import history_field, history_value

if TYPE_CHECKING:
    from dspx_cli.adapters.chat import ChatAdapter

__all__ = ["content_text", "format_conversation", "history_name", "image_mark", "split_image_parts"]

_TOKEN = os.urandom(12).hex()  # secrets.token_hex without importing secrets (hmac, hashlib: start-up)
_START = f"\x00image:{_TOKEN}:"
_END = f":{_TOKEN}\x00"
_MARK_RE = re.compile(re.escape(_START) + "(.*?)" + re.escape(_END), re.DOTALL)


def history_name(signature: Signature) -> str | None:
    return history_field((f.name, f.annotation) for f in signature.inputs)


def history_messages(value: Any) -> list[dict[str, Any]]:
    """The turns of a History value (an omitted optional one has none); core/media.py's rule."""
    return [] if value is None else history_value(value)["messages"]


def format_conversation(adapter: ChatAdapter, signature: Signature, value: Any) -> list[dict[str, Any]]:
    """Past turns as user/assistant pairs; `signature` is the one without the history field."""
    messages: list[dict[str, Any]] = []
    for turn in history_messages(value):
        # DSPy keeps the reminder on past user turns (prompt-cache reuse), but an output-only
        # turn gets no user message at all.
        has_input = any(f.name in turn for f in signature.inputs)
        user = adapter.format_user_message(signature, turn, main_request=has_input)
        if user:
            messages.append({"role": "user", "content": user})
        assistant = adapter.format_assistant_message(signature, turn)
        if assistant:
            messages.append({"role": "assistant", "content": assistant})
    return messages


def image_mark(url: str) -> str:
    """The text standing for an image until `split_image_parts` turns it into a content part."""
    return f"{_START}{url}{_END}"


def split_image_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """User messages holding image marks, as content-part lists (others unchanged)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, str) or _START not in content:
            out.append(message)
            continue
        parts: list[dict[str, Any]] = []
        last = 0
        for match in _MARK_RE.finditer(content):
            if match.start() > last:
                parts.append({"type": "text", "text": content[last : match.start()]})
            parts.append({"type": "image_url", "image_url": {"url": match.group(1)}})
            last = match.end()
        if last < len(content):
            parts.append({"type": "text", "text": content[last:]})
        out.append({**message, "content": parts})
    return out


def content_text(content: Any) -> str:
    """A message's content for people to read: text parts as they are, an image as one short line."""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for part in content or []:
        if isinstance(part, Mapping) and part.get("type") == "text":
            pieces.append(str(part.get("text", "")))
        elif isinstance(part, Mapping) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            # A data URI is kilobytes of base64: show its MIME type and size instead.
            shown = f"{url.split(',', 1)[0]},... ({len(url)} chars)" if url.startswith("data:") else url
            pieces.append(f"[image: {shown}]")
        else:
            pieces.append(str(part))
    return "".join(pieces)
