"""How the interpreter process is started: confined by rlimits before it runs anything, killed with
dspx even on SIGKILL, and started without Python code between fork and exec (preexec_fn), which
could deadlock or stall in a dspx whose other threads are busy."""

from __future__ import annotations

import _imp
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dspx_cli.sandbox import Sandbox, SandboxLimits
from dspx_cli.sandbox.deno import runner_path
from tests.conftest import SANDBOX_DENO_DIR
from tests.sandbox_helpers import needs_deno

pytestmark = [needs_deno, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

REPO = Path(__file__).resolve().parent.parent


def _limit(pid: int, name: str) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            soft, hard = line[len(name) :].split()[:2]
            return soft, hard
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text()


def _gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie nobody has reaped yet (a container's init may not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_the_interpreter_runs_under_its_rlimits_from_the_start() -> None:
    limits = SandboxLimits(memory_mb=300, pool_size=1, timeout=20)

    async def go() -> tuple[str, tuple[str, str], tuple[str, str]]:
        sandbox = Sandbox(limits, deno_dir=SANDBOX_DENO_DIR)
        try:
            async with sandbox.session() as session:
                assert (await session.execute("1 + 1")).output == 2
                pid = sandbox._slots[0].pid
                assert pid is not None
                return _cmdline(pid), _limit(pid, "Max data size"), _limit(pid, "Max core file size")
        finally:
            await sandbox.aclose()

    cmdline, data, core = asyncio.run(go())
    # The launcher exec'd Deno: the process dspx talks to (and kills) is the runner itself.
    assert str(runner_path().resolve()) in cmdline.split("\0")
    cap = str((300 + 768) * 1024 * 1024)
    assert data == (cap, cap)
    assert core == ("0", "0")


PARENT = """
import asyncio, os, sys
from pathlib import Path
from dspx_cli.sandbox import Sandbox, SandboxLimits

class Started:
    name, args = "started", {}
    def __init__(self, sandbox):
        self.sandbox = sandbox
    async def acall(self):
        print(self.sandbox._slots[0].pid, flush=True)
        return None

async def main():
    sandbox = Sandbox(SandboxLimits(timeout=600, pool_size=1), deno_dir=Path(sys.argv[1]))
    async with sandbox.session({"started": Started(sandbox)}) as session:
        await session.execute("started()\\nwhile True:\\n    pass")

asyncio.run(main())
"""


def test_the_interpreter_dies_when_dspx_is_killed_even_mid_loop() -> None:
    # The sandbox code is spinning (it called a host tool first, so it is past that call): it will
    # never read its closed stdin, so only the kernel's parent-death signal can end it.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT), str(SANDBOX_DENO_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    child = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), parent.stderr.read() if parent.stderr else line
        child = int(line)
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):  # up to ~10 s: the signal is immediate, a loaded machine is not
            if _gone(child):
                break
            time.sleep(0.1)
        assert _gone(child), f"the interpreter {child} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_the_interpreter_starts_while_another_thread_holds_the_import_lock() -> None:
    # preexec_fn makes subprocess take the interpreter's fork locks (the import lock among them)
    # around fork, so a thread mid-import stalled, and in the child could deadlock, the spawn.
    # Without it, spawning needs no lock another thread can hold.
    limits = SandboxLimits(pool_size=1, timeout=20)
    sandbox = Sandbox(limits, deno_dir=SANDBOX_DENO_DIR)
    runner = asyncio.Runner()
    held, done = threading.Event(), threading.Event()
    released_early: list[bool] = []

    def hold_import_lock() -> None:
        _imp.acquire_lock()
        held.set()
        try:
            released_early.append(not done.wait(60))
        finally:
            _imp.release_lock()

    def spin() -> None:
        while not done.is_set():
            sum(range(10_000))

    async def go() -> object:
        await sandbox._pool()  # finds Deno and Pyodide (imports included) before the lock is taken
        held.wait()
        async with sandbox.session() as session:
            return (await session.execute("6 * 7")).output

    threads = [threading.Thread(target=hold_import_lock), *(threading.Thread(target=spin) for _ in range(2))]
    for thread in threads:
        thread.start()
    try:
        output = runner.run(go())
    finally:
        done.set()
        for thread in threads:
            thread.join()
        runner.run(sandbox.aclose())
        runner.close()
    assert output == 42
    assert released_early == [False], "the spawn waited for the import lock another thread held"
