"""A dataset's image files: checked when it loads, read when their example runs (core/image_file.py).

The memory test runs a real `dspx evaluate` against the loopback LM server in a process whose
address space is capped below what reading every row's image at load would take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core.image_file import ImageFile, data_uri_cache_clear
from dspx_cli.program.media_inputs import MediaError, read_image

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "history_image"

PROGRAM = """\
lm: {model: openai/test-model, api_base: "${BASE}", api_key: x}
modules:
  look:
    signature: "question: str, photo: Image -> answer: str"
data:
  dev: data/dev.jsonl
metric: exact_match
"""

ANSWER = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"

# Imports first (the modules are not what is measured), then caps the address space and loads the
# dataset under tracemalloc, then runs `dspx evaluate` in the same capped process.
DRIVER = """\
import resource, sys, tracemalloc
from pathlib import Path
from dspx_cli.cli.app import app
from dspx_cli.evaluate.datasets import load_examples
from dspx_cli.program.loader import load_program

def address_space():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

limit = address_space() + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
program = load_program(Path(sys.argv[2]))
tracemalloc.start()
examples = load_examples(program, "dev")
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(len(examples), peak, flush=True)
del examples
app(args=sys.argv[3:], prog_name="dspx")
"""


def _dataset(tmp_path: Path, rows: int, images: dict[str, bytes]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for name, content in images.items():
        (data / name).write_bytes(content)
    names = list(images)
    lines = [{"question": f"q{i}", "photo": names[i % len(names)], "answer": "ok"} for i in range(rows)]
    (data / "dev.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    program = tmp_path / "vision.yaml"
    program.write_text(PROGRAM)
    return program


def _image_url(request: Any) -> str:
    return str(request.body["messages"][-1]["content"][1]["image_url"]["url"])


def test_a_dataset_of_big_images_loads_in_bounded_memory(lm_server: Any, tmp_path: Path) -> None:
    """300 rows naming three 4 MiB images: read at load, their data URIs alone would be ~1.7 GB;
    the process has 768 MiB of address space beyond its imports, and the load itself is measured."""
    images = {f"img{i}.png": bytes([i]) * (4 * 2**20) for i in range(3)}
    program = _dataset(tmp_path, 300, images)
    lm_server.responder = lambda body: ANSWER
    out = tmp_path / "run"
    args = ["evaluate", str(program), "-j", "2", "--limit", "6", "--no-cache", "--output", str(out)]
    env = {**os.environ, "BASE": lm_server.api_base, "NO_COLOR": "1", "MALLOC_ARENA_MAX": "2"}
    env.pop("DSPX_LM", None)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(768 * 2**20), str(program), *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows, peak = map(int, done.stdout.splitlines()[0].split())
    assert rows == 300
    assert peak < 8 * 2**20, f"loading 300 rows took {peak} bytes"  # references, not image bytes

    # The examples ran and sent each row's image, byte for byte as read now.
    assert len(lm_server.requests) == 6
    sent = [
        _image_url(r) for r in sorted(lm_server.requests, key=lambda r: r.body["messages"][-1]["content"][0]["text"])
    ]
    expected = [read_image(Path(f"img{i % 3}.png"), tmp_path / "data", confine=True) for i in range(6)]
    assert sent == expected
    # The run folder records the path as written, not megabytes of base64.
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["inputs"]["photo"] for r in records] == [f"img{i % 3}.png" for i in range(6)]
    assert all(r["error"] is None and r["score"] == 1.0 for r in records)
    assert (out / "examples.jsonl").stat().st_size < 10_000


def test_validate_checks_every_rows_image_without_reading_it(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    program = _dataset(tmp_path, 3, {"a.png": b"\x89PNG"})
    data = tmp_path / "data"
    assert dspx("validate", str(program), cwd=tmp_path).returncode == 0
    # An unreadable file that passes stat's checks validates: its bytes are read only to send it.
    (data / "a.png").chmod(0)
    try:
        if not os.access(data / "a.png", os.R_OK):  # (root reads everything)
            assert dspx("validate", str(program), cwd=tmp_path).returncode == 0
    finally:
        (data / "a.png").chmod(0o644)
    for photo, fragment in (
        ("missing.png", "no such image file"),
        ("../vision.yaml", "leads outside"),
        ("big.png", "MiB image limit"),
    ):
        with (data / "big.png").open("wb") as handle:
            handle.truncate(20 * 2**20 + 1)
        rows = [{"question": "a", "photo": "a.png", "answer": "ok"}, {"question": "b", "photo": photo, "answer": "x"}]
        (data / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        done = dspx("validate", str(program), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "dev.jsonl:2:" in done.stderr and fragment in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_an_image_deleted_or_changed_after_loading_cannot_be_read(tmp_path: Path) -> None:
    from dspx_cli.evaluate.datasets import load_rows
    from dspx_cli.program.loader import load_program

    images = {name: (FIXTURE / "dot.png").read_bytes() for name in ("keep.png", "gone.png", "grown.png", "moved.png")}
    program = _dataset(tmp_path, 4, images)
    data = tmp_path / "data"
    examples = load_rows(load_program(program))
    (data / "gone.png").unlink()
    with (data / "grown.png").open("ab") as handle:
        handle.write(b"more")
    (data / "moved.png").unlink()
    (tmp_path / "outside.png").write_bytes(b"x")
    (data / "moved.png").symlink_to(tmp_path / "outside.png")  # swapped for a link out of the folder
    for example, fragment in zip(examples[1:], ("no such image file", "changed since", "leads outside"), strict=True):
        with pytest.raises(MediaError, match=fragment) as caught:
            example.photo.data_uri()  # type: ignore[union-attr]
        assert "dev.jsonl:" in str(caught.value) and "input 'photo'" in str(caught.value)
    assert examples[0].photo.data_uri() == read_image(Path("keep.png"), data, confine=True)  # type: ignore[union-attr]


def test_evaluate_reports_a_vanished_image_as_that_examples_error(lm_server: Any, tmp_path: Path) -> None:
    """Through `dspx evaluate`: the file goes after the dataset loaded (the first example's call)."""
    from tests.cli_inprocess import dspx

    images = {name: (FIXTURE / "dot.png").read_bytes() for name in ("a.png", "b.png")}
    program = _dataset(tmp_path, 4, images)
    data = tmp_path / "data"

    def answer(body: dict[str, Any]) -> str:
        (data / "b.png").unlink(missing_ok=True)  # every example was loaded before the first call
        return ANSWER

    lm_server.responder = answer
    out = tmp_path / "run"
    done = dspx(
        "evaluate", str(program), "-j", "1", "--no-cache", "--output", str(out), cwd=tmp_path, BASE=lm_server.api_base
    )
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["error"] is None for r in records] == [True, False, True, False], done.stderr
    assert "dev.jsonl:2: input 'photo'" in records[1]["error"] and "no such image file" in records[1]["error"]
    assert records[1]["inputs"]["photo"] == "b.png"
    assert len(lm_server.requests) == 2


