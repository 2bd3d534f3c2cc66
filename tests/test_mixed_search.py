"""One search across families (conditional knobs): contract tests that drive every searcher with
synthetic results, no training (a family's suggestion never carries another family's knob, the
searcher's state survives save/restore, budgets reject before training), and one end-to-end
mixed search on a local Ray whose driver is killed and `--resume`d."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from experiments import tracking
from experiments.searchers import SEARCHERS, build_searcher
from lrunet.recipe import split_trial_config, trial_keys
from search_spaces import load_space
from tests.conftest import MIXED_SPACE, write_space
from tests.test_fault_tolerance import (
    LAUNCH,
    cli_env,
    pids_with,
    ray_tmp_dir,
    search_cmd,
    trial_runs,
    wait_for,
)

_ray_tmp_fixture = pytest.fixture(ray_tmp_dir, name="ray_tmp")


@pytest.fixture
def spec(tmp_path):
    return load_space(str(write_space(tmp_path, MIXED_SPACE, name="mixed.yaml")))


def _fake_result(spec, flat, rng) -> dict:
    c = spec.counts(flat)
    return {"val_acc": rng.uniform(10, 90), "params": c.params, "training_iteration": 2}


def _drive(searcher, spec, n: int, seed: int = 0, start: int = 0) -> list[dict]:
    """Ask `n` suggestions, completing each with synthetic full-budget results."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        flat = spec.complete(config)
        out.append(config)
        searcher.on_trial_complete(f"t{i}", result=_fake_result(spec, flat, rng))
    return out


@pytest.mark.parametrize("kind", SEARCHERS)
def test_a_suggestion_carries_only_its_own_familys_knobs(spec, kind):
    searcher = build_searcher(kind, spec, seed=1, max_epochs=2)
    suggestions = _drive(searcher, spec, 30)
    seen = set()
    for config in suggestions:
        flat = spec.complete(config)
        family = flat["family"]
        seen.add(family)
        assert set(config) <= set(trial_keys(family)), (kind, config)
        assert not any("." in k for k in config), config  # no searcher-internal names leak
        cfg, _ = split_trial_config(flat, **spec.geometry)
        assert type(cfg).__name__.lower().startswith(family[:5])
    assert seen == {"lrunet", "dacnn", "mobilenetv2"}, (kind, seen)


def test_random_sampling_draws_the_family_first(spec):
    rng = random.Random(0)
    for _ in range(500):
        flat = spec.sample(rng)
        assert set(flat) <= set(trial_keys(flat["family"]))
        assert set(spec.blocks[flat["family"]]) <= set(flat)


@pytest.mark.parametrize("kind", SEARCHERS)
def test_searcher_state_survives_save_and_restore(spec, kind, tmp_path):
    a = build_searcher(kind, spec, seed=5, max_epochs=2)
    _drive(a, spec, 10)
    a.save(str(tmp_path / "searcher.pkl"))
    b = build_searcher(kind, spec, seed=99, max_epochs=2)  # another seed: state must come back
    b.restore(str(tmp_path / "searcher.pkl"))
    assert _drive(a, spec, 4, seed=3, start=10) == _drive(b, spec, 4, seed=3, start=10)


@pytest.mark.parametrize("kind", SEARCHERS)
def test_budgets_reject_mixed_proposals_before_training(tmp_path, kind):
    text = MIXED_SPACE.replace("training:", "budgets: {max_params: 20000}\ntraining:")
    spec = load_space(str(write_space(tmp_path, text, name="mixed_budget.yaml")))
    rejected = []
    searcher = build_searcher(
        kind, spec, seed=2, max_epochs=2, on_infeasible=lambda flat, why: rejected.append(why)
    )
    for config in _drive(searcher, spec, 12):
        assert spec.counts(spec.complete(config)).params <= 20000
    assert rejected and all("over budget: params" in why for why in rejected)
    assert searcher.infeasible == len(rejected)


def test_mixed_grid_enumerates_each_family_with_its_own_knobs(tmp_path):
    text = """\
dataset: cifar10
model:
  family: {choice: [lrunet, mobilenet, shufflenet]}
  lrunet:
    reuse: {choice: [1, 14]}
  mobilenet:
    width: 0.25
  shufflenet:
    width: 1
    groups: {choice: [3, 8]}
"""
    spec = load_space(str(write_space(tmp_path, text, name="grid.yaml")))
    grid = list(spec.grid())
    assert spec.is_grid and spec.num_configs == len(grid) == 2 + 1 + 2
    names = sorted(split_trial_config(g, **spec.geometry)[0].name for g in grid)
    assert names == sorted(
        ["1-LruNet-1x", "14-LruNet-1x", "MobileNet-0.25x", "ShuffleNet-1x-g3",
         "ShuffleNet-1x-g8"]
    )  # fmt: skip


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mixed_search_driver_killed_and_resumed(tmp_path, ray_tmp):
    """TPE over three families: the driver is SIGKILLed after the first epochs, `--resume`
    finishes the search with the Optuna study restored; every trial run carries its family."""
    space = write_space(tmp_path, MIXED_SPACE, name="mixed.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = search_cmd(
        space, tmp_path, "--num-samples", "5", "--max-concurrent", "2", "--searcher", "tpe"
    )
    log = open(tmp_path / "search.log", "w")
    p = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(ray_tmp), stdout=log, stderr=log)
    try:
        wait_for(lambda: len(trial_runs(uri, "ft")) >= 2, 240, "two trials", p, every=0.3)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        try:
            wait_for(lambda: not pids_with(ray_tmp), 30, "Ray to exit")
        except AssertionError:
            pass
    finally:
        if p.poll() is None:
            p.kill()
    before = {r.data.tags["trial_id"] for r in trial_runs(uri, "ft")}
    time.sleep(1)
    resumed = subprocess.run(
        [sys.executable, LAUNCH, "--resume", "ft", "--tracking-uri", uri, "--quiet"],
        cwd=tmp_path,
        env=cli_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    runs = trial_runs(uri, "ft")
    assert before <= {r.data.tags["trial_id"] for r in runs}
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        family = r.data.tags["family"]
        assert r.data.params["family"] == family
        assert set(r.data.params) - {"dataset", "num_classes", "in_channels", "input_size"} <= set(
            trial_keys(family)
        )
    # the Optuna study came back: one study, a trial per proposal, family a parameter of each
    (study_file,) = Path(tmp_path, "ray").glob("**/optuna.db")
    storage = f"sqlite:///{study_file}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert len(study.trials) >= 5 and all("family" in t.params for t in study.trials)
    client = tracking.client_for(uri)
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["family"] == "mixed"
