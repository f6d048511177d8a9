"""A local image file named by an `Image` input: checked when named, read when a request is built.

A dataset of 10,000 rows naming 4 MiB images would hold ~55 GB of base64 if every row's image
were read when the file loads. Instead a row keeps an `ImageFile`: the path as written plus what
`stat` said (no byte read). Its bytes become a data URI only when a request that sends it is built
(`data_uri`), so memory follows the examples in flight, not the dataset's size; a small cache
shares the data URI of a file many rows name while it is in use.

At use every check runs again (a symlink swapped to lead outside the folder is still refused) and
the file must be the one that was checked: same size, modification time and inode. The file is
opened without following a symlink or blocking (a FIFO swapped in after the checks), and the open
file itself is checked before a byte is read, so the path cannot be swapped between check and read. A file deleted
or changed since is a `MediaError` for the example that sends it, naming the row; the others run.

`str(ImageFile)` is the path as written, which is what examples.jsonl and reports record (they
write inputs with `default=str`), never the multi-MB data URI. Digests of a dataset (the evaluate
run's `dataset_sha256`, the finetune run folder's name) use `fingerprint_text`: the path with the
size and modification time checked at load, so an image edited in place changes them.
"""

from __future__ import annotations

import base64
import errno
import mimetypes
import os
import threading
from collections import OrderedDict
from pathlib import Path
from stat import S_ISREG

__all__ = ["MAX_IMAGE_BYTES", "ImageFile", "MediaError", "data_uri_cache_clear", "fingerprint_text"]

# OpenAI's and Anthropic's per-image limits are about 20 MB and 5 MB; 20 MiB bounds memory.
MAX_IMAGE_BYTES = 20 * 2**20
# Data URIs kept for reuse, in characters: a handful of large images, whatever the dataset's size.
_CACHE_CHARS = 64 * 2**20


class MediaError(ValueError):
    """An image or history value that cannot be used; the message names the problem."""


class ImageFile:
    """A checked local image file; `where` names the row it came from, for errors at use."""

    __slots__ = ("base", "confine", "mime", "resolved", "stamp", "where", "written")

    def __init__(self, written: str, base: Path, confine: bool, where: str | None = None) -> None:
        self.written = written
        self.base = base
        self.confine = confine
        self.where = where
        self.resolved, self.mime, stat = _check(Path(written), base, confine)
        self.stamp = _stamp(stat)

    def __str__(self) -> str:
        return self.written

    def __repr__(self) -> str:
        return f"ImageFile({self.written!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageFile):
            return NotImplemented
        return (self.resolved, self.stamp) == (other.resolved, other.stamp)

    def __hash__(self) -> int:
        return hash((self.resolved, self.stamp))

    def fingerprint(self) -> str:
        """The path and the checked file's size and modification time, for digests of a dataset:
        an image edited in place is other data, yet no byte is read (stat said it at load)."""
        return f"{self.written} ({self.stamp[2]} bytes, mtime_ns {self.stamp[3]})"

    def data_uri(self) -> str:
        """The file's bytes as `data:<mime>;base64,...`, or a MediaError naming the row."""
        try:
            return self._data_uri()
        except MediaError as exc:
            raise MediaError(f"{self.where}: {exc}" if self.where else str(exc)) from None

    def _data_uri(self) -> str:
        resolved, mime, stat = _check(Path(self.written), self.base, self.confine)
        if _stamp(stat) != self.stamp:
            raise MediaError(f"{self.written}: changed since it was checked; run again on the new file")
        key = (str(resolved), self.stamp)
        cached = _cache_get(key)
        if cached is not None:
            return cached
        data = _read_checked(resolved, self.written, self.stamp)
        if len(data) != self.stamp[2]:  # written to since fstat
            raise MediaError(f"{self.written}: changed since it was checked; run again on the new file")
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        _cache_put(key, uri)
        return uri


def _read_checked(resolved: Path, written: str, stamp: tuple[int, int, int, int]) -> bytes:
    """The bytes of the very file that was checked. The path can be swapped between the check and
    the open: O_NOFOLLOW refuses a symlink put there (it could lead outside the folder), O_NONBLOCK
    keeps a FIFO put there from blocking the open, and the open file itself must be a regular file
    with the checked stamp (device, inode, size, mtime) before a byte is read."""
    changed = f"{written}: changed since it was checked; run again on the new file"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink where the checked file was
            raise MediaError(changed) from None
        raise MediaError(f"{written}: cannot read the image ({exc.strerror or exc})") from None
    try:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode) or _stamp(stat) != stamp:
            raise MediaError(changed)
        chunks: list[bytes] = []
        left = MAX_IMAGE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise MediaError(f"{written}: cannot read the image ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def fingerprint_text(value: object) -> str:
    """`json.dumps(..., default=fingerprint_text)` for a digest: an ImageFile's fingerprint, else str."""
    return value.fingerprint() if isinstance(value, ImageFile) else str(value)


def read_image(path: Path, base: Path, confine: bool) -> str:
    """A local image file as a data URI, read now (the command line's few inputs, demos)."""
    return ImageFile(str(path), base, confine).data_uri()


def _check(path: Path, base: Path, confine: bool) -> tuple[Path, str, os.stat_result]:
    """The resolved file, its MIME type and stat, once every rule holds; no byte is read."""
    if confine and path.is_absolute():
        raise MediaError(f"{path}: an absolute path is not allowed here; name a file inside {base}")
    full = path if path.is_absolute() else base / path
    try:
        resolved = full.resolve(strict=True)
    except (OSError, RuntimeError):
        raise MediaError(f"{full}: no such image file") from None
    if confine and not resolved.is_relative_to(base.resolve()):
        raise MediaError(f"{path}: leads outside {base}; images from a data file must be inside its folder")
    try:
        stat = resolved.stat()
    except OSError:
        raise MediaError(f"{full}: no such image file") from None
    if not S_ISREG(stat.st_mode):  # from this one stat: is_file() would be another look
        raise MediaError(f"{full}: not a regular file")
    mime, _ = mimetypes.guess_type(resolved.name)
    if mime is None or not mime.startswith("image/"):
        raise MediaError(f"{full}: not an image file name (expected .png, .jpg, .jpeg, .gif, .webp, ...)")
    if stat.st_size > MAX_IMAGE_BYTES:
        raise MediaError(f"{full}: {stat.st_size} bytes, more than the {MAX_IMAGE_BYTES // 2**20} MiB image limit")
    return resolved, mime, stat


def _stamp(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a file from its replacement without reading it."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


# ----- the shared data URIs ---------------------------------------------------------------------

_cache: OrderedDict[tuple[str, tuple[int, int, int, int]], str] = OrderedDict()
_cache_chars = 0
_lock = threading.Lock()  # requests are built on the event loop, but a sync step may run elsewhere


def _cache_get(key: tuple[str, tuple[int, int, int, int]]) -> str | None:
    with _lock:
        uri = _cache.get(key)
        if uri is not None:
            _cache.move_to_end(key)
        return uri


def _cache_put(key: tuple[str, tuple[int, int, int, int]], uri: str) -> None:
    global _cache_chars
    if len(uri) > _CACHE_CHARS:
        return
    with _lock:
        if key in _cache:
            return
        _cache[key] = uri
        _cache_chars += len(uri)
        while _cache_chars > _CACHE_CHARS:
            _, dropped = _cache.popitem(last=False)
            _cache_chars -= len(dropped)


def data_uri_cache_clear() -> None:
    """Forget the shared data URIs (tests measuring memory start from nothing)."""
    global _cache_chars
    with _lock:
        _cache.clear()
        _cache_chars = 0
