"""Debian's chromium, headless, driven over the DevTools protocol (a websocket) by a small client.

    with Browser() as browser:                       # None from `find_chromium()`: skip
        page = browser.open(Path("report.html"))     # waits for the load event
        page.evaluate("document.title")              # a JS expression's value (awaits promises)
        page.errors                                  # console errors and uncaught exceptions

No selenium or playwright: the protocol is JSON over a websocket, which aiohttp (a dependency of
dspx) speaks. Used by tests/test_report_browser.py and benchmarks/report_size.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    def __init__(self, browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.browser = browser
        self.socket = socket
        self.errors: list[str] = []
        self.console: list[str] = []
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    async def _send(self, method: str, params: dict[str, Any] | None = None, wait: float = 60) -> dict[str, Any]:
        number = next(self._ids)
        await self.socket.send_str(json.dumps({"id": number, "method": method, "params": params or {}}))
        deadline = time.monotonic() + wait
        while True:
            message = await self.socket.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(str(params["entry"].get("text")))
        self._events.append(message)

    async def _wait_event(self, name: str, wait: float = 60) -> None:
        if any(event.get("method") == name for event in self._events):
            return
        deadline = time.monotonic() + wait
        while True:
            message = await self.socket.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            self._event(message)
            if message.get("method") == name:
                return

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        async def go() -> Any:
            result = await self._send(
                "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}, timeout
            )
            if "exceptionDetails" in result:
                raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
            return result.get("result", {}).get("value")

        return self.browser.loop.run_until_complete(go())

    def wait_for(self, expression: str, timeout: float = 60) -> float:
        """Poll until `expression` is truthy; seconds waited."""
        started = time.monotonic()
        while not self.evaluate(expression):
            if time.monotonic() - started > timeout:
                raise TimeoutError(expression)
            time.sleep(0.02)
        return time.monotonic() - started

    def screenshot(self, path: Path, width: int = 1280, height: int = 900) -> None:
        async def go() -> str:
            await self._send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            shot = await self._send("Page.captureScreenshot", {"format": "png"})
            return shot["data"]

        import base64

        path.write_bytes(base64.b64decode(self.browser.loop.run_until_complete(go())))


class Browser:
    def __init__(self, executable: str | None = None) -> None:
        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError("chromium is not installed")
        self.executable = executable
        self.loop = asyncio.new_event_loop()
        self._profile = tempfile.mkdtemp(prefix="dspx-chromium-")
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self) -> Browser:
        flags = ["--headless", "--remote-debugging-port=0", f"--user-data-dir={self._profile}"]
        flags += ["--no-first-run", "--disable-gpu", "--disable-extensions", "--disable-dev-shm-usage"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(
            [self.executable, *flags, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        url = None
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            lines.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            self.close()
            raise RuntimeError("chromium did not start: " + "".join(lines[-10:]))
        self.port = int(url.split(":")[2].split("/")[0])
        # Chromium goes on writing to stderr: drained, so a full pipe never stalls it.
        threading.Thread(target=lambda: [None for _ in self.process.stderr or ()], daemon=True).start()
        self._session = self.loop.run_until_complete(self._make_session())
        return self

    async def _make_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def open(self, path: Path) -> Page:
        url = path.resolve().as_uri()

        async def go() -> Page:
            assert self._session is not None
            base = f"http://127.0.0.1:{self.port}"
            async with self._session.put(f"{base}/json/new?about:blank") as response:
                target = await response.json()
            socket = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(self, socket)
            for domain in ("Runtime", "Log", "Page"):
                await page._send(f"{domain}.enable")
            page._events.clear()
            await page._send("Page.navigate", {"url": url})
            await page._wait_event("Page.loadEventFired")
            return page

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        if self._session is not None:
            self.loop.run_until_complete(self._session.close())
            self._session = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.loop.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
