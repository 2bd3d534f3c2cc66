"""`benchmarks/search_efficiency.py` on a small synthetic learning-curve table (12 LruNet configs
x 4 epochs, real parameter counts, written with `experiments.curve_table.write_table`), through
the real Ray Tune loop on a local Ray: the simulator's invariants (FIFO given the whole grid's
compute scores normalised hypervolume exactly 1; MO-ASHA on accuracy alone takes Ray's ASHA's
decisions), the same seed gives the same numbers, the CLI writes its table, CSV and plot, and
arguments that cannot work are refused before any search."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import search_efficiency as SE
from benchmarks import search_report as R
from benchmarks.replay_runs import Settings, run_ray
from experiments.curve_table import load_table, write_table
from lrunet.recipe import split_trial_config
from lrunet.registry import count
from search_spaces.loader import load_space

pytestmark = pytest.mark.timeout(300)

SPACE = """\
description: a synthetic learning-curve table's space (tests/test_search_efficiency.py)
dataset: fashionmnist
model:
  reuse: {choice: [1, 2, 3]}
  width: {choice: [0.125, 0.25]}
  groups: {choice: [2, 4]}
recipe:
  lr: 0.1
  batch_size: 128
  schedule: cosine
objectives:
  - {metric: val_acc, mode: max}
  - {metric: params, mode: min}
training:
  max_epochs: 4
  grace_epochs: 4
  num_samples: 12
  subset: 2000
