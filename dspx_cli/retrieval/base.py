"""What every retriever shares: the `Passage` it returns, the `Retriever` protocol, its errors, and
where retrieval indexes live on disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dspx_cli.errors import EXIT_USAGE, DspxError, Location
from dspx_cli.lm.cache import default_cache_dir


class RetrievalError(DspxError):
    """A search failed while running (the embeddings server refused or is unreachable, ...)."""


class CorpusError(RetrievalError):
    """The corpus file is wrong; like a bad dataset file, nothing was run (exit 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.detail = message


@dataclass(frozen=True)
class Passage:
    """One passage of a corpus; a search returns copies with their `score` filled in.

    `text` is what a program sees (DSPy's passage string, "title | text" when the corpus has
    titles); `index` is the passage's position in the corpus, `id` the one the file gave, if any.
    """

    text: str
    index: int
    id: str | int | None = None
    score: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Retriever(Protocol):
    """Finds the `k` passages that best match a query, best first.

    Fewer than `k` come back only when the corpus is smaller than `k`. Indexes are built (or read
    from the cache) on the first search, so constructing a retriever is cheap.
    """

    async def search(self, query: str, k: int) -> list[Passage]: ...

    async def aclose(self) -> None: ...


def retrieval_cache_dir(cache_dir: Path | None, kind: str) -> Path:
    """`<cache>/retrieval/<kind>`, beside the LM response cache (same `--cache-dir`/DSPX_CACHE_DIR)."""
    return (cache_dir or default_cache_dir()).expanduser() / "retrieval" / kind


def check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, not {k!r}")


def write_atomically(target: Path, write: Callable[[Path], None], *, directory: bool = False) -> None:
    """Write `target` through a temporary sibling and a rename, so that a reader (or a process
    killed halfway) never leaves or sees a half-written index. When two processes build the same
    index at once, both results are equal and the last rename wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write(scratch)
            try:
                os.replace(scratch, target)
            except OSError:
                # A directory cannot replace a non-empty one: another process finished first.
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    scratch = Path(name)
    try:
        write(scratch)
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)
