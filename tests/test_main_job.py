"""The README's main job, exactly: `python launch.py --space lru_smoke` on real Fashion-MNIST.

Done when (issue 5): it finishes in under 10 minutes on a 2-core machine with at least 8 trials,
some stopped early by successive halving, and a front of at least 3 architectures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from experiments import tracking
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]


def test_lru_smoke_search(tmp_path):
    from trainables.data import load_dataset

    try:
        load_dataset("fashionmnist")
    except FileNotFoundError as e:
        pytest.skip(f"real Fashion-MNIST is not installed: {e}")
    t0 = time.time()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # default store
    p = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "--space", "lru_smoke"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=660,
    )
    elapsed = time.time() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    assert elapsed < 600, f"lru_smoke took {elapsed:.0f} s"
    assert "Pareto front of lrunet-lru_smoke" in p.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in p.stdout

    client = tracking.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrunet-lru_smoke")
    parent = tracking.latest_parent_run(client, exp.experiment_id)
    runs = tracking.trial_runs(client, parent.info.run_id, exp.experiment_id)
    status = [r.data.tags["status"] for r in runs]
    assert len([s for s in status if s in ("completed", "stopped_early")]) >= 8
    assert "stopped_early" in status
    front = [r for r in runs if r.data.tags.get("pareto") == "true"]
    assert len({r.data.tags["arch"] for r in front}) >= 3, status
    assert not [r for r in runs if r.info.status == "RUNNING"]
