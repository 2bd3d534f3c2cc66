"""`launch.py ui`: starts a real MLflow UI on 127.0.0.1 for a SQLite store, prints the newest
search's front URL once the server answers, serves that search's runs, and stops server and
worker on Ctrl-C; bad stores and busy ports are one line, exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from experiments import tracking
from tests.conftest import ROOT
from tests.mlflow_server import free_port

LAUNCH = str(ROOT / "launch.py")


def _store(tmp_path) -> tuple[str, str, str]:
    """A SQLite store holding an older and a newer search (parent runs as the search writes
    them); returns (uri, newest experiment id, newest parent run id)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client_for(uri)
    ids = []
    for name in ("older", "newer"):
        exp = client.create_experiment(name, artifact_location=(tmp_path / "art").as_uri())
        run = client.create_run(
            exp, run_name=f"{name}-search", tags={tracking.ROLE_TAG: tracking.PARENT_ROLE}
        )
        client.log_param(run.info.run_id, "objectives", "val_acc,params")
        client.set_terminated(run.info.run_id)
        ids.append((exp, run.info.run_id))
        time.sleep(0.05)  # distinct start times
    return uri, *ids[-1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ui_serves_the_store_and_prints_the_newest_front(tmp_path):
    uri, exp_id, run_id = _store(tmp_path)
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, LAUNCH, "ui", "--tracking-uri", uri, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while not any(line.startswith("Ctrl-C") for line in lines):
            assert time.monotonic() < deadline and p.poll() is None, (lines, p.stderr.read())
            lines.append(p.stdout.readline().strip())
        text = "\n".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"MLflow UI: {base}" in text and "newest search: newer / newer-search" in text
        assert f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning" in text
        assert "searchFilter=tags.pareto" in text and f"runs/{run_id}" in text
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:  # the UI's page
            assert r.status == 200 and b"<html" in r.read(2000).lower()
        api = f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}"
        with urllib.request.urlopen(api, timeout=10) as r:  # the store behind it
            assert json.loads(r.read())["run"]["info"]["run_name"] == "newer-search"
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _listening(port), "the server outlived Ctrl-C"
    finally:
        if p.poll() is None:
            p.kill()


def test_ui_errors_are_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LRUNET_DEBUG", "MLFLOW_TRACKING_URI")}
    missing = subprocess.run(
        [sys.executable, LAUNCH, "ui", "--tracking-uri", f"sqlite:///{tmp_path / 'no.db'}"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "no MLflow store at" in missing.stderr and "run a search first" in missing.stderr
    uri, _, _ = _store(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [sys.executable, LAUNCH, "ui", "--tracking-uri", uri, "--port", str(port)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert taken.returncode == 2 and len(taken.stderr.strip().splitlines()) == 1
    assert f"port {port} on 127.0.0.1 is in use" in taken.stderr and "--port" in taken.stderr
