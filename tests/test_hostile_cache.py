"""A cache folder is untrusted input (it may be committed and replayed in CI), and a full or broken
disk must not cost a paid answer. Every case runs the real CLI on a real SQLite/diskcache folder."""

from __future__ import annotations

import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dspx_cli.lm.base import LMRequest
from dspx_cli.lm.cache import request_key
from tests.cli_process import ROOT, dspx
from tests.lm_server import LMServer

REPLY = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
STORE = "responses.sqlite3"


def program(tmp_path: Path) -> Path:
    path = tmp_path / "qa.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/test-model, api_base: "${BASE}", api_key: k, num_retries: 0}
            modules:
              answer: {signature: "question -> answer"}
            """
        )
    )
    return path


class TouchOnUnpickle:
    """Unpickling this creates `marker`: the proof that a pickle in the folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.marker,))


def record_one(server: LMServer, path: Path, cache: Path, question: str = "q") -> str:
    """Run once to store an answer; returns its cache key, computed from what the server got."""
    server.responder = lambda body: REPLY
    done = dspx("run", str(path), "-i", f"question={question}", "--cache-dir", str(cache), BASE=server.api_base)
    assert done.returncode == 0, done.stderr
    sent = server.requests[-1].body
    return request_key("openai/test-model", LMRequest(messages=tuple(sent["messages"])))


def database_file(cache: Path) -> Path:
    """The SQLite file holding the responses (older dspx kept them in a diskcache folder)."""
    return cache / STORE if (cache / STORE).exists() else cache / "responses" / "cache.db"


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


# -- 1. nothing in the folder runs code -------------------------------------------------------


def test_a_pickled_value_in_the_store_is_a_miss_that_runs_nothing(lm_server: LMServer, tmp_path: Path) -> None:
    cache, marker = tmp_path / "cache", tmp_path / "PWNED"
    path = program(tmp_path)
    key = record_one(lm_server, path, cache)
    with sqlite3.connect(cache / STORE) as db:
        changed = db.execute(
            "UPDATE responses SET value = ? WHERE key = ?", (pickle.dumps(TouchOnUnpickle(marker)), key)
        ).rowcount
    assert changed == 1
    replay = dspx(
        "run", str(path), "-i", "question=q", "--cache-dir", str(cache), "--cache-only", BASE=lm_server.api_base
    )
    assert not marker.exists()
    assert replay.returncode == 1 and "--cache-only: no cached response" in replay.stderr
    assert len(warnings_in(replay.stderr)) == 1 and "dspx did not write it" in replay.stderr
    # A normal run asks again and stores the fresh answer over the foreign row.
    again = dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base)
    assert again.returncode == 0 and again.stdout == "answer: Paris\n" and len(lm_server.requests) == 2
    healed = dspx(
        "run", str(path), "-i", "question=q", "--cache-dir", str(cache), "--cache-only", BASE=lm_server.api_base
    )
    assert healed.returncode == 0 and warnings_in(healed.stderr) == []
    assert not marker.exists()


@pytest.mark.parametrize(
    "value",
    ['{"completions": ["x"]}', '{"completions": "x", "usage": [1, 2], "model": "m"}', "[1, 2]", "not json", "[" * 5000],
    ids=["missing-keys", "wrong-type", "not-object", "not-json", "deep"],
)
def test_a_value_of_the_wrong_shape_is_a_miss_with_one_warning(lm_server: LMServer, tmp_path: Path, value: str) -> None:
    cache = tmp_path / "cache"
    path = program(tmp_path)
    key = record_one(lm_server, path, cache)
    with sqlite3.connect(cache / STORE) as db:
        db.execute("UPDATE responses SET value = ? WHERE key = ?", (value, key))
    done = dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base)
    assert done.returncode == 0 and done.stdout == "answer: Paris\n", done.stderr
    assert len(warnings_in(done.stderr)) == 1 and key[:12] in done.stderr
    assert len(lm_server.requests) == 2


def test_an_oversized_value_is_refused_before_it_is_read(lm_server: LMServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = program(tmp_path)
    key = record_one(lm_server, path, cache)
    with sqlite3.connect(cache / STORE) as db:
        db.execute("UPDATE responses SET value = printf('%.*c', 70000000, 'x') WHERE key = ?", (key,))
    started = time.monotonic()
    done = dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base)
    assert done.returncode == 0 and done.stdout == "answer: Paris\n"
    [warning] = warnings_in(done.stderr)
    assert "70000000 characters, more than dspx stores" in warning
    assert time.monotonic() - started < 60  # generous: the value is never loaded