def test_a_file_many_rows_name_is_shared_while_in_use(tmp_path: Path) -> None:
    data_uri_cache_clear()
    (tmp_path / "a.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    first, second = ImageFile("a.png", tmp_path, True), ImageFile("./a.png", tmp_path, True)
    assert str(second) == "./a.png"  # as written, for examples.jsonl
    assert first.data_uri() is second.data_uri()  # one string, not one per row
    data_uri_cache_clear()


PHOTO_METRIC = """\
import json

def photo_is_its_data_uri(example, prediction):
    photo = example["photo"]
    json.dumps(photo)
    return isinstance(photo, str) and photo.startswith("data:image/png;base64,") and photo == example.photo
"""


def test_a_python_metric_sees_the_data_uri_string_not_an_image_file(lm_server: Any, tmp_path: Path) -> None:
    """User code gets what it got when rows were read at load: the data URI, a str."""
    from tests.cli_inprocess import dspx

    program = _dataset(tmp_path, 2, {"a.png": (FIXTURE / "dot.png").read_bytes()})
    program.write_text(PROGRAM.replace("metric: exact_match", 'metric: {python: "metrics.py:photo_is_its_data_uri"}'))
    (tmp_path / "metrics.py").write_text(PHOTO_METRIC)
    lm_server.responder = lambda body: ANSWER
    out = tmp_path / "run"
    done = dspx("evaluate", str(program), "--no-cache", "--output", str(out), cwd=tmp_path, BASE=lm_server.api_base)
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [(r["error"], r["score"]) for r in records] == [(None, 1.0), (None, 1.0)], done.stderr
    assert records[0]["inputs"]["photo"] == "a.png"  # the report still records the path


def _edit_in_place(image: Path) -> None:
    """Other pixels at the same path and size; a modification time no earlier filesystem tick shares."""
    before = image.stat()
    image.write_bytes(image.read_bytes()[:-1] + b"\x01")
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_the_evaluate_dataset_digest_changes_when_an_image_is_edited_in_place(lm_server: Any, tmp_path: Path) -> None:
    """`dspx compare` tells runs over different data apart by dataset_sha256: an edited image is."""
    from tests.cli_inprocess import dspx

    program = _dataset(tmp_path, 2, {"a.png": (FIXTURE / "dot.png").read_bytes()})
    lm_server.responder = lambda body: ANSWER

    def digest(out: str) -> str:
        done = dspx("evaluate", str(program), "--no-cache", "--output", out, cwd=tmp_path, BASE=lm_server.api_base)
        assert done.returncode == 0, done.stderr
        return str(json.loads((tmp_path / out / "summary.json").read_text())["dataset_sha256"])

    first, again = digest("one"), digest("two")
    _edit_in_place(tmp_path / "data" / "a.png")
    assert first == again != digest("three")


FINETUNE_PROGRAM = """\
lm: {model: openai/test-model, api_base: "${BASE}", api_key: x, num_retries: 0}
modules:
  look:
    signature: "photo: Image -> answer: str"
data:
  train: data/train.jsonl
metric: exact_match
"""


def test_a_finetune_run_folder_changes_when_a_training_image_is_edited_in_place(lm_server: Any, tmp_path: Path) -> None:
    """The trainset's hash names the run folder: an edited image must not reuse the old train.jsonl."""
    from tests.cli_inprocess import dspx

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    (data / "train.jsonl").write_text(json.dumps({"photo": "a.png", "answer": "ok"}) + "\n")
    program = tmp_path / "program.yaml"
    program.write_text(FINETUNE_PROGRAM)

    def run() -> tuple[str, str]:
        done = dspx("finetune", str(program), "--data-only", "--json", cwd=tmp_path, BASE=lm_server.api_base)
        assert done.returncode == 0, done.stderr
        folder = json.loads(done.stdout)["folder"]
        return folder, (tmp_path / folder / "train.jsonl").read_text()

    first, again = run(), run()
    _edit_in_place(data / "a.png")
    edited = run()
    assert first == again and edited[0] != first[0]
    assert read_image(Path("a.png"), data, confine=True) in edited[1]  # the new pixels, not the stale records


def test_a_run_reads_its_image_files_off_the_event_loop(
    lm_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading and encoding up to 20 MiB on the loop would stall every other example's calls."""
    import asyncio

    from tests.cli_inprocess import dspx

    program = _dataset(tmp_path, 3, {"a.png": (FIXTURE / "dot.png").read_bytes()})
    lm_server.responder = lambda body: ANSWER
    on_loop: list[bool] = []
    real = ImageFile.data_uri

    def spy(self: ImageFile) -> str:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(self)

    monkeypatch.setattr(ImageFile, "data_uri", spy)
    done = dspx("evaluate", str(program), "--no-cache", "--output", "out", cwd=tmp_path, BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    assert on_loop and not any(on_loop)


def _train_program(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):
        (data / name).write_bytes((FIXTURE / "dot.png").read_bytes())
    rows = [{"photo": "a.png", "answer": "ok"}, {"photo": "b.png", "answer": "ok"}]
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    program = tmp_path / "program.yaml"
    program.write_text(FINETUNE_PROGRAM)
    return program


def test_a_demo_whose_image_changed_is_a_usage_error_naming_its_row(tmp_path: Path) -> None:
    """LabeledFewShot (and bootstrap's raw demos) read a row's image: a file gone since the data
    loaded is a one-line UsageError (exit 2) naming the row, not an internal MediaError."""
    import asyncio

    from dspx_cli.errors import UsageError
    from dspx_cli.evaluate.datasets import load_rows
    from dspx_cli.optimizers.labeled import labeled_few_shot
    from dspx_cli.program.loader import load_program
    from dspx_cli.program.runner import ProgramRunner

    loaded = load_program(_train_program(tmp_path))
    trainset = load_rows(loaded, "train")
    (tmp_path / "data" / "b.png").unlink()
    with pytest.raises(UsageError, match=r"train\.jsonl:2: input 'photo'.*no such image file"):
        asyncio.run(labeled_few_shot(ProgramRunner(loaded, None), trainset, k=2))


def test_a_labeled_training_record_whose_image_changed_is_a_usage_error_naming_its_row(tmp_path: Path) -> None:
    from dspx_cli.errors import UsageError
    from dspx_cli.evaluate.datasets import load_rows
    from dspx_cli.finetune.traces import labeled_records
    from dspx_cli.program.loader import load_program
    from dspx_cli.program.runner import ProgramRunner

    loaded = load_program(_train_program(tmp_path))
    trainset = load_rows(loaded, "train")
    runner = ProgramRunner(loaded, None)
    report = labeled_records(runner, trainset, "labeled")
    assert read_image(Path("a.png"), tmp_path / "data", confine=True) in json.dumps(report.records)
    (tmp_path / "data" / "b.png").unlink()
    with pytest.raises(UsageError, match=r"train\.jsonl:2: input 'photo'.*no such image file"):
        labeled_records(runner, trainset, "labeled")


# Swaps data/a.png for something else right after the path checks pass, just before the file is
# opened: the race a hostile folder could win. In a process of its own: a blocking open of a FIFO
# could not be interrupted inside the test's.
SWAP_DRIVER = """\
import os, shutil, sys
from pathlib import Path
from dspx_cli.core import image_file

data, outside, swap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
photo = image_file.ImageFile("a.png", data, True, "train.jsonl:1")
real_check = image_file._check

def check_then_swap(path, base, confine):
    found = real_check(path, base, confine)
    if swap == "fifo":
        (data / "a.png").unlink()
        os.mkfifo(data / "a.png")
    else:  # the checked file itself moved out of the folder, a symlink to it left in its place
        shutil.move(data / "a.png", outside)
        (data / "a.png").symlink_to(outside)
    return found

image_file._check = check_then_swap
try:
    photo.data_uri()
    print("read")
except image_file.MediaError as exc:
    print(exc)
"""


@pytest.mark.parametrize("swap", ["fifo", "symlink"])
def test_a_file_swapped_after_the_checks_is_refused_without_blocking(tmp_path: Path, swap: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes((FIXTURE / "dot.png").read_bytes())
    outside = tmp_path / "outside.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", SWAP_DRIVER, str(data), str(outside), swap],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading a {swap} swapped in blocked")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "train.jsonl:1: a.png: changed since it was checked; run again on the new file"
