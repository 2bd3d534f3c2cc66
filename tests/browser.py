"""Headless Chromium for the UI tests: Playwright's sync API driving the system browser.

Playwright's own browser download (`playwright install`) is never used: Chromium is the system's
(Debian's `chromium`), found on PATH or at /usr/bin/chromium. The pages are single-page apps, so
every check waits on a JavaScript predicate with an explicit timeout (a slow, shared machine makes
a test slower, not flaky), and a failed check leaves a screenshot beside the test's temp files.

    with launch() as browser:
        pages = Pages(browser, "http://127.0.0.1:5000", tmp_path)
        with pages.page("runs") as page:
            pages.open(page, "/experiments/1/runs", "document.links.length > 3", "runs")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError:  # the module must import so the tests can skip with a reason
    sync_playwright = None

    class PlaywrightError(Exception):  # type: ignore[no-redef]
        pass


if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 60_000  # default for every Playwright action and navigation


def find_chromium() -> str | None:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.access(path, os.X_OK) else None


CHROMIUM = find_chromium()


def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if sync_playwright is None:
        return "playwright is not importable (pip install -e '.[test]')"
    if CHROMIUM is None:
        return "no Chromium executable on PATH or at /usr/bin/chromium (apt-get install chromium)"
    return None


@contextlib.contextmanager
def launch() -> Iterator[Browser]:
    """The system Chromium, headless, closed (with Playwright's driver) however the block ends."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(FLAGS), timeout=TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


def predicate(expression: str) -> str:
    """A page function that is true once `expression` is (an exception, e.g. while the app is
    still building the page, counts as not yet)."""
    return f"() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }}"


class Pages:
    """Fresh pages on one browser, loaded with retries, with screenshots of failures."""

    def __init__(self, browser: Browser, base: str, shots: Path) -> None:
        self.browser, self.base, self.shots = browser, base, shots

    @contextlib.contextmanager
    def page(self, name: str) -> Iterator[Page]:
        """A page in its own context for one check; any failure inside saves `name`-failed.png."""
        context = self.browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        try:
            yield page
        except Exception as e:
            try:
                e.add_note(f"screenshot: {self.shot(page, f'{name}-failed')}")
            except PlaywrightError as shot_error:
                e.add_note(f"no screenshot: {shot_error}")
            raise
        finally:
            context.close()

    def open(self, page: Page, route: str, ready: str, name: str, attempts: int = 3) -> None:
        """Load `#route` until `ready` holds; each attempt reloads and waits longer."""
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                if attempt > 1:  # a hash-only change would not reload the app
                    page.goto("about:blank")
                page.goto(f"{self.base}/#{route}")
                page.wait_for_function(predicate(ready), polling=500, timeout=30_000 * attempt)
                return
            except PlaywrightError as e:
                last = e
        raise AssertionError(
            f"{name}: {route} never showed {ready!r} ({last}); page text:\n{text(page)[:1500]}"
        )

    def wait(self, page: Page, ready: str, name: str, timeout: float = 30.0) -> None:
        """Wait for `ready` on the current page; fail (with a screenshot) if it never holds."""
        try:
            page.wait_for_function(predicate(ready), polling=500, timeout=timeout * 1000)
        except PlaywrightError as e:
            raise AssertionError(f"{name}: {ready!r} never held: {e}") from None

    def settled(self, page: Page, expression: str, timeout: float = 30.0) -> Any:
        """The value of `expression` once it is non-empty and the same over three polls."""
        deadline = time.monotonic() + timeout
        seen: list[object] = []
        while time.monotonic() < deadline:
            value = page.evaluate(expression)
            seen = [*seen[-2:], value]
            if value and len(seen) == 3 and seen[0] == seen[1] == seen[2]:
                return value
            page.wait_for_timeout(700)
        raise AssertionError(f"the page never settled on a value of {expression[:100]!r}")

    def shot(self, page: Page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path))
        return path


def text(page: Page) -> str:
    """The page's visible text."""
    return page.evaluate("document.body ? document.body.innerText : ''") or ""
