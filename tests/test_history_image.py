"""History and Image inputs: DSPy 3.4.1's messages byte for byte (tests/fixtures/history_image),
the input rules for image files, and the CLI sending content parts to a real loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core import Signature
from dspx_cli.program.media_inputs import MAX_IMAGE_BYTES, MediaError, prepare_media, read_image

FIXTURE = Path(__file__).parent / "fixtures" / "history_image"
GOLDEN = json.loads((FIXTURE / "golden.json").read_text())
CASES = GOLDEN["cases"]


def _value(name: str, raw: Any) -> Any:
    if name == "history":
        return {"messages": raw}
    if isinstance(raw, str) and raw.startswith("image:"):
        return read_image(Path(raw[6:]), FIXTURE, confine=True)
    return raw


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_messages_match_dspy(case: dict[str, Any]) -> None:
    signature = Signature.parse(case["signature"])
    adapter = ChatAdapter() if case["adapter"] == "chat" else JSONAdapter()
    demos = [{k: _value(k, v) for k, v in d.items()} for d in case["demos"]]
    inputs = {k: _value(k, v) for k, v in case["inputs"].items()}
    assert adapter.format(signature, demos, inputs) == case["messages"]


# ----- image files and history values at the input layer ---------------------------------------


def test_image_file_becomes_a_data_uri_and_urls_stay(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    fields = Signature.parse("photo: Image, history: History -> answer").input_fields
    out = prepare_media(fields, {"photo": "a.png", "history": [{"answer": "hi"}]}, tmp_path, confine=True)
    assert out["photo"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert out["history"] == {"messages": [{"answer": "hi"}]}
    for url in ("https://example.com/x.jpg", "data:image/png;base64,AAAA", "gs://bucket/x.png"):
        assert prepare_media(fields, {"photo": url}, tmp_path, confine=True)["photo"] == url
    assert prepare_media(fields, {"photo": {"url": "https://e.com/y.png"}}, tmp_path, confine=True)["photo"] == (
        "https://e.com/y.png"
    )


def test_data_file_images_stay_inside_their_folder(tmp_path: Path) -> None:
    inside = tmp_path / "data"
    inside.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (inside / "link.png").symlink_to(tmp_path / "secret.png")
    (inside / "notes.txt").write_text("not an image")
    fields = Signature.parse("photo: Image -> answer").input_fields
    problems = {
        "../secret.png": "leads outside",
        str(tmp_path / "secret.png"): "absolute path is not allowed",
        "link.png": "leads outside",
        "notes.txt": "not an image file name",
        "missing.png": "no such image file",
        "file:///etc/passwd": "no such image file",
        "ftp://host/x.png": "unsupported URL scheme",
    }
    for value, expected in problems.items():
        with pytest.raises(MediaError, match=expected):
            prepare_media(fields, {"photo": value}, inside, confine=True)
    # A path typed on the command line may go anywhere readable.
    assert read_image(Path("../secret.png"), inside, confine=False).startswith("data:image/png;base64,")


def test_image_size_is_capped(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(MediaError, match="MiB image limit"):
        read_image(Path("big.png"), tmp_path, confine=True)


def test_bad_history_values_are_refused(tmp_path: Path) -> None:
    fields = Signature.parse("history: History, q -> answer").input_fields
    for bad in ({"turns": []}, {"messages": "hi"}, ["not an object"], 3):
        with pytest.raises(MediaError, match="input 'history'"):
            prepare_media(fields, {"history": bad, "q": "x"}, tmp_path, confine=True)


def test_media_types_are_inputs_only() -> None:
    from dspx_cli.errors import SignatureError

    for text in ("q -> a: Image", "h: list[Image] -> a", "h: Optional[History] -> a", "a: History, b: History -> c"):
        with pytest.raises(SignatureError):
            Signature.parse(text)