def test_a_legacy_diskcache_folder_is_never_read_and_clear_stays_inside(lm_server: LMServer, tmp_path: Path) -> None:
    """The layout older dspx wrote (diskcache): a mode=4 pickle row and a row naming a file
    outside the folder. Neither a replay nor `cache clear` may act on them."""
    diskcache = pytest.importorskip("diskcache")
    cache, marker = tmp_path / "cache", tmp_path / "PWNED"
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    path = program(tmp_path)
    key = record_one(lm_server, path, cache)
    legacy = diskcache.Cache(str(cache / "responses"), disk=diskcache.JSONDisk)
    legacy.set(key, {"completions": ["x"], "usage": [1, 1], "model": "m"})
    legacy.set("other", {"completions": ["y"], "usage": [1, 1], "model": "m"})
    legacy.close()
    with sqlite3.connect(cache / "responses" / "cache.db") as db:
        db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key != ?", (pickle.dumps(TouchOnUnpickle(marker)), b"x"))
        db.execute("UPDATE Cache SET filename = ? WHERE rowid = (SELECT max(rowid) FROM Cache)", (str(victim),))
    (cache / STORE).unlink(missing_ok=True)  # only the legacy folder is left to answer from
    replay = dspx(
        "run", str(path), "-i", "question=q", "--cache-dir", str(cache), "--cache-only", BASE=lm_server.api_base
    )
    assert replay.returncode == 1 and not marker.exists()
    cleared = dspx("cache", "clear", "--cache-dir", str(cache))
    assert cleared.returncode == 0, cleared.stderr
    assert victim.read_text() == "keep me" and not marker.exists()
    assert not (cache / "responses").exists() and "older dspx" in cleared.stdout


def test_a_store_with_a_schema_dspx_did_not_create_is_refused(lm_server: LMServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = program(tmp_path)
    record_one(lm_server, path, cache)
    with sqlite3.connect(cache / STORE) as db:
        db.execute("CREATE TRIGGER wipe AFTER INSERT ON responses BEGIN DELETE FROM responses; END")
    done = dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base)
    assert done.returncode == 0 and done.stdout == "answer: Paris\n"
    [warning] = warnings_in(done.stderr)
    assert str(cache / STORE) in warning and "trigger wipe" in warning and "running without the cache" in warning
    assert "dspx cache clear" in warning
    fixed = dspx("cache", "clear", "--cache-dir", str(cache))
    assert fixed.returncode == 0 and "deleted the damaged cache file" in fixed.stdout
    assert (
        dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base).returncode == 0
    )
    assert json.loads(dspx("cache", "stats", "--json", "--cache-dir", str(cache)).stdout)["entries"] == 1


def test_links_in_the_folder_are_neither_followed_nor_written_through(lm_server: LMServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target_db, target_log = elsewhere / "precious.sqlite3", elsewhere / "notes.txt"
    sqlite3.connect(target_db).close()
    target_log.write_text("mine\n")
    (cache / STORE).symlink_to(target_db)
    (cache / "history.jsonl").symlink_to(target_log)
    path = program(tmp_path)
    lm_server.responder = lambda body: REPLY
    done = dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base)
    assert done.returncode == 0 and done.stdout == "answer: Paris\n"
    assert len(warnings_in(done.stderr)) == 2  # one for the store, one for the history
    assert target_log.read_text() == "mine\n" and target_db.stat().st_size == 0
    shown = dspx("history", "--cache-dir", str(cache))
    assert shown.returncode == 1 and shown.stderr.startswith("error: cannot read the history")
    assert len(shown.stderr.strip().splitlines()) == 1
    assert dspx("cache", "clear", "--cache-dir", str(cache)).returncode == 0
    assert target_db.exists() and not (cache / STORE).is_symlink()


# -- 7. a cache or history that cannot be written never costs an answer ----------------------

FSIZE_RUNNER = """
import resource, runpy, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["dspx", *sys.argv[2:]]
runpy.run_module("dspx_cli", run_name="__main__")
"""


