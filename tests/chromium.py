"""A minimal headless-Chromium driver for end-to-end UI tests, on the standard library only.

Chromium is started with `--remote-debugging-pipe` and spoken to over the DevTools protocol
(JSON messages separated by NUL bytes on file descriptors 3 and 4), which is what Playwright does,
without a WebSocket client, a chromedriver or any download. Pages are single-page apps: every
check polls a JavaScript expression until it holds or a deadline passes, so a slow, shared machine
makes a test slower, not flaky.

    with Browser() as b:
        b.goto("http://127.0.0.1:5000/#/experiments/1/runs")
        b.wait_for("document.querySelectorAll('a').length > 3")
        hrefs = b.evaluate("[...document.querySelectorAll('a')].map(a => a.href)")
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
)


_EXEC_WITH_FDS = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def _high_pipe() -> tuple[int, int]:
    """A pipe whose two ends are above fd 9, so moving them to 3 and 4 never clobbers them."""
    import fcntl

    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class BrowserError(RuntimeError):
    """The browser died, answered a command with an error, or a wait timed out."""


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page (tab); a context manager that always ends it."""

    def __init__(self, executable: str | None = None, command_timeout: float = 60.0) -> None:
        exe = shutil.which(executable) if executable else find_chromium()
        if exe is None:
            raise FileNotFoundError("no Chromium found (apt-get install chromium)")
        self.command_timeout = command_timeout
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self._next_id = 0
        self._closed = False
        self._buffer = b""
        # the child reads commands on fd 3 and writes answers on fd 4; a tiny Python wrapper
        # moves the pipe ends there (no preexec_fn: the test process has threads)
        to_child_r, self._to_child = _high_pipe()
        self._from_child, from_child_w = _high_pipe()
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _EXEC_WITH_FDS,
                str(to_child_r),
                str(from_child_w),
                exe,
                *FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(to_child_r, from_child_w),
            start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
        except BaseException:
            self.close()
            raise

    # -- protocol ------------------------------------------------------------------------------
    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are skipped)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.command_timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.proc.poll()}): {self.log()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def log(self, tail: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    # -- page --------------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        result = self.send("Page.navigate", session=True, url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot load {url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error in {expression[:80]!r}: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.5) -> Any:
        """Poll `expression` until it is truthy; return its value or raise after `timeout`."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # the page is navigating or not built yet
                value = None
            if value:
                return value
            time.sleep(interval)
        raise BrowserError(f"timed out after {timeout:.0f} s waiting for {expression!r}")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: str | os.PathLike) -> Path:
        import base64

        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
