"""The main job end to end on a local Ray and a real SQLite MLflow store: nested trial runs, their
tags, infeasible proposals, early stopping told to Optuna as pruning, and the Pareto front."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from experiments import tracking
from experiments.search import SearchOptions, run_search
from tests.conftest import ROOT, write_space

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_local):
    """Two launches into one experiment: TPE + ASHA, then random + MO-ASHA with a budget."""
    d = tmp_path_factory.mktemp("search")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    space = write_space(d)
    common = dict(
        tracking_uri=uri,
        storage_path=str(d / "ray"),
        experiment_name="tiny",
        max_concurrent=2,
        verbose=0,
    )
    first = run_search(
        SearchOptions(
            space=str(space), searcher="tpe", scheduler="asha", seed=1, num_samples=8, **common
        )
    )
    budget = write_space(
        d, name="digits_budget.yaml", **{"training:": "budgets: {max_params: 12000}\ntraining:"}
    )
    second = run_search(
        SearchOptions(space=str(budget), searcher="random", seed=2, num_samples=4, **common)
    )
    client = tracking.client_for(uri)
    return d, uri, client, first, second


def _children(client, result):
    exp = client.get_experiment_by_name(result.experiment_name)
    return tracking.trial_runs(client, result.parent_run_id, exp.experiment_id)


def test_trials_are_nested_named_and_tagged(searched):
    _, _, client, first, _ = searched
    runs = _children(client, first)
    trained = [r for r in runs if r.data.tags["status"] != "infeasible"]
    assert len(trained) == 8
    for r in trained:
        tags = r.data.tags
        assert tags["mlflow.parentRunId"] == first.parent_run_id
        assert r.info.run_name == tags["arch"] and "-LruNet-" in tags["arch"]
        assert tags["family"] == "lrunet" and r.data.params["family"] == "lrunet"
        assert tags["status"] in ("completed", "stopped_early")
        assert int(tags["stopped_at_epoch"]) == (
            3 if tags["status"] == "completed" else int(tags["stopped_at_epoch"])
        )
        assert r.info.status == "FINISHED"
        assert {"lr", "reuse_1", "reuse_4", "width", "groups", "dataset"} <= set(r.data.params)
        assert {"val_acc", "params", "mflops", "train_loss"} <= set(r.data.metrics)
        history = client.get_metric_history(r.info.run_id, "val_acc")
        assert [m.step for m in history] == list(range(1, int(tags["stopped_at_epoch"]) + 1))
    statuses = [r.data.tags["status"] for r in trained]
    assert "stopped_early" in statuses and "completed" in statuses


def test_front_only_from_completed_trials(searched):
    _, _, client, first, _ = searched
    runs = {r.info.run_id: r for r in _children(client, first)}
    front_ids = {r.run_id for r in first.front.members}
    assert front_ids
    for rid in front_ids:
        assert runs[rid].data.tags["status"] == "completed"
        assert runs[rid].data.tags["pareto"] == "true"
    for rid, r in runs.items():
        if r.data.tags["status"] != "completed":
            assert "pareto" not in r.data.tags
        elif rid not in front_ids:
            assert r.data.tags["pareto"] == "false"
    # the front is non-dominated among the completed trials
    done = [r for r in runs.values() if r.data.tags["status"] == "completed"]
    for m in front_ids:
        a, p = runs[m].data.metrics["val_acc"], runs[m].data.metrics["params"]
        assert not any(
            r.data.metrics["val_acc"] >= a
            and r.data.metrics["params"] <= p
            and (r.data.metrics["val_acc"], r.data.metrics["params"]) != (a, p)
            for r in done
        )


def test_parent_run_carries_front_artifacts(searched):
    _, _, client, first, _ = searched
    parent = client.get_run(first.parent_run_id)
    names = {a.path for a in client.list_artifacts(first.parent_run_id)}
    assert {
        "pareto.png",
        "pareto_front.csv",
        "pareto_front.json",
        "hypervolume_over_time.png",
        "command.txt",
        "space",
    } <= names
    assert parent.data.metrics["hypervolume"] == pytest.approx(first.front.hypervolume)
    assert parent.data.metrics["hypervolume"] > 0
    assert parent.info.status == "FINISHED"


def test_early_stopped_trials_are_pruned_in_optuna(searched):
    d, _, client, first, _ = searched
    study = optuna.load_study(
        study_name=first.parent_run_id, storage=f"sqlite:///{first.storage_dir}/optuna.db"
    )
    by_lr = {round(t.params["lr"], 12): t for t in study.trials if "lr" in t.params}
    checked = 0
    for r in _children(client, first):
        status = r.data.tags["status"]
        t = by_lr[round(float(r.data.params["lr"]), 12)]
        if status == "stopped_early":
            assert t.state == optuna.trial.TrialState.PRUNED and t.values is None
            checked += 1
        elif status == "completed":
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.values[0] == pytest.approx(r.data.metrics["val_acc"])
    assert checked >= 1


def test_budget_rejects_before_training(searched):
    _, _, client, _, second = searched
    runs = _children(client, second)
    infeasible = [r for r in runs if r.data.tags["status"] == "infeasible"]
    trained = [r for r in runs if r.data.tags["status"] != "infeasible"]
    assert len(trained) == 4
    assert infeasible, "the 12k-param budget should reject some proposals"
    for r in infeasible:
        assert not r.data.metrics  # never trained
        assert "max_params" in r.data.tags["infeasible_reason"]
    for r in trained:
        assert r.data.metrics["params"] <= 12000


def test_two_launches_never_mix(searched):
    _, _, client, first, second = searched
    assert first.parent_run_id != second.parent_run_id
    a = {r.info.run_id for r in _children(client, first)}
    b = {r.info.run_id for r in _children(client, second)}
    assert a and b and not a & b


def test_pareto_command_matches_tags(searched):
    d, uri, client, _, second = searched
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch.py"),
            "pareto",
            "--experiment",
            "tiny",
            "--tracking-uri",
            uri,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=d,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["parent_run_id"] == second.parent_run_id  # the newest search
    tagged = {
        r.info.run_id for r in _children(client, second) if r.data.tags.get("pareto") == "true"
    }
    assert {m["run_id"] for m in out["front"]} == tagged
