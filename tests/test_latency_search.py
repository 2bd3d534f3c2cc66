"""Hardware-aware search end to end on a local Ray and a real SQLite MLflow store: every trial
measures its latency before training and logs it, the front is over three objectives, and a
`max_latency_ms` budget rejects a configuration in the trial's first seconds, before any epoch,
recorded as infeasible and told to the searcher (Optuna: pruned, its budget constraint
violated)."""

from __future__ import annotations

import optuna
import pytest

from experiments import tracking
from experiments.search import SearchOptions, optuna_storage_url, run_search
from lrunet import metrics as M
from search_spaces import load_space
from tests.conftest import write_space

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SPACE = """\
description: accuracy, params and latency on digits, for tests
dataset: digits
model:
  reuse_1: {randint: [1, 2]}
  reuse_2: 1
  reuse_3: 1
  reuse_4: {randint: [1, 2]}
  width: {choice: [0.125, 0.25]}
  groups: 2
recipe:
  lr: 0.1
  batch_size: 64
  schedule: cosine
objectives:
  - {metric: val_acc, mode: max}
  - {metric: params, mode: min}
  - {metric: latency_ms, mode: min}
measure:
  latency: {target: cpu1, batch_size: 8}
budgets:
  max_latency_ms: BUDGET
training:
  max_epochs: 2
  grace_epochs: 2
  num_samples: 3
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local):
    """One search within a generous latency budget, one whose budget no network can meet."""
    d = tmp_path_factory.mktemp("latency")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    common = dict(tracking_uri=uri, storage_path=str(d / "ray"), max_concurrent=2, verbose=0)
    ok = write_space(d, SPACE.replace("BUDGET", "5000"), name="latency_ok.yaml")
    within = run_search(SearchOptions(space=str(ok), experiment_name="within", seed=1, **common))
    tight = write_space(d, SPACE.replace("BUDGET", "0.0001"), name="latency_tight.yaml")
    over = run_search(
        SearchOptions(space=str(tight), experiment_name="over", searcher="tpe", seed=2, **common)
    )
    return d, tracking.client_for(uri), within, over


def _runs(client, result):
    exp = client.get_experiment_by_name(result.experiment_name)
    return tracking.trial_runs(client, result.parent_run_id, exp.experiment_id)


def test_every_trial_logs_its_latency_and_the_front_has_three_objectives(searched):
    _, client, within, _ = searched
    runs = _runs(client, within)
    assert len(runs) == 3 and all(r.data.tags["status"] == "completed" for r in runs)
    for r in runs:
        history = client.get_metric_history(r.info.run_id, M.LATENCY_MS)
        assert sorted(m.step for m in history) == [1, 2]  # reported with every epoch
        assert len({m.value for m in history}) == 1  # measured once, before training
        assert 0 < history[0].value < 5000
        for key in (M.LATENCY_IQR_MS, M.LATENCY_BATCH_MS, M.LATENCY_SECONDS):
            assert key in r.data.metrics
    front = within.front
    assert front.metrics == [M.VAL_ACC, M.PARAMS, M.LATENCY_MS]
    assert front.members and front.hypervolume > 0
    assert front.reference_point == [0.0, front.reference_point[1], 5000.0]
    parent = client.get_run(within.parent_run_id)
    assert parent.data.params["objectives"] == "val_acc,params,latency_ms"
    assert parent.data.params["max_latency_ms"] == "5000.0"
    artifacts = {a.path for a in client.list_artifacts(within.parent_run_id)}
    assert "pareto.png" in artifacts


def test_a_latency_budget_rejects_before_any_epoch(searched):
    _, client, _, over = searched
    runs = _runs(client, over)
    assert len(runs) == 3 and over.infeasible == 3 and not over.front.members
    for r in runs:
        tags, metrics = r.data.tags, r.data.metrics
        assert tags["status"] == "infeasible" and tags["stopped_at_epoch"] == "0"
        assert "> max_latency_ms 0.0001" in tags["infeasible_reason"]
        assert tags["infeasible_reason"].startswith(tags["arch"])
        assert M.LATENCY_MS in metrics and M.PARAMS in metrics
        # no epoch was trained: nothing the training loop reports reached MLflow
        assert not {M.TRAIN_LOSS, M.VAL_ACC, M.EPOCH_SECONDS} & set(metrics)
        assert r.info.status == "FINISHED"
    # Optuna heard each rejection as a pruned trial whose budget constraint is violated
    storage = optuna_storage_url(over.storage_dir)
    study = optuna.load_study(study_name=over.parent_run_id, storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 3
    assert all(t.system_attrs.get("constraints:budget") == 1.0 for t in study.trials)


def test_the_shipped_latency_space_loads_with_three_objectives():
    spec = load_space("lru_latency_smoke")
    assert spec.metrics == [M.VAL_ACC, M.PARAMS, M.LATENCY_MS]
    assert spec.dataset == "fashionmnist" and spec.measure["latency"]["target"] == "cpu1"
    assert spec.budgets.max_latency_ms == spec.reference_point[-1]