"""
EPOCHS = 4


def _table(folder: Path) -> Path:
    """Curves whose final accuracy grows with log(params) plus a per-config offset, and whose
    early epochs are ranked by noise as much as by the final value."""
    space = folder / "synth_curves.yaml"
    space.write_text(SPACE)
    spec = load_space(str(space))
    entries = []
    for i, flat in enumerate(spec.grid()):
        cfg = split_trial_config(flat, **spec.geometry)[0]
        params = float(count(cfg).params)
        final = 60 + 5 * math.log10(params) + (7 * i % 5) - 2
        curve = [
            {
                "val_acc": final - 3.0 * (EPOCHS - e) + ((5 * i + 3 * e) % 7 - 3) / e,
                "params": params,
                "epoch_seconds": 1.0 + params / 20_000 + 0.1 * (i % 3),
            }
            for e in range(1, EPOCHS + 1)
        ]
        entries.append(
            {"config": flat, "arch": cfg.name, "family": "lrunet", "node": "n", "curve": curve}
        )
    provenance = {
        "space": spec.name,
        "space_file": space.name,
        "space_yaml": SPACE,
        "dataset": spec.dataset,
        "subset": spec.training.subset,
        "epochs": EPOCHS,
        "geometry": spec.geometry,
    }
    out = folder / "synth_curves.csv"
    write_table(out, entries, provenance)
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return load_table(_table(tmp_path_factory.mktemp("curves")))


@pytest.fixture(scope="module")
def frame(table):
    return R.frame(table, table.space().reference_point, EPOCHS)


def _settings(fr: R.Frame, share: float = 0.5) -> Settings:
    return Settings(grace=1, reduction_factor=2, max_t=EPOCHS, budget_s=share * fr.grid_compute)


def test_the_simulator_checks_hold(table, frame, tmp_path, ray_local):
    lines = SE.simulator_checks(table, table.space(), _settings(frame), frame, str(tmp_path))
    assert "normalised HV platform 1.0, tight 1.0" in lines[0]
    assert "12/12 configs" in lines[0]
    assert "identical" in lines[1]


def test_the_same_seed_gives_the_same_numbers(table, frame, tmp_path, ray_local):
    spec, s = table.space(), _settings(frame)
    first = run_ray("moasha+random", table, spec, 3, s, str(tmp_path))
    again = run_ray("moasha+random", table, spec, 3, s, str(tmp_path))
    assert first.reports == again.reports
    stopped = [e for _, e in first.epochs_per_trial() if e < EPOCHS]
    assert stopped and len(first.completed(EPOCHS)) >= 1  # it did stop some, finish some
    # random search walks the shuffled grid: every method of a seed sees the same order
    fifo = run_ray("fifo+random", table, spec, 3, s, str(tmp_path))
    order = [cid for cid, _ in first.epochs_per_trial()]
    assert [cid for cid, _ in fifo.epochs_per_trial()] == order[: len(fifo.epochs_per_trial())]


def test_pausing_spends_the_budget_the_stopping_scheduler_leaves(
    table, frame, tmp_path, ray_local
):
    spec, s = table.space(), _settings(frame, share=0.8)
    stopping = run_ray("moasha+random", table, spec, 3, s, str(tmp_path))
    paused = run_ray("moasha-pause+random", table, spec, 3, s, str(tmp_path))
    # the same decisions until the grid is exhausted; then paused trials resume, each from the
    # epoch after its pause (a restart would start a 13th trial at epoch 1)
    assert paused.reports[: len(stopping.reports)] == stopping.reports
    assert stopping.compute < s.budget_s <= paused.compute
    assert len(paused.epochs_per_trial()) == len(table.configs) == 12
    assert len(paused.completed(EPOCHS)) > len(stopping.completed(EPOCHS))


def test_the_live_check_replays_its_own_grid_with_the_live_methods(table, tmp_path, ray_local):
    from benchmarks import search_efficiency_live as live

    spec = table.space()
    curves = [
        {"config": c, "arch": table.arch(i), "family": table.family(i), "curve": table.curve(i)}
        for i, c in enumerate(table.configs)
    ]
    grid = live.Outcome("grid", 1.0, 12, 12, 48, 0.0, 0.0, [], curves)
    recorded = live.record(grid, spec, SPACE, None, tmp_path / "live_grid.csv")
    assert [recorded.curve(i) == table.curve(i) for i in range(12)] == [True] * 12
    whole = live.replayed(recorded, spec, 1.0, str(tmp_path), seed=0)
    assert set(whole) == set(live.REPLAYED) and whole["fifo+random"] == 1.0
    assert live.ranks({"a": 0.9, "b": 0.95, "c": 0.9}) == {"a": 2, "b": 1, "c": 2}
    assert live.ranks({"a": 0.9163, "b": 0.9166, "c": 0.986}) == {"a": 2, "b": 2, "c": 1}
    with pytest.raises(RuntimeError, match="completed 11/12"):
        live.record(replace(grid, curves=curves[:11]), spec, SPACE, None, tmp_path / "x.csv")


def test_the_cli_writes_its_table_csv_and_plot(table, tmp_path, ray_local, capsys):
    out_csv, out_png = tmp_path / "seeds.csv", tmp_path / "plot.png"
    argv = ["--table", str(table.path), "--seeds", "2", "--grace", "1"]
    argv += ["--methods", "fifo+random", "moasha+random", "--no-checks"]
    assert SE.main([*argv, "--csv", str(out_csv), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "| *paired: method minus moasha+random* |" in text
    assert "goal (platform view), moasha+random: at or above every peer (fifo+random)" in text
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 * 2 * 3  # methods x seeds x budgets
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert all(0 <= float(r["hv_platform"]) <= 1 and 0 <= float(r["hv_tight"]) <= 1 for r in rows)
    # FIFO within a tenth of the compute finished a trial or two: part of the front, not all
    early = [r for r in rows if r["method"] == "fifo+random" and r["share"] == "0.1"]
    assert all(float(r["hv_tight"]) < 1 and int(r["completed"]) < 12 for r in early)
    assert out_png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--grace", "4"], "first rung must be 1..3"),
        (["--methods", "hyperband"], "choose from"),
        (["--seeds", "0"], "at least 1"),
        (["--reduction-factor", "1"], "must be > 1"),
    ],
)
def test_arguments_that_cannot_work_are_refused_before_any_search(table, extra, match):
    with pytest.raises(ValueError, match=match):
        SE.main(["--table", str(table.path), *extra])


def test_a_missing_table_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="launch.py record"):
        SE.main(["--table", str(tmp_path / "none.csv")])


def test_the_syne_tune_peer_replays_the_same_table(table, frame):
    """Skipped without the optional `[bench]` extra (syne-tune)."""
    from benchmarks import syne_peer

    if why := syne_peer.available():
        pytest.skip(why)
    s = replace(_settings(frame), budget_s=frame.grid_compute)
    first, again = syne_peer.run_syne(table, 5, s), syne_peer.run_syne(table, 5, s)
    assert first.reports == again.reports and len(first.reports) > 12
    cids = [cid for cid, _ in first.epochs_per_trial()]
    assert len(cids) > len(set(cids))  # it samples with replacement
    # its decisions are the ordering-read-as-ranks rule, recomputed from the reports
    a = syne_peer.audit(first, s)
    assert a["decisions"] > 12 and a["matched"] == a["decisions"]
