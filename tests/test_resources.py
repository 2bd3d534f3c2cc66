"""A search asking more of a node than any node offers (GPUs on a machine without one, more CPUs
than the machine has) stops at once: exit 2 with one line naming what the nodes have, no trial
started and no run left RUNNING (Tune would otherwise wait forever for such a node)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from experiments import tracking
from tests.conftest import write_space
from tests.test_fault_tolerance import LAUNCH, cli_env, ray_tmp_dir

_ray_tmp_fixture = pytest.fixture(ray_tmp_dir, name="ray_tmp")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "flags,says",
    [
        (["--gpus-per-trial", "1"], "--gpus-per-trial 1: no node (this machine) offers that many"),
        (["--cpus-per-trial", "512"], "--cpus-per-trial 512: no node (this machine) offers"),
    ],
    ids=["gpus", "cpus"],
)
def test_impossible_trial_resources_exit_2_fast(tmp_path, ray_tmp, flags, says):
    if flags[0] == "--gpus-per-trial" and _gpus():
        pytest.skip("this machine has a GPU: asking for one is possible")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.client_for(uri).search_experiments()  # an existing store, as a user's would be
    cmd = [
        sys.executable, LAUNCH, "--space", str(write_space(tmp_path)), "--tracking-uri", uri,
        "--storage-path", str(tmp_path / "ray"), "--experiment-name", "res", *flags,
    ]  # fmt: skip
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=tmp_path, env=cli_env(ray_tmp), capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, p.stderr[-3000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert says in lines[0] and "CPUs" in lines[0] and "GPUs" in lines[0], lines[0]
    assert elapsed < 15, f"took {elapsed:.1f} s"
    client = tracking.client_for(uri)
    exp = client.get_experiment_by_name("res")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    assert not [r for r in runs if r.info.status == "RUNNING"], runs
    assert not runs, "no run should exist: the search stopped before opening its parent run"
    assert not list((tmp_path / "ray").glob("**/trial_*")), "a trial was started"
