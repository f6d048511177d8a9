"""The sandbox against hostile code, on the real Deno + Pyodide. Each attempt must be refused (an
error, or the process killed) with nothing reaching the host, and the next execute must work.

Attacks go both through Python (open, os, socket, subprocess) and through the JS side Python can
reach (`pyodide.code.run_js`: globalThis, node's `process`), since Deno's permissions, not Pyodide's
virtual filesystem, are the barrier."""

from __future__ import annotations

import asyncio
import os
import resource
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from dspx_cli.sandbox import Execution, SandboxLimits
from dspx_cli.sandbox.pool import LOST_STATE
from tests.sandbox_helpers import Box, needs_deno, open_box

pytestmark = needs_deno

SECRET = "sk-dspx-fake-secret-7f3a9c"
HOME_SECRET = "home-file-secret-41b2"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("home")
    (directory / "notes.txt").write_text(HOME_SECRET)
    return directory


@pytest.fixture(scope="module")
def box(home: Path) -> Iterator[Box]:
    # The host has a secret in its environment and a HOME with a file in it before the sandbox starts.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSPX_TEST_API_KEY", SECRET)
        mp.setenv("HOME", str(home))
        yield from open_box(SandboxLimits(timeout=8, memory_mb=512, output_bytes=100_000, pool_size=1))


def js(expression: str) -> str:
    """Python code that evaluates a JS expression in the sandbox's JS realm and returns it."""
    return f"from pyodide.code import run_js\nrun_js({expression!r})"


def shown(result: Execution) -> str:
    """Everything the sandbox gave back, as the LM or a log would see it."""
    return f"{result.output!r} {result.error} {result.stdout}"


def assert_healthy(box: Box) -> None:
    assert box.execute("21 * 2").output == 42


def test_reading_host_files_is_refused(box: Box, home: Path) -> None:
    secret_file = home / "notes.txt"
    attempts = [
        "open('/etc/passwd').read()",
        f"open({str(secret_file)!r}).read()",
        js("Deno.readTextFileSync('/etc/passwd')"),
        js("process.getBuiltinModule('fs').readFileSync('/etc/passwd', 'utf8')"),
        js(f"process.getBuiltinModule('fs').readFileSync({str(secret_file)!r}, 'utf8')"),
        js("process.getBuiltinModule('fs').readdirSync('/').join(',')"),
    ]
    for code in attempts:
        result = box.execute(code)
        assert result.error is not None, code
        assert "root:" not in shown(result) and HOME_SECRET not in shown(result), code
    # What Python sees as / and ~ is Pyodide's in-memory filesystem, not the host's.
    listing = box.execute("import os\n[os.listdir('/'), os.path.expanduser('~'), os.path.exists('/etc/passwd')]")
    assert listing.output[1] != str(home) and listing.output[2] is False
    assert_healthy(box)


def test_writing_host_files_is_refused(box: Box, tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    in_memory = box.execute(f"open({str(target)!r}, 'w').write('x')")  # Pyodide's in-memory FS
    assert in_memory.error is not None  # the folder does not exist in the sandbox's filesystem
    for code in [
        f"import os\nos.makedirs({str(tmp_path)!r}, exist_ok=True)\nopen({str(target)!r}, 'w').write('x')",
        js(f"process.getBuiltinModule('fs').writeFileSync({str(target)!r}, 'x')"),
        js(f"Deno.writeTextFileSync({str(target)!r}, 'x')"),
    ]:
        box.execute(code)
    assert not target.exists()
    assert_healthy(box)


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"reached")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_network_is_refused(box: Box, server: str) -> None:
    port = int(server.rsplit(":", 1)[1].strip("/"))
    attempts = [
        f"import urllib.request\nurllib.request.urlopen({server!r}).read()",
        f"import socket\nsocket.create_connection(('127.0.0.1', {port})).send(b'GET / HTTP/1.0\\r\\n\\r\\n')",
        f"from pyodide.http import pyfetch\nawait pyfetch({server!r})",
        f"from pyodide.code import run_js\nawait run_js('fetch({server!r}).then(r => r.text())')",
        f"from pyodide.code import run_js\nawait run_js('import({server + 'x.js'!r})')",
    ]
    for code in attempts:
        result = box.execute(code)
        assert result.error is not None and "reached" not in shown(result), code
    assert _Recorder.hits == []
    assert_healthy(box)


