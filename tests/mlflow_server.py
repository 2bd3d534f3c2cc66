"""A real `mlflow server` for tests: the README's command (127.0.0.1, SQLite store, proxied
artifacts, no job runner), started in its own process group and stopped with all its workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

START_S = 120.0  # a cold start on a loaded 2-core machine takes 10-40 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as r:  # noqa: S310 (local)
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(
    folder: Path, port: int | None = None, log_name: str = "server.log", db: str = "mlflow.db"
) -> tuple[subprocess.Popen, str]:
    """Start the server on `port` (None: a free one; a port lost to a race gets another try),
    its store `folder/db` and artifacts in `folder/artifacts`, and wait for /health."""
    log_path = folder / log_name
    for _ in range(3 if port is None else 1):
        p = port or free_port()
        url = f"http://127.0.0.1:{p}"
        cmd = [
            *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(p)),
            *("--workers", "1", "--backend-store-uri", f"sqlite:///{folder / db}"),
            *("--artifacts-destination", str(folder / "artifacts")),
        ]
        # the job runner's extra processes cost ~2.5 GB and 30 s of start-up (STACK_NOTES)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_S
        while proc.poll() is None and time.monotonic() < deadline:
            if healthy(url, timeout=2):
                return proc, url
            time.sleep(0.5)
        stop(proc)
        if port is not None or b"address already in use" not in log_path.read_bytes().lower():
            break
    pytest.fail(f"mlflow server did not become healthy:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, sigs=(signal.SIGTERM, signal.SIGKILL)) -> None:
    """End the server and its uvicorn worker: their whole process group, which it leads
    (`sigs=(SIGKILL,)`: a crash, as a test of an outage wants)."""
    for sig in sigs:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the group is gone
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            continue
        break
    proc.wait(timeout=10)
