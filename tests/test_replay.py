"""Record and replay end to end on a local Ray and real SQLite MLflow stores: `launch.py record`
of a real (tiny) finished grid search, then searches whose trials replay recorded curves through
the real Tune loop, schedulers, searchers and tracking: the shipped table at `--num-samples 12`
in under a minute, with runs, tags and a front like a real search's; the same seed gives the
same decisions; a space the table does not cover is one line and exit code 2 before Ray starts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from experiments import tracking
from experiments.cli_record import record
from experiments.curve_table import load_table
from experiments.replay import REPLAY_TAG
from experiments.search import SearchOptions, run_search
from search_spaces.loader import load_space
from tests.conftest import ROOT, write_space

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

GRID = """\
description: a 3-configuration grid on digits, recorded by a test
dataset: digits
model:
  family: {choice: [lrunet, dacnn]}
  lrunet:
    reuse: {choice: [1, 2]}
    width: 0.125
    groups: 2
  dacnn:
    body: vgg
    stages: 2
    blocks_1: 1
    blocks_2: 1
    width: 8
recipe:
  lr: 0.1
  batch_size: 64
  schedule: cosine
training:
  max_epochs: 2
  grace_epochs: 2
  num_samples: 3
"""
SHIPPED = ROOT / "benchmarks" / "tables" / "fmnist_lru_dacnn.csv"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, ray_local):
    d = tmp_path_factory.mktemp("record")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    space = write_space(d, GRID, name="digits_grid.yaml")
    result = run_search(
        SearchOptions(
            space=str(space),
            scheduler="fifo",
            tracking_uri=uri,
            storage_path=str(d / "ray"),
            experiment_name="grid",
            max_concurrent=2,
            verbose=0,
        )
    )
    table = record("grid", d / "tables" / "grid.csv", uri, argv=["launch.py", "record"])
    return d, uri, space, result, table


def _trials(uri: str, result) -> list:
    client = tracking.client_for(uri)
    return tracking.trial_runs(client, result.parent_run_id, result.experiment_id)


def test_record_writes_every_curve_as_mlflow_holds_it(recorded):
    _, uri, space, result, table = recorded
    spec = load_space(str(space))
    assert table.configs == list(spec.grid()) and table.epochs == 2
    assert sorted(table.families) == ["dacnn", "lrunet", "lrunet"]
    client = tracking.client_for(uri)
    runs = {r.data.tags["arch"]: r for r in _trials(uri, result)}
    assert set(runs) == set(table.archs)
    for cid, arch in enumerate(table.archs):
        run = runs[arch]
        assert table.nodes[cid] == run.data.tags["node_id"] != ""
        # every numeric metric the run logged, not a fixed list
        assert set(run.data.metrics) <= set(table.metrics)
        for key in run.data.metrics:
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            assert [r[key] for r in table.curve(cid)] == [history[1], history[2]]
    p = table.provenance
    assert p["space_yaml"] == space.read_text() and p["subset"] is None
    assert p["dataset"] == "digits" and p["parent_run_id"] == result.parent_run_id
    assert p["commit"] != "unknown" and p["command"] and p["created"] and p["machine"]
    assert p["trial_seconds"] == pytest.approx(
        sum(r["epoch_seconds"] for r in table.rows), rel=1e-9
    )


def test_record_refuses_an_unfinished_grid(recorded, tmp_path):
    d, _, _, result, _ = recorded
    partial = tmp_path / "mlflow.db"
    shutil.copy(d / "mlflow.db", partial)  # the same store, one trial left stopped early
    uri = f"sqlite:///{partial}"
    run = _trials(uri, result)[0]
    tracking.client_for(uri).set_tag(run.info.run_id, "status", "stopped_early")
    with pytest.raises(ValueError, match="2 of 3 configurations completed"):
        record("grid", tmp_path / "partial.csv", uri)
    assert not (tmp_path / "partial.csv").exists()


def _replay(d, uri: str, name: str, **kw):
    t0 = time.time()
    result = run_search(
        SearchOptions(
            replay=str(SHIPPED),
            num_samples=12,
            tracking_uri=uri,
            storage_path=str(d / "ray"),
            experiment_name=name,
            verbose=0,
            **kw,
        )
    )
    return result, time.time() - t0


def _decisions(uri: str, result) -> dict[str, tuple[str, str]]:
    return {
        r.data.tags["arch"]: (r.data.tags["status"], r.data.tags["stopped_at_epoch"])
        for r in _trials(uri, result)
    }


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, ray_local):
    """The shipped table replayed twice with the same seed, successive halving switched on."""
    if not SHIPPED.exists():
        pytest.skip("the shipped table is built by a benchmark run (benchmarks/RESULTS.md)")
    d = tmp_path_factory.mktemp("replay")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    first, wall = _replay(d, uri, "replay-a", seed=3, grace_epochs=1, reduction_factor=3)
    second, _ = _replay(d, uri, "replay-b", seed=3, grace_epochs=1, reduction_factor=3)
    return d, uri, first, second, wall


def test_replay_of_the_shipped_table_looks_like_a_real_search(replayed):
    _, uri, first, _, wall = replayed
    assert wall < 60
    table = load_table(SHIPPED)
    client = tracking.client_for(uri)
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["search_status"] == "finished"
    assert parent.data.tags[REPLAY_TAG] == str(SHIPPED.resolve())
    assert first.experiment_name == "replay-a"
    runs = _trials(uri, first)
    assert len(runs) == 12 and len({r.data.tags["arch"] for r in runs}) == 12
    statuses = {r.data.tags["status"] for r in runs}
    assert statuses <= {"completed", "stopped_early"} and "stopped_early" in statuses
    on_front = 0
    for r in runs:
        tags = r.data.tags
        assert tags["mlflow.parentRunId"] == first.parent_run_id and tags["trial_id"]
        assert tags["family"] in ("lrunet", "dacnn") and tags["node_id"]
        assert r.info.status == "FINISHED" and r.info.run_name == tags["arch"]
        cid = table.archs.index(tags["arch"])
        stopped = int(tags["stopped_at_epoch"])
        assert (tags["status"] == "completed") == (stopped == table.epochs)
        history = sorted(client.get_metric_history(r.info.run_id, "val_acc"), key=lambda m: m.step)
        assert [m.value for m in history] == [row["val_acc"] for row in table.curve(cid)][:stopped]
        on_front += tags.get("pareto") == "true"
    # the front: completed trials only, tagged like a real search's and logged on the parent
    assert on_front == len(first.front.members) >= 1
    assert all(m.status == "completed" for m in first.front.members)
    assert first.front.hypervolume > 0
    artifacts = {a.path for a in client.list_artifacts(first.parent_run_id)}
    assert any("pareto" in a for a in artifacts), artifacts


def test_the_same_seed_gives_the_same_decisions(replayed):
    _, uri, first, second, _ = replayed
    a, b = _decisions(uri, first), _decisions(uri, second)
    assert a == b
    assert {s for s, _ in a.values()} == {"completed", "stopped_early"}


def test_a_time_budget_pauses_and_resumes_what_successive_halving_stops(replayed):
    d, uri, first, _, _ = replayed
    # one trial at a time on the 2-CPU Ray (pausing bounds concurrency by resources), with time
    # to spare: every trial the rung rule stops waits, and resumes once the 12 were tried
    budgeted, _ = _replay(
        d, uri, "replay-budget", seed=3, grace_epochs=1, reduction_factor=3,
        time_budget_s=600, cpus_per_trial=2,
    )  # fmt: skip
    plain, paused = _decisions(uri, first), _decisions(uri, budgeted)
    assert set(paused) == set(plain)  # the same 12 configurations (same seed)
    assert "stopped_early" in {s for s, _ in plain.values()}
    assert {s for s, _ in paused.values()} == {"completed"}
    client = tracking.client_for(uri)
    assert float(client.get_run(budgeted.parent_run_id).data.params["time_budget_s"]) == 600
    table = load_table(SHIPPED)
    for r in _trials(uri, budgeted):  # resumed from the epoch after the pause, each epoch once
        history = client.get_metric_history(r.info.run_id, "val_acc")
        curve = table.curve(table.archs.index(r.data.tags["arch"]))
        assert sorted(m.step for m in history) == list(range(1, table.epochs + 1))
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == [
            row["val_acc"] for row in curve
        ]


def test_trials_the_time_budget_ends_are_finished_not_left_running(replayed):
    d, uri, _, _, _ = replayed
    # 1.5 s per replayed epoch: the budget ends the search with trials in flight
    ended, wall = _replay(d, uri, "replay-short", seed=3, time_budget_s=6, time_scale=10)
    assert wall < 60
    runs = _trials(uri, ended)
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["status"] for r in runs} <= {"completed", "stopped_early"}
    assert "stopped_early" in {r.data.tags["status"] for r in runs}
    parent = tracking.client_for(uri).get_run(ended.parent_run_id)
    assert parent.data.tags["search_status"] == "finished"


def test_a_space_the_table_does_not_cover_fails_before_ray(tmp_path):
    if not SHIPPED.exists():
        pytest.skip("the shipped table is built by a benchmark run")
    wider = tmp_path / "wider.yaml"
    text = (SHIPPED.with_suffix(".yaml")).read_text()
    wider.write_text(text.replace("reuse: {choice: [2, 3, 4]}", "reuse: {choice: [2, 3, 5]}"))
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "launch.py", "--replay", str(SHIPPED), "--space", str(wider)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no curve for 5-LruNet" in lines[0] and "omit --space" in lines[0]
    assert time.time() - t0 < 60 and "Started a local Ray" not in proc.stderr
