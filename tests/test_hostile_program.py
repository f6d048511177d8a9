"""Hostile program files: each ends in one line naming the file (and line), exit 2, within time and
memory bounds, whatever the file tries (alias bombs, deep nesting, huge integers, bad bytes)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_process import ROOT

GOOD_TAIL = "modules:\n  m: {signature: 'question -> answer'}\n"
MEMORY_LIMIT = 1024 * 1024 * 1024  # address space: the alias bomb below reached 5 GB before the fix
TIME_LIMIT = 30.0  # seconds; each case takes well under one


def _alias_bomb() -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return ("\n".join(lines) + "\ndescription: *a8\n" + GOOD_TAIL).encode()


def _alias_chain() -> bytes:
    # Each line nests one level, but only through aliases: 300 deep once expanded.
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 300)]
    return ("\n".join(lines) + "\n" + GOOD_TAIL).encode()


# (file name, content, expected line or None, fragment of the message)
CASES = [
    ("bomb.yaml", _alias_bomb(), 6, "alias"),
    (
        "merge_bomb.yaml",
        (
            "a0: &a0 {x0: 1, x1: 1, x2: 1, x3: 1, x4: 1, x5: 1, x6: 1, x7: 1, x8: 1}\n"
            + "".join(f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 9)}], y{i}: 1}}\n" for i in range(1, 9))
            + GOOD_TAIL
        ).encode(),
        None,
        "alias",
    ),
    ("recursive.yaml", b"name: &a [1, *a]\n" + GOOD_TAIL.encode(), 1, "contains it"),
    ("chain.yaml", _alias_chain(), None, "levels deep"),
    ("deep.yaml", b"x: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", 1, "levels deep"),
    ("deep_map.yaml", b"x: " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n", 1, "levels deep"),
    ("bigint.yaml", b"name: " + b"9" * 5000 + b"\n" + GOOD_TAIL.encode(), 1, "digits"),
    ("sexagesimal.yaml", b"name: 1" + b":00" * 200_000 + b"\n" + GOOD_TAIL.encode(), 1, "digits"),
    ("nul.yaml", b"name: a\x00b\n" + GOOD_TAIL.encode(), 1, "NUL"),
    ("latin1.yaml", b"name: caf\xe9\n" + GOOD_TAIL.encode(), 1, "UTF-8"),
    ("control.yaml", GOOD_TAIL.encode() + b"name: a\x01b\n", 3, "control characters"),
    ("deep.toml", b"x = " + b"[" * 1000 + b"]" * 1000 + b"\n", 1, "levels deep"),
    ("deep_inline.toml", b"x = " + b"{a = " * 1000 + b"1" + b"}" * 1000 + b"\n", 1, "levels deep"),
    ("dotted.toml", b"x" + b".x" * 500 + b" = 1\n", 1, "levels deep"),
    ("bigint.toml", b"name = " + b"9" * 5000 + b"\n", 1, "digits"),
    ("nul.toml", b"name = 'a\x00b'\n", 1, "NUL"),
    ("latin1.toml", b"name = 'caf\xe9'\n", 1, "UTF-8"),
    ("bad_date.yaml", b"name: 2024-13-45\n" + GOOD_TAIL.encode(), 1, "month"),
    ("python_tag.yaml", b"name: !!python/object/apply:os.system ['echo pwned']\n" + GOOD_TAIL.encode(), 1, "python"),
]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _validate_bounded(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if k != "DSPX_LM"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dspx_cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env={**env, "NO_COLOR": "1"},
        cwd=ROOT,
        timeout=TIME_LIMIT,
        preexec_fn=_limit_memory,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(("name", "content", "line", "fragment"), CASES, ids=[case[0] for case in CASES])
def test_hostile_file_is_one_line_exit_2(
    tmp_path: Path, name: str, content: bytes, line: int | None, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result, seconds = _validate_bounded(path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    message = result.stderr.strip()
    assert message.startswith(f"error: {path}:"), message
    match = re.match(rf"error: {re.escape(str(path))}:(\d+)(:\d+)?: ", message)
    assert match, message
    if line is not None:
        assert int(match.group(1)) == line, message
    assert fragment.lower() in message.lower()
    assert seconds < TIME_LIMIT


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.write(b"description: '")
        handle.truncate(20 * 1024 * 1024)  # sparse: costs no disk
    result, _ = _validate_bounded(path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "larger than 16 MB" in result.stderr


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    """The converter handles `<<` itself (to count what it expands): keys written here win."""
    from dspx_cli.program.loader import load_program

    path = tmp_path / "merge.yaml"
    path.write_text(
        "signatures: {}\n"
        "modules:\n"
        "  m: {signature: 'question -> answer', lm: {<<: {model: local/smollm2, temperature: 1.0}, temperature: 0.5}}\n"
    )
    lm = load_program(path, env={}).modules["m"].lm
    assert (lm.model, lm.temperature) == ("local/smollm2", 0.5)


def test_anchors_within_the_limit_load(tmp_path: Path) -> None:
    from dspx_cli.program.loader import load_program

    demos = ", ".join(["*d"] * 500)
    path = tmp_path / "ok.yaml"
    path.write_text(
        "signatures:\n  qa: 'question -> answer'\n"
        "modules:\n"
        f"  m: {{signature: qa, demos: [&d {{question: q, answer: a}}, {demos}]}}\n"
    )
    assert len(load_program(path, env={}).modules["m"].demos) == 501
