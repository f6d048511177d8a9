"""A corpus file read into passages.

Formats, chosen by the file's extension:

- `.jsonl` / `.ndjson`: one JSON object per line; blank lines are skipped. The passage text is
  the `text` key (`text_field` picks another). `id` (a string or an integer) is kept as the
  passage's id and must be unique; every other key, `title` included, is kept as metadata.
  When the object has a non-empty `title` (`title_field`; `None` turns this off), the passage
  reads "title | text", the form DSPy's retrievers (ColBERTv2 over Wikipedia abstracts) give
  programs: the title is often the very word a question names, so it is searched and shown too.
- `.txt`: plain text; passages are separated by one or more blank lines. A passage spanning
  several lines keeps its line breaks. Passages have no id and no metadata.

Anything else is a `CorpusError` (exit 2) naming the file and, when a line is at fault, the line.
`Corpus.digest` is the SHA-256 of the file's bytes and `Corpus.fingerprint` adds how it was read;
indexes built from a corpus are cached under the fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from dspx_cli.core.json_values import json_kind
from dspx_cli.core.jsonl import BadLine, read_objects
from dspx_cli.errors import Location
from dspx_cli.retrieval.base import CorpusError, Passage

__all__ = ["Corpus", "load_corpus"]

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text"}
TITLE_SEPARATOR = " | "


@dataclass(frozen=True)
class Corpus:
    """Passages in file order (`passages[i].index == i`) and where they came from."""

    name: str  # the file as given, for messages
    passages: tuple[Passage, ...]
    digest: str  # SHA-256 of the source bytes
    settings: Mapping[str, Any]  # how the source was read (format, text_field, title_field)

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def texts(self) -> list[str]:
        return [passage.text for passage in self.passages]

    @property
    def fingerprint(self) -> str:
        """Identifies the passages: the same bytes read another way are another corpus."""
        payload = {"digest": self.digest, "settings": dict(self.settings)}
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @classmethod
    def from_texts(cls, texts: Iterable[str], name: str = "<texts>") -> Corpus:
        """A corpus built in code rather than read from a file."""
        passages = tuple(Passage(text=text, index=i) for i, text in enumerate(texts))
        if not passages:
            raise CorpusError(f"{name}: no passages")
        for passage in passages:
            if not isinstance(passage.text, str) or not passage.text.strip():
                raise CorpusError(f"{name}: passage {passage.index} is not a non-empty string")
        digest = hashlib.sha256(orjson.dumps([p.text for p in passages])).hexdigest()
        return cls(name, passages, digest, {"format": "texts"})


def load_corpus(path: str | Path, *, text_field: str = "text", title_field: str | None = "title") -> Corpus:
    path = Path(path)
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CorpusError(
            f"{path}: unknown corpus format {path.suffix or '(no extension)'!r}; expected one of: {', '.join(_FORMATS)}"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: corpus file not found") from None
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, expected a corpus file") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the corpus ({exc.strerror or exc})") from None
    if kind == "jsonl":
        passages = _read_jsonl(path, data, text_field, title_field)
        settings: dict[str, Any] = {"format": kind, "text_field": text_field, "title_field": title_field}
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise CorpusError("not UTF-8 text", Location(path, line)) from None
        passages = _read_text(text)
        settings = {"format": kind}
    if not passages:
        raise CorpusError(f"{path}: no passages (the file is empty)")
    return Corpus(str(path), tuple(passages), hashlib.sha256(data).hexdigest(), settings)


def _read_jsonl(path: Path, data: bytes, text_field: str, title_field: str | None) -> list[Passage]:
    passages: list[Passage] = []
    seen_ids: dict[str | int, int] = {}
    for number, record in read_objects(data):
        where = Location(path, number)
        if isinstance(record, BadLine):
            raise CorpusError(record.problem, where)
        if text_field not in record:
            keys = ", ".join(record) or "none"
            raise CorpusError(
                f"no {text_field!r} field (keys here: {keys}); text_field names the key that holds the passage",
                where,
            )
        body = record[text_field]
        if not isinstance(body, str):
            raise CorpusError(f"{text_field!r} is {json_kind(body)}, expected a string", where)
        if not body.strip():
            raise CorpusError(f"{text_field!r} is empty", where)
        passage_id = record.get("id")
        if passage_id is not None:
            if isinstance(passage_id, bool) or not isinstance(passage_id, str | int):
                raise CorpusError(f"'id' is {json_kind(passage_id)}, expected a string or an integer", where)
            if passage_id in seen_ids:
                raise CorpusError(f"duplicate id {passage_id!r} (first on line {seen_ids[passage_id]})", where)
            seen_ids[passage_id] = number
        shown = body
        title = record.get(title_field) if title_field else None
        if title is not None:
            if not isinstance(title, str):
                raise CorpusError(f"{title_field!r} is {json_kind(title)}, expected a string", where)
            if title.strip():
                shown = f"{title.strip()}{TITLE_SEPARATOR}{body}"
        metadata = {key: value for key, value in record.items() if key not in (text_field, "id")}
        passages.append(Passage(text=shown, index=len(passages), id=passage_id, metadata=metadata))
    return passages


def _read_text(text: str) -> list[Passage]:
    passages: list[Passage] = []
    block: list[str] = []
    for line in [*text.split("\n"), ""]:  # the sentinel ends the last block
        if line.strip():
            block.append(line.rstrip())
        elif block:
            passages.append(Passage(text="\n".join(block).strip(), index=len(passages)))
            block = []
    return passages
