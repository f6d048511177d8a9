"""History and Image inputs: DSPy 3.4.1's messages byte for byte (tests/fixtures/history_image),
the input rules for image files, and the CLI sending content parts to a real loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.adapters import ChatAdapter, JSONAdapter
from dspx_cli.core import Signature
from dspx_cli.program.media_inputs import MAX_IMAGE_BYTES, ImageFile, MediaError, prepare_media, read_image

FIXTURE = Path(__file__).parent / "fixtures" / "history_image"
GOLDEN = json.loads((FIXTURE / "golden.json").read_text())
CASES = GOLDEN["cases"]
PREDICT_CASES = [c for c in CASES if "module" not in c]
MODULE_CASES = [c for c in CASES if "module" in c]


def _value(name: str, raw: Any) -> Any:
    if name == "history":
        return {"messages": raw}
    if isinstance(raw, str) and raw.startswith("image:"):
        return read_image(Path(raw[6:]), FIXTURE, confine=True)
    return raw


@pytest.mark.parametrize("case", PREDICT_CASES, ids=[c["id"] for c in PREDICT_CASES])
def test_messages_match_dspy(case: dict[str, Any]) -> None:
    signature = Signature.parse(case["signature"])
    adapter = ChatAdapter() if case["adapter"] == "chat" else JSONAdapter()
    demos = [{k: _value(k, v) for k, v in d.items()} for d in case["demos"]]
    inputs = {k: _value(k, v) for k, v in case["inputs"].items()}
    assert adapter.format(signature, demos, inputs) == case["messages"]


@pytest.mark.parametrize("case", MODULE_CASES, ids=[c["id"] for c in MODULE_CASES])
def test_module_messages_match_dspy(case: dict[str, Any], tmp_path: Path) -> None:
    """A ChainOfThought with a History input, through the CLI (`dspx inspect --json`)."""
    from tests.cli_inprocess import dspx

    program = tmp_path / "p.yaml"
    program.write_text(
        f"modules:\n  m:\n    type: {case['module']}\n    adapter: {case['adapter']}\n"
        f"    signature: '{case['signature']}'\n"
    )
    args = [a for k, v in case["inputs"].items() for a in ("-i", f"{k}={v if isinstance(v, str) else json.dumps(v)}")]
    done = dspx("inspect", str(program), *args, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["messages"] == case["messages"]


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


# ----- the CLI, against the real loopback server -------------------------------------------------

VISION = """\
lm: {model: openai/test-model, api_base: "${BASE}", api_key: x}
modules:
  look:
    signature: "question: str, history: History, photo: Image -> answer: str"
