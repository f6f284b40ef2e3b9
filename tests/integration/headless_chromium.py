"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the control panel's
tests. The protocol runs over a pipe (`--remote-debugging-pipe`: commands on the child's fd 3, answers and
events on its fd 4, each message JSON ended by a NUL byte), so nothing listens on a port and no client
library or browser download is needed.

    with Chromium(tmp_path) as browser:
        page = browser.new_page(width=1400, height=900)
        page.navigate("http://127.0.0.1:8080/ui")
        page.wait_for("document.readyState === 'complete'")
        html = page.evaluate("document.documentElement.outerHTML")
        page.screenshot(tmp_path / "panel.png")
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no network here: its connections would only be refused
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
REPLY_TIMEOUT_S = 30.0


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(RuntimeError):
    pass


class Chromium:
    def __init__(self, profile_dir: Path) -> None:
        binary = chromium_path()
        if binary is None:
            raise BrowserError("chromium is not installed")
        # Once seen on a loaded machine: the browser exited before its first answer. Its stderr says why; a
        # second start is what a person would try, and the error names both.
        for attempt in (1, 2):
            self._start(binary, profile_dir / f"run-{attempt}")
            try:
                self.send("Browser.getVersion")
                return
            except BrowserError as exc:
                self.close()
                if attempt == 2:
                    raise BrowserError(f"{exc}; chromium's stderr: {''.join(self.stderr)[-2000:]}") from None

    def _start(self, binary: str, profile_dir: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Out of the way of 3 and 4, so the two dup2 below cannot overwrite each other.
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)

        def wire_fds() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        profile_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4),
            preexec_fn=wire_fds,  # runs before close_fds, which then keeps 3 and 4 (pass_fds)
        )
        for fd in (to_child_r, from_child_w, high_r, high_w):
            os.close(fd)
        self._ids = itertools.count(1)
        self._replies: dict[int, queue.SimpleQueue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            data = os.read(self._from_child, 1 << 16)
            if not data:
                break
            buffer += data
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiter = self._replies.get(message["id"])
                    if waiter is not None:
                        waiter.put(message)
        with self._lock:
            for waiter in self._replies.values():
                waiter.put({"error": {"message": "chromium exited"}})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """Sends one command and returns its `result` (raises BrowserError on an error reply)."""
        message_id = next(self._ids)
        waiter: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        with self._lock:
            self._replies[message_id] = waiter
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self._to_child, json.dumps(message).encode() + b"\0")
            reply = waiter.get(timeout=REPLY_TIMEOUT_S)
        except BrokenPipeError:
            raise BrowserError(f"chromium exited before {method} (status {self.proc.poll()})") from None
        except queue.Empty:
            raise BrowserError(f"no reply to {method} within {REPLY_TIMEOUT_S} s") from None
        finally:
            with self._lock:
                self._replies.pop(message_id, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def new_page(self, *, width: int = 1400, height: int = 900) -> Page:
        """A new tab in a fresh browser context (its own cookies)."""
        context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", {"url": "about:blank", "browserContextId": context})
        session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, session["sessionId"])
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.resize(width, height)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close")
                self.proc.wait(timeout=10)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        os.close(self._to_child)
        self._reader.join(timeout=5)
        os.close(self._from_child)
        self._stderr_reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self._browser = browser
        self._session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self._browser.send(method, params, self._session)

    def resize(self, width: int, height: int) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Polls until a JavaScript expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except BrowserError as exc:  # e.g. mid-navigation: the context is being replaced
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.1)
        raise BrowserError(f"still false after {timeout_s} s: {expression} (last: {last!r})")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (the viewport grown to the page's height)."""
        width = int(self.evaluate("document.documentElement.clientWidth"))
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.resize(width, height)
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
