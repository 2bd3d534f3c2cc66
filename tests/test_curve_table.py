"""The learning-curve table format (`experiments.curve_table`) without Ray: a synthetic table
round-trips through `write_table`/`load_table`, configurations are looked up by meaning, a
malformed table is refused with the fix, and a replay refuses a space the table does not cover
before anything starts. The shipped table is checked for what it promises."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.curve_table import load_table, sidecar_path, write_table
from experiments.replay import check_covered
from lrunet.recipe import split_trial_config
from search_spaces.loader import load_space
from tests.conftest import ROOT

SPACE = """\
description: a synthetic table's space
dataset: fashionmnist
model:
  reuse: {choice: [1, 2]}
  width: {choice: [0.125, 0.25]}
  groups: 4
recipe:
  lr: 0.1
  batch_size: 128
  schedule: cosine
training:
  max_epochs: 3
  grace_epochs: 3
  num_samples: 4
  subset: 2000
"""
SHIPPED = ROOT / "benchmarks" / "tables" / "fmnist_lru_dacnn.csv"


def _synthetic(tmp_path: Path, space_text: str = SPACE) -> Path:
    space = tmp_path / "synth.yaml"
    space.write_text(space_text)
    spec = load_space(str(space))
    entries = []
    for i, flat in enumerate(spec.grid()):
        curve = [
            {
                "val_acc": 50.0 + 10 * e + i,
                "val_loss": 1.0 / e,
                "params": 1000.0 * (i + 1),
                "epoch_seconds": 2.0 + i,
                "latency_ms": 0.5 + i,  # a metric the format does not know: kept as is
            }
            for e in range(1, 4)
        ]
        name = split_trial_config(flat, **spec.geometry)[0].name
        entries.append(
            {"config": flat, "arch": name, "family": "lrunet", "node": "n1", "curve": curve}
        )
    provenance = {
        "space": spec.name,
        "space_file": space.name,
        "space_yaml": space.read_text(),
        "dataset": spec.dataset,
        "subset": spec.training.subset,
        "epochs": 3,
        "geometry": spec.geometry,
        "commit": "abc",
    }
    out = tmp_path / "tables" / "synth.csv"
    write_table(out, entries, provenance)
    return out


def test_round_trip_keeps_configs_curves_and_every_metric(tmp_path):
    path = _synthetic(tmp_path)
    t = load_table(path)
    spec = load_space(str(tmp_path / "synth.yaml"))
    assert t.configs == list(spec.grid())
    assert t.epochs == 3 and len(t.rows) == 4 * 3
    assert t.arch(0) == "1-LruNet-0.125x-g4" and t.family(3) == "lrunet"
    assert [r["epoch"] for r in t.curve(2)] == [1.0, 2.0, 3.0]
    assert t.curve(2)[1]["val_acc"] == 72.0 and t.curve(2)[1]["latency_ms"] == 2.5
    assert t.metrics[:3] == ["val_acc", "val_loss", "params"] and "latency_ms" in t.metrics
    assert t.provenance["commit"] == "abc" and t.provenance["configs"] == 4
    # val_acc = 50 + 10 e + i: every epoch ranks the configurations as the last one does
    assert t.rank_correlation() == pytest.approx([1.0, 1.0, 1.0])
    assert t.rank_correlation("val_loss")[0] != t.rank_correlation("val_loss")[0]  # all tied: nan
    # the recorded space comes back from the provenance alone
    assert list(t.space().grid()) == t.configs and t.space().name == "synth"


def test_lookup_is_by_meaning_not_spelling(tmp_path):
    t = load_table(_synthetic(tmp_path))
    flat = dict(t.configs[3])  # reuse 2, width 0.25
    spelled = {k: v for k, v in flat.items() if k != "reuse"}
    spelled.update(reuse_1=2, reuse_2=2, reuse_3=2, reuse_4=2, width=0.25)
    assert t.lookup(flat) == t.lookup(spelled) == 3
    with pytest.raises(KeyError, match="3-LruNet-0.25x-g4"):
        t.lookup({**flat, "reuse": 3})
    with pytest.raises(KeyError):
        t.lookup({**flat, "lr": 0.2})  # same network, another recipe: another configuration
    with pytest.raises(ValueError, match="groups"):
        t.lookup({**flat, "groups": 5})


def test_malformed_tables_are_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="launch.py record"):
        load_table(tmp_path / "none.csv")
    path = _synthetic(tmp_path)
    rows = list(csv.reader(path.open()))
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows[:-1])  # the last epoch lost
    with pytest.raises(ValueError, match="has 2 epochs, not the table's 3"):
        load_table(path)
    side = sidecar_path(path)
    side.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="record the table again"):
        load_table(path)


def test_a_space_the_table_does_not_cover_is_refused(tmp_path):
    t = load_table(_synthetic(tmp_path))
    sub = tmp_path / "sub.yaml"
    sub.write_text(SPACE.replace("reuse: {choice: [1, 2]}", "reuse: 2"))
    check_covered(t, load_space(str(sub)))  # a subset of the grid: fine
    wider = tmp_path / "wider.yaml"
    wider.write_text(SPACE.replace("reuse: {choice: [1, 2]}", "reuse: {choice: [2, 3]}"))
    with pytest.raises(ValueError, match="no curve for 3-LruNet-0.125x-g4 .*omit --space"):
        check_covered(t, load_space(str(wider)))
    longer = tmp_path / "longer.yaml"
    longer.write_text(
        SPACE.replace("max_epochs: 3", "max_epochs: 4").replace(
            "grace_epochs: 3", "grace_epochs: 1"
        )
    )
    with pytest.raises(ValueError, match="holds 3 epochs"):
        check_covered(t, load_space(str(longer)))
    other = tmp_path / "other.yaml"
    other.write_text(SPACE.replace("subset: 2000", "subset: 3000"))
    with pytest.raises(ValueError, match="subset of 2000, not 3000"):
        check_covered(t, load_space(str(other)))
    cont = tmp_path / "cont.yaml"
    cont.write_text(SPACE.replace("lr: 0.1", "lr: {loguniform: [0.01, 0.1]}"))
    with pytest.raises(ValueError, match="continuous"):
        check_covered(t, load_space(str(cont)))


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped table is built by a benchmark run")
def test_the_shipped_table_is_what_it_promises():
    t = load_table(SHIPPED)
    assert t.dataset == "fashionmnist" and t.epochs >= 10 and len(t.configs) >= 48
    assert {"lrunet", "dacnn"} <= set(t.families)
    spec = t.space()
    assert spec.num_configs == len(t.configs) and spec.training.grace_epochs == t.epochs
    check_covered(t, spec)
    assert all(len(t.curve(i)) == t.epochs for i in range(len(t.configs)))
    for key in ("commit", "command", "created", "machine", "space_yaml", "subset"):
        assert t.provenance[key]


def test_rank_correlation_is_spearmans_with_shared_ranks_for_ties():
    from experiments.curve_table import _pearson, _ranks

    assert _ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    # ranks (1, 2, 3) against (1, 3, 2): 1 - 6 * 2 / (3 * 8) = 0.5
    assert _pearson(_ranks([1.0, 2.0, 3.0]), _ranks([10.0, 30.0, 20.0])) == pytest.approx(0.5)