"""


def _vision_program(tmp_path: Path) -> Path:
    path = tmp_path / "vision.yaml"
    path.write_text(VISION)
    (tmp_path / "dot.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    (tmp_path / "turns.json").write_text(json.dumps({"messages": [{"question": "Hi?", "answer": "Hello."}]}))
    return path


def test_cli_sends_history_turns_and_image_parts(lm_server: Any, tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    program = _vision_program(tmp_path)
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nA green dot.\n\n[[ ## completed ## ]]"
    args = ["-i", "question=What is it?", "-i", "history=@turns.json", "-i", "photo=dot.png"]
    done = dspx("run", str(program), *args, "--no-cache", "--json", cwd=tmp_path, BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "A green dot."
    messages = lm_server.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"].startswith("[[ ## question ## ]]\nHi?\n\nRespond with")
    assert messages[2]["content"] == "[[ ## answer ## ]]\nHello.\n\n[[ ## completed ## ]]\n"
    parts = messages[3]["content"]
    assert parts[0] == {"type": "text", "text": "[[ ## question ## ]]\nWhat is it?\n\n[[ ## photo ## ]]\n"}
    assert parts[1]["type"] == "image_url"
    image = dict(CASES[[c["id"] for c in CASES].index("image_file_chat")]["messages"][1]["content"][1])
    assert parts[1] == image  # the same data URI DSPy sends for this file
    assert parts[2]["text"].startswith("\n\nRespond with the corresponding output fields")

    # Content parts are a fine cache key: the same call again is answered from the disk cache.
    cache = {"DSPX_CACHE_DIR": str(tmp_path / "cache"), "BASE": lm_server.api_base}
    for _ in range(2):
        done = dspx("run", str(program), *args, "--json", cwd=tmp_path, **cache)
        assert done.returncode == 0, done.stderr
    assert len(lm_server.requests) == 2
    shown = dspx("inspect", str(program), *args, cwd=tmp_path, BASE=lm_server.api_base)
    assert "[[ ## photo ## ]]\n[image: data:image/png;base64,... (114 chars)]\n" in shown.stdout


def test_cli_image_and_history_mistakes_are_one_line_errors(lm_server: Any, tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    program = _vision_program(tmp_path)
    base = ["-i", "question=q", "-i", 'history={"messages": []}']
    for extra, fragment in (
        (["-i", "photo=missing.png"], "no such image file"),
        (["-i", "photo=turns.json"], "not an image file name"),
    ):
        done = dspx("run", str(program), *base, *extra, "--no-cache", cwd=tmp_path, BASE=lm_server.api_base)
        assert done.returncode == 2, done.stderr
        assert fragment in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    done = dspx("run", str(program), "-i", "question=q", "-i", "history=[1]", "-i", "photo=dot.png", cwd=tmp_path)
    assert done.returncode == 2 and "expected each History message to be an object" in done.stderr
    assert not lm_server.requests


def test_dataset_images_are_read_beside_the_data_file(tmp_path: Path) -> None:
    from dspx_cli.evaluate.datasets import load_examples, load_rows
    from dspx_cli.program.loader import load_program

    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "dot.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    rows = [
        {"photo": "img/dot.png", "history": [], "answer": "dot"},
        {"photo": "../vision.yaml", "history": [], "answer": "x"},
    ]
    (data / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    program_path = tmp_path / "vision.yaml"
    program_path.write_text(
        "modules:\n  look:\n    signature: 'history: History, photo: Image -> answer: str'\ndata:\n  dev: data/dev.jsonl\n"
    )
    program = load_program(program_path)
    good, bad = load_rows(program)
    # Checked, kept as a reference to the file (its bytes are read when the example runs).
    photo = good.photo  # type: ignore[union-attr]
    assert isinstance(photo, ImageFile) and str(photo) == "img/dot.png"
    assert photo.data_uri() == read_image(Path("dot.png"), FIXTURE, confine=True)
    assert good.history == {"messages": []}  # type: ignore[union-attr]
    assert "dev.jsonl:2" in str(bad) and "leads outside" in str(bad)
    with pytest.raises(Exception, match="leads outside"):
        load_examples(program)


def test_local_models_refuse_images_in_one_line(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    program = _vision_program(tmp_path)
    args = ["-i", "question=q", "-i", "history=[]", "-i", "photo=dot.png", "--no-cache"]
    done = dspx("run", str(program), *args, "--lm", "local/smollm2", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: local/smollm2 takes text only and this prompt has an image input; "
        "use a vision model behind an OpenAI-compatible API (e.g. --lm openai/gpt-4o-mini)"
    )


def test_program_file_demos_with_images_match_dspy(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    case = CASES[[c["id"] for c in CASES].index("image_demos_chat")]
    (tmp_path / "dot.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    demos = "".join(
        f"      - {{photo: {d['photo'].removeprefix('image:')}, caption: {d['caption']}}}\n" for d in case["demos"]
    )
    program = tmp_path / "demos.yaml"
    program.write_text(f"modules:\n  look:\n    signature: 'photo: Image -> caption'\n    demos:\n{demos}")
    done = dspx("inspect", str(program), "-i", "photo=dot.png", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["messages"] == case["messages"]

    (tmp_path / "sub").mkdir()
    program.rename(tmp_path / "sub" / "demos.yaml")
    done = dspx("validate", str(tmp_path / "sub" / "demos.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "demos.yaml:6:" in done.stderr and "no such image file" in done.stderr
    (tmp_path / "sub" / "dot.png").symlink_to(tmp_path / "dot.png")
    done = dspx("validate", str(tmp_path / "sub" / "demos.yaml"), cwd=tmp_path)
    assert done.returncode == 2 and "leads outside" in done.stderr


def test_an_image_counts_as_a_thousand_tokens_when_pacing() -> None:
    from dspx_cli.lm.base import LMRequest
    from dspx_cli.lm.limits import estimate_tokens

    huge = "data:image/png;base64," + "A" * 400_000
    parts = [{"type": "text", "text": "x" * 40}, {"type": "image_url", "image_url": {"url": huge}}]
    assert estimate_tokens(LMRequest(({"role": "user", "content": parts},))) == 10 + 4 + 1000


def test_batch_rows_read_images_inside_the_working_directory(lm_server: Any, tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    program = _vision_program(tmp_path)
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"
    rows = [
        {"question": "a", "history": [], "photo": "dot.png"},
        {"question": "b", "history": [], "photo": "/etc/hostname.png"},
        {
            "question": "c",
            "history": {"messages": [{"question": "q0", "answer": "a0"}]},
            "photo": "https://e.com/x.png",
        },
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in rows)
    done = dspx("run", str(program), "--batch", "-", "-j", "1", input=stdin, cwd=tmp_path, BASE=lm_server.api_base)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0] == {"answer": "ok"} and records[2] == {"answer": "ok"}
    assert records[1]["error"]["line"] == 2 and "absolute path is not allowed" in records[1]["error"]["message"]
    first, last = (r.body["messages"] for r in lm_server.requests)
    assert first[-1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
    assert last[-1]["content"][1] == {"type": "image_url", "image_url": {"url": "https://e.com/x.png"}}
