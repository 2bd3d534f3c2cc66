"""The front across architecture families: per-family fronts, who wins each params band, the
normalised hypervolume, their CSV/markdown/plot, and `launch.py pareto` over a real sqlite store.

Synthetic rows (objectives val_acc max, params min), worked by hand:

    family       arch  params     val_acc  status
    lrunet       L1      150,000    90     completed
    dacnn        D1      120,000    91     completed      dominates L1 and M1
    mobilenetv2  M1      199,999    85     completed      (a band edge: still 100k-200k)
    lrunet       L2      200,000    93     completed      (on the edge: 200k-500k)
    dacnn        D2      400,000    93     completed      ties L2 on accuracy, more params
    mobilenetv2  M2      300,000    99     stopped_early  would win 200k-500k; low budget: out
    mobilenetv2  M4    1,000,000    94     completed
    mobilenetv2  M5    1,200,000    93     completed      dominated by M4 (its own family too)
    mobilenetv2  M3    1,500,000    95     completed
    dacnn        X     (none)       -      infeasible

Bands: 100k-200k {L1, D1, M1}: dacnn D1 wins by 1 over lrunet L1; 200k-500k {L2, D2}: a tie at
93 that the fewer params (L2) settles, margin 0; 500k-1M is empty (not listed); 1M-2M {M4, M5,
M3}: only mobilenetv2, M3 wins, no runner-up. Overall front: M3, M4, L2, D1. Family fronts:
lrunet L2, L1; dacnn D2, D1; mobilenetv2 M3, M4, M1.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

import launch
from experiments.front import TrialRow, compute_front, log_front
from experiments.front_plots import FAMILY_STYLE, family_style, front_figure, plot_front
from experiments.front_tables import (
    front_by_family_csv,
    front_csv,
    front_table,
    who_wins_csv,
    who_wins_markdown,
    who_wins_table,
)
from experiments.who_wins import params_band, who_wins, winner_objective

pytestmark = pytest.mark.timeout(120)

OBJ = (["val_acc", "params"], ["max", "min"], [0.0, 2e6])
SPEC = [
    ("lrunet", "L1", 150_000, 90.0, "completed"),
    ("dacnn", "D1", 120_000, 91.0, "completed"),
    ("mobilenetv2", "M1", 199_999, 85.0, "completed"),
    ("lrunet", "L2", 200_000, 93.0, "completed"),
    ("dacnn", "D2", 400_000, 93.0, "completed"),
    ("mobilenetv2", "M2", 300_000, 99.0, "stopped_early"),
    ("mobilenetv2", "M4", 1_000_000, 94.0, "completed"),
    ("mobilenetv2", "M5", 1_200_000, 93.0, "completed"),
    ("mobilenetv2", "M3", 1_500_000, 95.0, "completed"),
]


def _rows() -> list[TrialRow]:
    rows = [
        TrialRow(arch, arch, status, {"val_acc": acc, "params": float(p)}, i, None, fam)
        for i, (fam, arch, p, acc, status) in enumerate(SPEC)
    ]
    rows.append(TrialRow("X", "X", "infeasible", {}, 99, None, "dacnn"))
    return rows


def _archs(rows) -> list[str]:
    return [r.arch for r in rows]


def test_params_bands_have_1_2_5_edges_and_are_half_open() -> None:
    assert params_band(100_000) == (100_000, 200_000)
    assert params_band(199_999) == (100_000, 200_000)
    assert params_band(200_000) == (200_000, 500_000)
    assert params_band(999_999) == (500_000, 1_000_000)
    assert params_band(1_000_000) == (1_000_000, 2_000_000)
    assert params_band(1000) == (1000, 2000)  # log10 rounding at a power of ten
    assert params_band(7) == (5, 10) and params_band(1) == (1, 2)
    with pytest.raises(ValueError, match="positive"):
        params_band(0)


def test_winner_objective_is_the_first_maximised_else_the_first() -> None:
    assert winner_objective(["params", "val_acc"], ["min", "max"]) == ("val_acc", "max")
    assert winner_objective(["val_loss", "params"], ["min", "min"]) == ("val_loss", "min")


def test_who_wins_by_hand() -> None:
    bands = who_wins(_rows(), *OBJ[:2])
    assert [(b.low, b.high) for b in bands] == [
        (100_000, 200_000),
        (200_000, 500_000),
        (1_000_000, 2_000_000),
    ]
    small, mid, large = bands
    assert (small.winner.arch, small.runner_up.arch, small.margin) == ("D1", "L1", 1.0)
    assert small.trials == 3 and small.families == ("lrunet", "dacnn", "mobilenetv2")
    # the tie at 93 goes to the smaller model; the stopped-early M2 (99 %) is not in the band
    assert (mid.winner.arch, mid.runner_up.arch, mid.margin) == ("L2", "D2", 0.0)
    assert mid.trials == 2 and mid.families == ("lrunet", "dacnn")
    # one family only: no runner-up
    assert (large.winner.arch, large.runner_up, large.margin) == ("M3", None, None)
    assert large.trials == 3 and large.families == ("mobilenetv2",)
    # the order of the rows does not matter
    assert [b.winner.arch for b in who_wins(_rows()[::-1], *OBJ[:2])] == ["D1", "L2", "M3"]


def test_who_wins_without_a_params_objective_still_bands_by_params() -> None:
    rows = _rows()
    for r in rows:
        r.metrics["mflops"] = r.metrics.get("params", 0) / 1e4
    bands = who_wins(rows, ["val_acc", "mflops"], ["max", "min"])
    assert [b.winner.arch for b in bands] == ["D1", "L2", "M3"]
    for r in rows:
        r.metrics.pop("params", None)
    front = compute_front(rows, ["val_acc", "mflops"], ["max", "min"], [0.0, 300.0])
    assert who_wins(rows, front.metrics, front.modes) == []
    assert "skipped, no completed trial reported params" in who_wins_table(front, [])
    assert who_wins_markdown(front, []).startswith("who wins where: skipped")


def test_overall_and_per_family_fronts() -> None:
    front = compute_front(_rows(), *OBJ)
    assert _archs(front.members) == ["M3", "M4", "L2", "D1"]
    fronts = front.by_family()
    assert list(fronts) == ["lrunet", "dacnn", "mobilenetv2"]
    assert {f: _archs(rows) for f, rows in fronts.items()} == {
        "lrunet": ["L2", "L1"],
        "dacnn": ["D2", "D1"],
        "mobilenetv2": ["M3", "M4", "M1"],
    }
    assert [r["family"] for r in front.to_records()] == ["mobilenetv2"] * 2 + ["lrunet", "dacnn"]


def test_normalised_hypervolume_of_the_front() -> None:
    # Scaled (acc / 100, (2e6 - params) / 2e6): M3 (.95, .25), M4 (.94, .5), L2 (.93, .9),
    # D1 (.91, .94); slabs in y: .25*.95 + .25*.94 + .4*.93 + .04*.91 = 0.8809.
    front = compute_front(_rows(), *OBJ)
    assert front.ideal_point == [100.0, 0.0]
    assert front.hypervolume_normalised == pytest.approx(0.8809)
    assert front.hypervolume_normalised == pytest.approx(front.hypervolume / (100 * 2e6))
    assert "normalised 0.8809" in front_table(front)
    assert "normalised" not in front_table(front, hypervolume=False)
    # an objective without a known ideal: no normalised value, and the table says so
    other = compute_front(_rows(), ["val_acc", "speed"], ["max", "max"], [0.0, 0.0])
    assert other.ideal_point is None and "normalised: n/a" in front_table(other)


def test_csv_and_markdown_contents() -> None:
    front = compute_front(_rows(), *OBJ)
    assert front_csv(front).splitlines()[:2] == [
        "arch,family,val_acc,params,pareto_rank,run_id",
        "M3,mobilenetv2,95.0,1500000.0,1,M3",
    ]
    by_family = front_by_family_csv(front).splitlines()
    assert by_family[0] == "family,arch,val_acc,params,pareto_rank,run_id"
    assert [ln.split(",")[:2] for ln in by_family[1:]] == [
        ["lrunet", "L2"],
        ["lrunet", "L1"],
        ["dacnn", "D2"],
        ["dacnn", "D1"],
        ["mobilenetv2", "M3"],
        ["mobilenetv2", "M4"],
        ["mobilenetv2", "M1"],
    ]
    # pareto_rank is the overall layer: L2 is on the overall front, L1 (dominated by D1) not
    assert by_family[1].split(",")[4] == "1" and by_family[2].split(",")[4] == "2"

    bands = who_wins(front.rows, front.metrics, front.modes)
    rows = list(csv.DictReader(io.StringIO(who_wins_csv(bands))))
    assert [(r["params_low"], r["params_high"]) for r in rows] == [
        ("100000", "200000"),
        ("200000", "500000"),
        ("1000000", "2000000"),
    ]
    assert rows[0] == {
        "params_low": "100000",
        "params_high": "200000",
        "trials": "3",
        "families": "lrunet;dacnn;mobilenetv2",
        "winner_family": "dacnn",
        "winner_arch": "D1",
        "winner_val_acc": "91.0",
        "winner_params": "120000",
        "winner_run_id": "D1",
        "runner_up_family": "lrunet",
        "runner_up_arch": "L1",
        "runner_up_val_acc": "90.0",
        "runner_up_params": "150000",
        "runner_up_run_id": "L1",
        "margin": "1.0",
    }
    assert rows[2]["runner_up_family"] == "" and rows[2]["margin"] == ""

    md = who_wins_markdown(front, bands).splitlines()
    assert md[0].startswith("who wins where: best val_acc (max) per params band")
    assert md[2].split(" | ")[0] == "| params" and md[3].startswith("| --- |")
    assert md[4:] == [
        "| 100k-200k | 3 | dacnn | D1 | 91.00 | lrunet | L1 | 90.00 | 1.00 |",
        "| 200k-500k | 2 | lrunet | L2 | 93.00 | dacnn | D2 | 93.00 | tie |",
        "| 1M-2M | 3 | mobilenetv2 | M3 | 95.00 | (only mobilenetv2) | - | - | - |",
    ]
    text = who_wins_table(front, bands).splitlines()
    assert text[3].split() == ["100k-200k", "3", "dacnn", "D1", "91.00", "lrunet", "L1"] + [
        "90.00",
        "1.00",
    ]


def test_plot_has_one_legend_entry_per_family_and_a_log_params_axis(tmp_path) -> None:
    import matplotlib.pyplot as plt

    front = compute_front(_rows(), *OBJ)
    fig = front_figure(front)
    try:
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        for fam in ("lrunet", "dacnn", "mobilenetv2"):
            assert sum(label.split(" ")[0] == fam for label in labels) == 1, labels
        assert "overall Pareto front" in labels
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "params (log scale)"
        lines = {(ln.get_color(), ln.get_drawstyle()) for ln in ax.get_lines()}
        # each family's front is a step line in its own colour, the overall one in black
        for fam in ("lrunet", "dacnn", "mobilenetv2"):
            assert (FAMILY_STYLE[fam][0], "steps-post") in lines
        assert ("black", "steps-post") in lines
    finally:
        plt.close(fig)
    plot_front(front, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_family_styles_are_fixed_and_distinct() -> None:
    styles = [family_style(f) for f in FAMILY_STYLE]
    assert len(set(styles)) == len(styles)
    assert family_style("lrunet") == FAMILY_STYLE["lrunet"]
    assert family_style("newnet") == family_style("newnet")  # spare style, stable by name


# --- a real sqlite store laid out as experiments.tracking writes it ---------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow
    from mlflow.entities import Metric, Param

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("mixed", artifact_location=(tmp / "artifacts").as_uri())
    parent = client.create_run(exp_id, run_name="search", tags={"lrunet.role": "search"}).info
    client.log_batch(
        parent.run_id,
        params=[
            Param("objectives", "val_acc,params"),
            Param("modes", "max,min"),
            Param("reference_point", "0.0,2000000.0"),
        ],
    )
    ids = {}
    for fam, arch, p, acc, status in SPEC:
        tags = {
            "mlflow.parentRunId": parent.run_id,
            "lrunet.role": "trial",
            "trial_id": arch,
            "arch": arch,
            "dataset": "digits",
            "status": status,
            "stopped_at_epoch": "2" if status == "completed" else "1",
        }
        if arch != "L1":  # L1 is from an older search: no family tag or param (an LruNet)
            tags["family"] = fam
        run = client.create_run(exp_id, run_name=arch, tags=tags).info
        params = [Param("family", fam)] if arch != "L1" else []
        metrics = [Metric("val_acc", acc, 0, 2), Metric("params", float(p), 0, 2)]
        client.log_batch(run.run_id, metrics=metrics, params=params)
        client.set_terminated(run.run_id, "FINISHED")
        ids[arch] = run.run_id
    client.set_terminated(parent.run_id, "FINISHED")
    return {"uri": uri, "client": client, "parent": parent.run_id, "ids": ids}


def test_launch_pareto_json_has_families_who_wins_and_normalised_hv(store, capsys) -> None:
    argv = ["pareto", "--experiment", "mixed", "--tracking-uri", store["uri"], "--json"]
    assert launch.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    ids = store["ids"]
    # the existing keys keep their meaning
    assert out["parent_run_id"] == store["parent"]
    assert out["objectives"] == {"val_acc": "max", "params": "min"}
    assert [m["run_id"] for m in out["front"]] == [ids[a] for a in ("M3", "M4", "L2", "D1")]
    assert out["hypervolume"] == pytest.approx(0.8809 * 100 * 2e6)
    # the new ones
    assert out["hypervolume_normalised"] == pytest.approx(0.8809)
    assert {f: [m["arch"] for m in rows] for f, rows in out["by_family"].items()} == {
        "lrunet": ["L2", "L1"],  # L1 has no family tag: an LruNet
        "dacnn": ["D2", "D1"],
        "mobilenetv2": ["M3", "M4", "M1"],
    }
    assert [(b["winner_arch"], b["runner_up_arch"], b["margin"]) for b in out["who_wins"]] == [
        ("D1", "L1", 1.0),
        ("L2", "D2", 0.0),
        ("M3", None, None),
    ]


def test_launch_pareto_text_prints_fronts_who_wins_and_both_hypervolumes(store, capsys) -> None:
    assert launch.main(["pareto", "--experiment", "mixed", "--tracking-uri", store["uri"]]) == 0
    text = capsys.readouterr().out
    parts = ["architecture  family", "per family:", "lrunet: front of 2 of its 2", "who wins"]
    positions = [text.index(p) for p in [*parts, "hypervolume 1.7618e+08"]]
    assert positions == sorted(positions), text
    assert "normalised 0.8809" in text


def test_log_front_attaches_family_tables_and_normalised_hv(store, tmp_path) -> None:
    from experiments.front import load_front

    client = store["client"]
    front, parent = load_front(client, "mixed")
    log_front(client, parent.info.run_id, front)
    listed = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"front_by_family.csv", "who_wins.csv", "who_wins.md", "pareto.png"} <= listed
    run = client.get_run(parent.info.run_id)
    assert run.data.metrics["hypervolume_normalised"] == pytest.approx(0.8809)
    path = client.download_artifacts(parent.info.run_id, "who_wins.csv", str(tmp_path))
    assert open(path).read() == who_wins_csv(who_wins(front.rows, front.metrics, front.modes))
    path = client.download_artifacts(parent.info.run_id, "front_by_family.csv", str(tmp_path))
    assert open(path).read().splitlines()[1].startswith("lrunet,L2,")
