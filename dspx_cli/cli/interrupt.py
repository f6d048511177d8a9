"""How a command ends early: Ctrl-C and SIGTERM alike, and a closed stdout.

SIGINT and SIGTERM (what CI cancellation, `timeout` and `docker stop` send) are one thing here.
The first one cancels every task of the running event loop instead of raising KeyboardInterrupt
wherever the main thread happens to be: `finally` blocks then run in order, so an evaluation
writes its partial summary and JUnit file and the cache and history close; queued local-model
calls are cancelled with their tasks. The command then prints `interrupted` and leaves with
os._exit(130): a normal interpreter exit would first wait for the local model's thread to finish
the generation it is in (tens of seconds on a long one), and tearing the interpreter down under
that thread is what crashed llama.cpp. A second signal leaves the same way at once, whatever the
cleanup was doing.

When stdout is closed under us (`dspx run --batch rows.jsonl | head -1`), the lines written so far
stand, nothing more is run, and the command exits 141 (128 + SIGPIPE, what a shell reports for any
other program in the pipe) without a word on stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interruption:
    """Counts the interrupting signals received while a command runs."""

    def __init__(self) -> None:
        self.signals = 0

    def install(self) -> Callable[[], None]:
        """Handle SIGINT and SIGTERM; returns what puts the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signals reach the main thread only: nothing to do elsewhere
        previous = {number: signal.signal(number, self._handle) for number in _SIGNALS}

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            _leave_now("interrupted again: exiting without waiting for cleanup")
        loop = _running_loop()
        if loop is None:
            raise KeyboardInterrupt
        # From inside the loop's own thread, between two of its steps: schedule, do not act here.
        loop.call_soon_threadsafe(_cancel_every_task, loop)


def guarded(action: Callable[[], None]) -> Callable[[], None]:
    """`action` under the rules above."""

    def call() -> None:
        interruption = Interruption()
        restore = interruption.install()
        try:
            action()
            sys.stdout.flush()  # here, not at exit, where a closed pipe would print a traceback
        except BrokenPipeError:
            _silence_stdout()
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        except BaseException:
            if interruption.signals:
                _leave_now("interrupted")
            raise
        finally:
            if not interruption.signals:
                restore()
        if interruption.signals:  # the signal came as the command finished: still an interruption
            _leave_now("interrupted")

    return call


def _running_loop() -> Any:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _cancel_every_task(loop: Any) -> None:
    import asyncio

    for task in asyncio.all_tasks(loop):
        task.cancel()


def _silence_stdout() -> None:
    # The reader is gone: point stdout at /dev/null so the interpreter's final flush of what is
    # still buffered does not fail a second time with "Exception ignored ... BrokenPipeError".
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _leave_now(message: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or a write this signal interrupted
            pass
    try:
        os.write(2, message.encode() + b"\n")
    except OSError:
        pass
    os._exit(EXIT_INTERRUPTED)
