"""`BufferedWriter`: MLflow writes, in order, that survive a tracking server going away.

If the tracking server goes away mid-run, writes are kept in order in an in-memory queue, retried
every few seconds and, at the end, for as long as the caller's patience allows
(`experiments.trial_tracker.FINAL_FLUSH_S`), so metrics are delayed, not lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from lrunet.io import first_line

log = logging.getLogger(__name__)


class BufferedWriter:
    """MLflow writes that survive a tracking server going away.

    Each write is a thunk run in submission order. A failure (server down, timeout, 5xx) keeps it
    and everything after it queued; the queue is retried at most every `retry_every_s` seconds on
    later writes (so an outage does not stall Tune on every event) and with patience by `flush`.
    A thunk may resolve its run lazily, so even a trial that starts during an outage gets its run.
    """

    def __init__(self, client, retry_every_s: float = 5.0) -> None:
        self.client = client
        self.retry_every_s = retry_every_s
        self.pending: list[tuple[str, Callable[[], Any]]] = []
        self.warned = False
        self._next_try = 0.0

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue `client.<method>(*args, **kwargs)`."""
        self.submit(method, lambda: getattr(self.client, method)(*args, **kwargs))

    def submit(self, what: str, thunk: Callable[[], Any]) -> None:
        self.pending.append((what, thunk))
        if time.monotonic() >= self._next_try:
            self.flush(attempts=1)

    def flush(self, attempts: int = 1, wait_s: float = 2.0) -> bool:
        for attempt in range(attempts):
            while self.pending:
                what, thunk = self.pending[0]
                try:
                    thunk()
                except Exception as e:
                    if _is_permanent(e):
                        log.warning("MLflow rejected %s: %s", what, first_line(e))
                        self.pending.pop(0)
                        continue
                    if not self.warned:
                        log.warning(
                            "MLflow unreachable (%s); buffering %d write(s) for retry",
                            first_line(e)[:160],
                            len(self.pending),
                        )
                        self.warned = True
                    self._next_try = time.monotonic() + self.retry_every_s
                    break
                self.pending.pop(0)
            if not self.pending:
                if self.warned:
                    log.warning("MLflow reachable again; buffered writes delivered")
                    self.warned = False
                self._next_try = 0.0
                return True
            if attempt + 1 < attempts:
                time.sleep(wait_s)
        return False


def _is_permanent(e: Exception) -> bool:
    """An error that retrying cannot fix (a bad value, a bug): logged and dropped."""
    if isinstance(e, (TypeError, KeyError, AttributeError)):
        return True
    code = getattr(e, "error_code", "")
    return code in (
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_ALREADY_EXISTS",
        "RESOURCE_DOES_NOT_EXIST",
        "BAD_REQUEST",
    )