def test_host_environment_is_not_readable(box: Box) -> None:
    attempts = [
        "import os\ndict(os.environ)",
        "open('/proc/self/environ').read()",
        js("JSON.stringify(process.env)"),
        js("Deno.env.get('DSPX_TEST_API_KEY')"),
    ]
    for code in attempts:
        assert SECRET not in shown(box.execute(code)), code
    assert box.execute("import os\nos.environ.get('DSPX_TEST_API_KEY')").output == ""  # None prints nothing
    assert_healthy(box)


def test_spawning_processes_is_refused(box: Box, tmp_path: Path) -> None:
    marker = tmp_path / "spawned"
    for code in [
        f"import subprocess\nsubprocess.run(['touch', {str(marker)!r}])",
        f"import os\nos.system('touch {marker}')",
        js(f"process.getBuiltinModule('child_process').execSync('touch {marker}')"),
        js(f"new Deno.Command('touch', {{args: [{str(marker)!r}]}}).outputSync()"),
    ]:
        assert box.execute(code).error is not None, code
    assert not marker.exists()
    assert_healthy(box)


def test_infinite_loop_times_out(box: Box) -> None:
    result = box.execute("while True:\n    pass")
    assert result.error_kind == "timeout" and result.error is not None
    assert result.error.startswith("TimeoutError:")
    assert_healthy(box)


def _host_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_allocations_hit_the_memory_cap(box: Box) -> None:
    before = _host_peak_mb()
    at_once = box.execute("b = bytearray(4 * 1024**3)")  # more than wasm32 can address
    assert at_once.error is not None
    piecewise = box.execute("chunks = [bytearray(256 * 1024**2) for _ in range(16)]")  # 4 GB in steps
    assert piecewise.error_kind == "memory" and piecewise.error is not None
    assert piecewise.error.startswith("MemoryError:")
    assert _host_peak_mb() - before < 200
    assert_healthy(box)


def test_printing_100_mb_is_capped(box: Box) -> None:
    before = _host_peak_mb()
    printed = box.execute("print('x' * 100_000_000)")
    assert printed.error_kind == "output" and printed.error is not None
    assert printed.error.startswith("OutputLimitError:")
    assert len(printed.stdout) == 100_000
    returned = box.execute("'y' * 100_000_000")  # a huge last-expression value is output too
    assert returned.error_kind == "output" and returned.output is None
    looped = box.execute("for _ in range(10**6):\n    print('z' * 1000)")
    assert looped.error_kind == "output" and len(looped.stdout) == 100_000
    assert _host_peak_mb() - before < 200
    assert_healthy(box)


def test_a_crash_mid_run_is_reported_and_the_next_call_works(box: Box) -> None:
    async def go() -> tuple[Execution, Execution, Execution]:
        async with box.sandbox.session() as session:
            await session.execute("state = 'before'")
            slot = box.sandbox._slots[0]
            assert slot._process is not None
            pid = slot._process.pid

            async def kill_soon() -> None:
                await asyncio.sleep(0.3)
                os.kill(pid, 9)

            killer = asyncio.create_task(kill_soon())
            crashed = await session.execute("while True:\n    pass")
            await killer
            return crashed, await session.execute("1 + 1"), await session.execute("state")

    crashed, after, state = box.run(go())
    assert crashed.error_kind == "crash" and crashed.error is not None
    assert crashed.error.startswith("RuntimeError:")
    assert (after.output, after.error) == (2, None)
    assert state.error == "NameError: [\"name 'state' is not defined\"]" + LOST_STATE  # a fresh interpreter, said so
