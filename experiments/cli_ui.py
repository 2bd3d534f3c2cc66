"""`python launch.py ui [--tracking-uri URI] [--port P]`: the MLflow UI for the store a search
used, and the URL of its newest search's front.

For a local store (SQLite, the default `sqlite:///./mlflow.db`) it starts `mlflow server` on
127.0.0.1 (one worker, no job runner: ready in seconds instead of 45, STACK_NOTES.md), prints the
front's URL once the server answers, and runs until Ctrl-C, which stops the server and its
worker. For a tracking server (`http(s)://...`) there is nothing to start: it prints the URL.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from experiments import tracking

START_S = 120.0  # a cold start on a loaded 2-core machine takes 10-40 s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db)")
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (5000)")


def newest_search(client):
    """(experiment, parent run) of the newest search in the store, or (None, None)."""
    experiments = {e.experiment_id: e for e in client.search_experiments(max_results=1000)}
    if not experiments:
        return None, None
    runs = client.search_runs(
        list(experiments),
        f"tags.`{tracking.ROLE_TAG}` = '{tracking.PARENT_ROLE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None, None
    return experiments[runs[0].info.experiment_id], runs[0]


def _lines(base: str, client) -> list[str]:
    from experiments.search_summary import front_url

    exp, parent = newest_search(client)
    if parent is None:
        return [f"MLflow UI: {base}  (no search in this store yet)"]
    first = (parent.data.params.get("objectives") or "val_acc").split(",")[0]
    return [
        f"MLflow UI: {base}",
        f"newest search: {exp.name} / {parent.info.run_name}",
        f"  its front:   {front_url(base, exp.experiment_id, first)}",
        f"  its run:     {base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}",
    ]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:  # noqa: S310 (local)
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run(args: argparse.Namespace) -> int:
    uri = (
        args.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or tracking.default_tracking_uri()
    )
    tracking.check_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        print("\n".join(_lines(uri.rstrip("/"), tracking.client_for(uri))), flush=True)
        return 0
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"--tracking-uri {uri!r}: launch.py ui serves sqlite:///PATH.db stores")
    if not os.path.exists(uri.removeprefix("sqlite:///")):
        raise FileNotFoundError(
            f"no MLflow store at {uri}; run a search first or pass --tracking-uri"
        )
    if not 1 <= args.port <= 65535 or not _port_free(args.port):
        raise ValueError(f"port {args.port} on 127.0.0.1 is in use or invalid; pass --port")
    base = f"http://127.0.0.1:{args.port}"
    cmd = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"),
        *("--port", str(args.port), "--workers", "1", "--backend-store-uri", uri),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_S
        while not _healthy(base):
            if proc.poll() is not None:
                raise ConnectionError(
                    f"mlflow server exited with code {proc.returncode} before answering; run "
                    f"`{' '.join(cmd)}` to see why"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mlflow server did not answer {base}/health in {START_S:.0f} s"
                )
            time.sleep(0.5)
        lines = [*_lines(base, tracking.client_for(uri)), "Ctrl-C stops it."]
        print("\n".join(lines), flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(proc)
    return 0


def _stop(proc: subprocess.Popen) -> None:
    """End the server and its worker: the process group it leads."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue
