"""A two-node Ray cluster on one machine, started with the commands of README "Running on a
cluster" (token auth, `ray start --head`, `ray start --address`), and a search that joins it
with `--address`: trials land on both nodes; then the worker node dies mid-search (all its
processes SIGKILLed) and its trial is rescheduled on the head from its checkpoint, and the
search completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import tracking
from tests.conftest import write_space
from tests.mlflow_server import free_port
from tests.test_fault_tolerance import (
    assert_clean_history,
    cli_env,
    cmdline,
    descendants,
    end_processes,
    pids_with,
    ray_tmp_dir,
    search_cmd,
    trial_runs,
    wait_for,
)
from trainables.trainable import NODE_ID

RAY = str(Path(sys.executable).with_name("ray"))
_ray_tmp_fixture = pytest.fixture(ray_tmp_dir, name="ray_tmp")
EPOCHS = 3

pytestmark = [pytest.mark.slow]


def _start_node(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """`ray start ... --block` in the background; returns it and its node id once it is up."""
    p = subprocess.Popen(
        [RAY, "start", "--block", *args], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT
    )

    def node_id() -> str | None:
        for pid in descendants(p.pid):
            words = cmdline(pid).split()
            if words and words[0].endswith("/raylet"):
                ids = [w.split("=", 1)[1] for w in words if w.startswith("--node_id=")]
                if ids and "Ray runtime started" in log.read_text():
                    return ids[0]
        return None

    return p, wait_for(node_id, 90, f"ray start {' '.join(args)}", p)


def test_two_nodes_run_trials_and_survive_losing_one(tmp_path, ray_tmp):
    home = tmp_path / "home"
    home.mkdir()
    rt = ray_tmp
    port = free_port()
    # README "Running on a cluster": a token on the head (copied to every node), token mode on
    # every node
    node_env = cli_env(rt, HOME=str(home), RAY_AUTH_MODE="token")
    subprocess.run(
        [RAY, "get-auth-token", "--generate"],
        env=node_env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (home / ".ray" / "auth_token").is_file()
    nodes: list[subprocess.Popen] = []
    driver = None
    try:
        head, head_id = _start_node(
            [
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=1",
                "--include-dashboard=false",
            ],
            node_env,
            tmp_path / "head.log",
        )
        nodes.append(head)
        worker, worker_id = _start_node(
            [f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1"],
            node_env,
            tmp_path / "worker.log",
        )
        nodes.append(worker)
        assert head_id != worker_id

        space = write_space(tmp_path, **{"max_epochs: 3": f"max_epochs: {EPOCHS}"})
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        cmd = search_cmd(space, tmp_path, "--num-samples", "3", "--address", f"127.0.0.1:{port}")
        # the driver's environment has no RAY_AUTH_MODE: it finds the token in ~/.ray itself
        driver_env = cli_env(rt, HOME=str(home))
        driver_env.pop("RAY_AUTH_MODE", None)
        log = open(tmp_path / "search.log", "w")
        driver = subprocess.Popen(
            cmd, cwd=tmp_path, env=driver_env, stdout=log, stderr=subprocess.STDOUT
        )

        def both_nodes_busy():
            client = tracking.client_for(uri)
            on = {}
            for r in trial_runs(uri, "ft"):
                steps = len(client.get_metric_history(r.info.run_id, "val_acc"))
                if r.data.tags.get(NODE_ID) and 1 <= steps < EPOCHS:
                    on[r.data.tags[NODE_ID]] = r.data.tags["trial_id"]
            return on if {head_id, worker_id} <= set(on) else None

        on = wait_for(both_nodes_busy, 240, "a trial training on each node", driver)
        victim = on[worker_id]
        # the worker machine dies: every process of that node, at once
        end_processes([*descendants(worker.pid), worker.pid], timeout=5)
        assert driver.wait(timeout=300) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        for node in reversed(nodes):  # `ray start --block` ends its node's processes on SIGTERM
            end_processes([node.pid], timeout=30)
        end_processes(pids_with(rt))

    client = tracking.client_for(uri)
    runs = {r.data.tags["trial_id"]: r for r in trial_runs(uri, "ft")}
    assert len(runs) == 3
    for r in runs.values():
        assert r.info.status == "FINISHED" and r.data.tags["status"] == tracking.COMPLETED
        assert_clean_history(client, r, EPOCHS)
        assert r.data.tags[NODE_ID] in (head_id, worker_id)
    moved = runs[victim].data.tags
    assert moved[NODE_ID] == head_id  # rescheduled on the surviving node
    assert moved[tracking.RETRIES_TAG] == "1", moved
    parent = [
        r
        for r in client.search_runs([client.get_experiment_by_name("ft").experiment_id])
        if r.data.tags.get(tracking.ROLE_TAG) == tracking.PARENT_ROLE
    ]
    assert parent[0].info.status == "FINISHED"


def test_unreachable_cluster_address_fails_fast(tmp_path, ray_tmp):
    """--address where nothing listens: one line naming the fix within seconds, no local Ray."""
    rt = ray_tmp
    port = free_port()  # nothing listens there
    space = write_space(tmp_path)
    t0 = time.time()
    p = subprocess.run(
        search_cmd(space, tmp_path, "--address", f"127.0.0.1:{port}"),
        cwd=tmp_path,
        env=cli_env(rt),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert p.stderr.startswith(
        f"launch.py search: error: cannot join the Ray cluster at '127.0.0.1:{port}'"
    )
    assert "ray start --head" in p.stderr
    assert time.time() - t0 < 15
    assert not os.path.exists(os.path.join(rt, "ray"))  # no local Ray was started instead
