"""A fast OpenAI-compatible stub for throughput benchmarks: asyncio, keep-alive, fixed latency.

    python benchmarks/latency_server.py PORT LATENCY_S

Answers every POST with a ChatAdapter-shaped completion that upper-cases the last line of the
user's first field, after sleeping LATENCY_S. Runs in its own process so it does not compete
with the client for the GIL. (tests/lm_server.py is the scriptable one for tests; it spends a
thread per connection, which is too slow to measure 1024 requests in flight.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = json.loads(await reader.readexactly(length))
            await asyncio.sleep(latency)
            text = body["messages"][-1]["content"].split("\n")[1]
            completion = f"[[ ## answer ## ]]\n{text.upper()}\n\n[[ ## completed ## ]]"
            payload = json.dumps(
                {
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": completion}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10},
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int, latency: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, latency), "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def echo_program(latency: float) -> Iterator[tuple[int, Path]]:
    """This server in its own process, and a one-module program pointed at it: (port, program)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = subprocess.Popen([sys.executable, __file__, str(port), str(latency)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as scratch:
            program = Path(scratch) / "p.yaml"
            program.write_text(
                textwrap.dedent(f"""\
                lm: {{model: openai/bench, api_base: "http://127.0.0.1:{port}/v1", num_retries: 0}}
                modules:
                  echo: {{signature: "text -> answer"}}
                metric: exact_match
                """)
            )
            yield port, program
    finally:
        server.terminate()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
