"""Confines the interpreter process, then becomes it: `python -I -S launch.py PARENT DATA_BYTES -- CMD...`.

dspx has threads (tool calls, the local model's executor, asyncio's default executor) when it
starts a sandbox process, and Python code between fork and exec in such a process (subprocess's
preexec_fn) may deadlock on a lock another thread held at fork time. So dspx only forks and execs
this script (no Python code runs in the forked copy of dspx); this fresh, single-threaded Python
sets the limits and the parent-death signal on itself and execs Deno, which keeps the process id,
the limits and the signal. No Deno code, let alone sandbox code, runs before they are in place.

Runs in isolated mode with nothing of dspx importable: standard library only.
"""

from __future__ import annotations

import os
import signal
import sys


def _die_with_parent(parent: int) -> None:
    # If dspx dies without killing it (SIGKILL, a crash), an interpreter stuck in a loop would spin
    # on forever (the runner notices a closed stdin only between executes): the kernel kills it.
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # dspx died before the signal was armed: nobody will read our output
        os._exit(1)


def _limit(data_bytes: int) -> None:
    import resource

    # Linux counts wasm memory growth against RLIMIT_DATA (private writable pages), so an
    # allocation past the cap fails inside Pyodide as MemoryError; V8's large PROT_NONE
    # reservations are not counted (RLIMIT_AS would be, and would stop V8 from starting).
    resource.setrlimit(resource.RLIMIT_DATA, (data_bytes, data_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: launch.py PARENT_PID DATA_BYTES -- COMMAND...\n")
        os._exit(2)
    parent, data_bytes, command = int(argv[0]), int(argv[1]), argv[3:]
    try:
        _limit(data_bytes)
        _die_with_parent(parent)
        os.execv(command[0], command)
    except (OSError, ValueError, ImportError) as e:  # ImportError: a Python built without ctypes
        sys.stderr.write(f"cannot start the sandbox interpreter ({command[0]}): {e}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
