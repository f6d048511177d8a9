"""Image and History input values made ready for the adapters.

An `Image` input may be an http(s)/gs URL or a `data:` URI (kept as given, as DSPy keeps them),
`{"url": ...}` (DSPy's legacy form), or a local file path, sent as a base64 data URI with the
file's image MIME type. Where a path is looked up, and what it may reach:

- `-i photo=cat.png`: relative to the working directory; any readable path (the user typed it).
- a dataset or --batch row: relative to the dataset file (the working directory for --batch),
  and only inside that directory: an absolute path, `..` or a symlink leading out is refused,
  so a data file from elsewhere cannot make dspx send, say, ~/.ssh/id_rsa to an LM provider.

Either way the file's name must have an image extension (image/* by `mimetypes`) and the file
at most MAX_IMAGE_BYTES. `prepare_media` reads the file now (the command line's inputs, a
--batch row about to run, a program file's demos); with `lazy=True` (dataset rows) it only checks
it and keeps an `ImageFile` (core/image_file.py), read when the example runs (`resolve_images`).
A `History` input is `{"messages": [...]}` or a bare list of messages (core/media.py
`history_value` owns that rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dspx_cli.core import Example, Field
from dspx_cli.core.image_file import MAX_IMAGE_BYTES, ImageFile, MediaError, read_image
from dspx_cli.core.media import Image, history_value, media_annotation

__all__ = [
    "MAX_IMAGE_BYTES",
    "ImageFile",
    "MediaError",
    "example_with_images_read",
    "prepare_media",
    "read_image",
    "resolve_images",
]


def prepare_media(
    fields: Mapping[str, Field],
    values: Mapping[str, Any],
    base: Path,
    *,
    confine: bool,
    lazy: bool = False,
    where: str | None = None,
) -> dict[str, Any]:
    """`values` with Image inputs as URLs or data URIs and History inputs as `{"messages": [...]}`.

    With `lazy`, an image file stays an `ImageFile` (checked, not read); `where` (the row's
    `file:line`) prefixes the error if it cannot be read when the example runs."""
    out = dict(values)
    for name, f in fields.items():
        kind = media_annotation(f.annotation)
        if kind is None or name not in out or out[name] is None:
            continue
        try:
            if kind is Image:
                label = f"{where}: input {name!r}" if where else f"input {name!r}"
                out[name] = _image(out[name], base, confine, label if lazy else None)
            else:
                out[name] = _history(out[name])
        except MediaError as exc:
            raise MediaError(f"input {name!r}: {exc}") from None
    return out


def resolve_images(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with each `ImageFile` read into its data URI (MediaError when it no longer can be)."""
    return {name: v.data_uri() if isinstance(v, ImageFile) else v for name, v in values.items()}


def example_with_images_read(example: Example) -> Example:
    """`example` itself, or a copy (same input keys) with its image files read into data URIs:
    what user code (a Python metric) is given, so it sees the string a row's image always was."""
    if not any(isinstance(value, ImageFile) for value in example.values()):
        return example
    return example.copy(**resolve_images(dict(example.items())))


def _history(value: Any) -> dict[str, Any]:
    try:
        return history_value(value)
    except ValueError as exc:
        raise MediaError(str(exc)) from None


def _image(value: Any, base: Path, confine: bool, lazy_where: str | None) -> str | ImageFile:
    """A URL or data URI as given; a file's data URI, or with `lazy_where` its checked ImageFile."""
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
    if lazy_where is not None:
        return ImageFile(text, base, confine, lazy_where)
    return read_image(Path(text), base, confine)
