"""Image and History input values made ready for the adapters.

An `Image` input may be an http(s)/gs URL or a `data:` URI (kept as given, as DSPy keeps them),
`{"url": ...}` (DSPy's legacy form), or a local file path, read here and sent as a base64 data
URI with the file's image MIME type. Where a path is looked up, and what it may reach:

- `-i photo=cat.png`: relative to the working directory; any readable path (the user typed it).
- a dataset or --batch row: relative to the dataset file (the working directory for --batch),
  and only inside that directory: an absolute path, `..` or a symlink leading out is refused,
  so a data file from elsewhere cannot make dspx send, say, ~/.ssh/id_rsa to an LM provider.

Either way the file's name must have an image extension (image/* by `mimetypes`) and the file
at most MAX_IMAGE_BYTES. A `History` input is `{"messages": [...]}` or a bare list of messages
(core/media.py `history_value` owns that rule).
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dspx_cli.core import Field
from dspx_cli.core.media import Image, history_value, media_annotation

__all__ = ["MAX_IMAGE_BYTES", "MediaError", "prepare_media", "read_image"]

# OpenAI's and Anthropic's per-image limits are about 20 MB and 5 MB; 20 MiB bounds memory.
MAX_IMAGE_BYTES = 20 * 2**20


class MediaError(ValueError):
    """An image or history value that cannot be used; the message names the problem."""


def prepare_media(
    fields: Mapping[str, Field], values: Mapping[str, Any], base: Path, *, confine: bool
) -> dict[str, Any]:
    """`values` with Image inputs as URLs or data URIs and History inputs as `{"messages": [...]}`."""
    out = dict(values)
    for name, f in fields.items():
        kind = media_annotation(f.annotation)
        if kind is None or name not in out or out[name] is None:
            continue
        try:
            out[name] = _image(out[name], base, confine) if kind is Image else _history(out[name])
        except MediaError as exc:
            raise MediaError(f"input {name!r}: {exc}") from None
    return out


def _history(value: Any) -> dict[str, Any]:
    try:
        return history_value(value)
    except ValueError as exc:
        raise MediaError(str(exc)) from None


def _image(value: Any, base: Path, confine: bool) -> str:
    if isinstance(value, Mapping) and set(value) == {"url"}:
        value = value["url"]
    if not isinstance(value, str) or not value.strip():
        raise MediaError("expected an image file path, an http(s) URL or a data: URI")
    text = value.strip()
    if text.startswith("data:"):
        if "," not in text:
            raise MediaError("a data: URI needs a MIME type and a payload, as in data:image/png;base64,...")
        return text
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https", "gs") and parsed.netloc:
        return text
    if parsed.scheme and len(parsed.scheme) > 1 and parsed.scheme not in ("file",):
        raise MediaError(f"unsupported URL scheme {parsed.scheme!r}; expected http, https, gs, data: or a file path")
    return read_image(Path(text), base, confine)


def read_image(path: Path, base: Path, confine: bool) -> str:
    """A local image file as a data URI, with the rules in this module's docstring."""
    if confine and path.is_absolute():
        raise MediaError(f"{path}: an absolute path is not allowed here; name a file inside {base}")
    full = path if path.is_absolute() else base / path
    try:
        resolved = full.resolve(strict=True)
    except (OSError, RuntimeError):
        raise MediaError(f"{full}: no such image file") from None
    if confine and not resolved.is_relative_to(base.resolve()):
        raise MediaError(f"{path}: leads outside {base}; images from a data file must be inside its folder")
    if not resolved.is_file():
        raise MediaError(f"{full}: not a regular file")
    mime, _ = mimetypes.guess_type(resolved.name)
    if mime is None or not mime.startswith("image/"):
        raise MediaError(f"{full}: not an image file name (expected .png, .jpg, .jpeg, .gif, .webp, ...)")
    size = resolved.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise MediaError(f"{full}: {size} bytes, more than the {MAX_IMAGE_BYTES // 2**20} MiB image limit")
    data = resolved.read_bytes()[: MAX_IMAGE_BYTES + 1]
    if len(data) > MAX_IMAGE_BYTES:  # grew since stat
        raise MediaError(f"{full}: more than the {MAX_IMAGE_BYTES // 2**20} MiB image limit")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