def dspx_with_file_size_limit(limit: int, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A disk that is full for this process: writes past `limit` bytes fail with EFBIG."""
    full_env = {k: v for k, v in os.environ.items() if k != "DSPX_LM"}
    full_env.update({"NO_COLOR": "1", **env})
    return subprocess.run(
        [sys.executable, "-c", FSIZE_RUNNER, str(limit), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=600,
    )


def test_a_full_disk_costs_no_answer(lm_server: LMServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = program(tmp_path)
    record_one(lm_server, path, cache, question="warm")  # the store exists; growing it will fail
    big = "x" * 40_000

    def answer(body: dict[str, object]) -> str:
        [row] = re.findall(r"row\d+", str(body["messages"]))[-1:]
        return f"[[ ## answer ## ]]\n{row} {big}\n\n[[ ## completed ## ]]"

    lm_server.responder = answer
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"question": f"row{i:03d}"}) + "\n" for i in range(30)))
    done = dspx_with_file_size_limit(
        100_000, "run", str(path), "--batch", str(rows), "-j", "4", "--cache-dir", str(cache), BASE=lm_server.api_base
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 30 and all(big in line["answer"] for line in lines)
    assert [line["answer"].split()[0] for line in lines] == [f"row{i:03d}" for i in range(30)]
    found = warnings_in(done.stderr)
    assert len([w for w in found if "cache file" in w]) == 1, done.stderr
    assert len([w for w in found if "history" in w]) <= 1 and len(found) <= 2
    assert len(lm_server.requests) == 1 + 30
    # The history line cut short by the full disk does not swallow the next run's record.
    lm_server.responder = lambda body: REPLY
    assert (
        dspx("run", str(path), "-i", "question=after", "--cache-dir", str(cache), BASE=lm_server.api_base).returncode
        == 0
    )
    last = dspx("history", "--json", "--cache-dir", str(cache))
    assert "after" in json.loads(last.stdout)["messages"][-1]["content"]


def test_a_cache_folder_that_cannot_be_created_means_a_run_without_cache(lm_server: LMServer, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    path = program(tmp_path)
    lm_server.responder = lambda body: REPLY
    done = dspx(
        "run", str(path), "-i", "question=q", "--cache-dir", str(not_a_folder / "cache"), BASE=lm_server.api_base
    )
    assert done.returncode == 0 and done.stdout == "answer: Paris\n"
    found = warnings_in(done.stderr)
    assert len(found) == 2 and any("running without the cache" in w for w in found)
    assert any("history" in w for w in found)


# -- 8. a damaged store names itself and is repaired by `cache clear` ------------------------


@pytest.mark.parametrize("offset", [0, 4096], ids=["header", "table-page"])
def test_a_damaged_store_is_named_and_repaired_by_cache_clear(lm_server: LMServer, tmp_path: Path, offset: int) -> None:
    cache = tmp_path / "cache"
    path = program(tmp_path)
    record_one(lm_server, path, cache)
    damaged = database_file(cache)
    with damaged.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"this is not a database at all!!!" * 4)
    history_before = (cache / "history.jsonl").read_bytes()
    done = dspx("run", str(path), "-i", "question=q", "--cache-dir", str(cache), BASE=lm_server.api_base)
    assert done.returncode == 0 and done.stdout == "answer: Paris\n"
    [warning] = warnings_in(done.stderr)
    assert f"the cache file {damaged} is damaged" in warning and f"dspx cache clear --cache-dir {cache}" in warning
    if offset == 0:  # a damaged page is found when it is read: counting entries may not read it
        stats = dspx("cache", "stats", "--cache-dir", str(cache))
        assert stats.returncode == 1 and len(stats.stderr.strip().splitlines()) == 1
        assert stats.stderr.startswith("error: the cache file") and str(damaged) in stats.stderr
        assert "Traceback" not in stats.stderr
    cleared = dspx("cache", "clear", "--cache-dir", str(cache))
    assert cleared.returncode == 0 and "deleted the damaged cache file" in cleared.stdout, cleared.stderr
    assert (cache / "history.jsonl").read_bytes().startswith(history_before)  # only the store went
    after = dspx("cache", "stats", "--json", "--cache-dir", str(cache))
    assert after.returncode == 0 and json.loads(after.stdout)["entries"] == 0


def test_debug_shows_the_traceback_of_a_cache_command(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / STORE).write_bytes(b"junk" * 100)
    done = dspx("cache", "stats", "--cache-dir", str(cache), "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "CacheFileError" in done.stderr


# -- 11. a malformed history line is skipped, with one warning -------------------------------


def test_malformed_history_lines_are_skipped_with_one_warning(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    good = {"timestamp": "t", "model": "m", "messages": [{"role": "user", "content": "hi"}], "outputs": ["yo"]}
    odd = {"model": "m", "usage": "lots", "latency_s": "slow", "messages": ["not a message"], "outputs": "x"}
    (cache / "history.jsonl").write_text(
        "\n".join([json.dumps(good), "{cut short", "[1, 2]", '"text"', json.dumps(odd), json.dumps(good)]) + "\n"
    )
    shown = dspx("history", "-n", "10", "--json", "--cache-dir", str(cache))
    assert shown.returncode == 0
    assert [json.loads(line) for line in shown.stdout.splitlines()] == [good, odd, good]
    assert warnings_in(shown.stderr) == [f"warning: skipped 3 malformed lines in {cache / 'history.jsonl'}"]
    text = dspx("history", "-n", "10", "--cache-dir", str(cache))
    assert text.returncode == 0 and text.stdout.count("User message:") == 2, text.stderr


# -- 18. looking at a cache never creates one -------------------------------------------------


def test_stats_and_clear_do_not_create_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cache"
    stats = dspx("cache", "stats", "--cache-dir", str(missing))
    assert stats.returncode == 0 and "does not exist" in stats.stdout and "responses: 0" in stats.stdout
    figures = json.loads(dspx("cache", "stats", "--json", "--cache-dir", str(missing)).stdout)
    assert figures["entries"] == 0 and figures["exists"] is False
    cleared = dspx("cache", "clear", "--cache-dir", str(missing))
    assert cleared.returncode == 0 and "does not exist" in cleared.stdout
    assert dspx("history", "--cache-dir", str(missing)).returncode == 0
    assert not missing.exists() and not missing.parent.exists()
