"""The objective registry (`lrunet.objectives`): every objective declared once and read by the
space loader, the budgets, tracking, the front and its plots. No Ray, no training.

The last tests add an objective with one `register_objective` call and nothing else, and check
that a space can optimise it, cap it, and that the front and the logged metrics know it (the
README's "Adding an objective")."""

from __future__ import annotations

import math

import pytest

from experiments.front import TrialRow, compute_front, ideal_point
from experiments.front_plots import front_figure, projections
from experiments.front_tables import front_table
from lrunet import metrics as M
from lrunet import objectives as O
from lrunet.registry import count, parse_name
from search_spaces import load_space
from search_spaces.schema import SpaceError
from tests.conftest import DIGITS_SPACE, write_space


def test_every_objective_is_declared_consistently():
    names = O.list_objectives()
    assert names[:2] == [M.VAL_ACC, M.VAL_LOSS]
    for n in names:
        o = O.get_objective(n)
        assert o.name == n and o.mode in ("max", "min") and o.kind in O.KINDS
        assert (o.kind == O.ANALYTIC) == (o.value is not None)
        assert (o.kind == O.MEASURED) == (o.measurement in O.MEASUREMENTS)
        assert o.label and o.column
    assert O.budget_keys() == {
        "max_params": M.PARAMS,
        "max_mflops": M.MFLOPS,
        "max_latency_ms": M.LATENCY_MS,
        "max_latency_batch_ms": M.LATENCY_BATCH_MS,
    }
    assert O.list_objectives(O.MEASURED) == [M.LATENCY_MS, M.LATENCY_BATCH_MS]
    # every key the latency measurement returns is logged, and so is every objective
    assert set(O.get_measurement("latency").keys) <= set(O.logged_metrics())
    assert set(names) <= set(O.logged_metrics())


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        O.register_objective(O.get_objective(M.PARAMS))
    clash = O.ObjectiveInfo("other", "min", O.TRAINED, "", "other", "other", budget="max_params")
    with pytest.raises(ValueError, match="budget key 'max_params' is already used"):
        O.register_objective(clash)
    with pytest.raises(ValueError, match="unknown objective 'acc'"):
        O.get_objective("acc")
    with pytest.raises(ValueError, match="an analytic objective needs `value`"):
        O.ObjectiveInfo("x", "min", O.ANALYTIC, "", "x", "x")
    with pytest.raises(ValueError, match="only a minimised objective can be capped"):
        O.ObjectiveInfo("y", "max", O.TRAINED, "", "y", "y", budget="min_y")


def test_analytic_values_are_the_counts_and_budgets_read_them():
    c = count(parse_name("14-LruNet-1x", num_classes=10, in_channels=3, input_size=32))
    values = O.analytic_values(c)
    assert values == {
        M.PARAMS: c.params,
        M.CONV_PARAMS: c.conv_params,
        M.MACS: c.macs,
        M.MFLOPS: c.mflops,
    }
    assert O.over_budget(values, {"max_params": 200_000, "max_mflops": 1e9}) == [
        f"params {c.params:,} > max_params 200,000"
    ]
    assert O.over_budget({M.LATENCY_MS: 3.25}, {"max_latency_ms": 2}) == [
        "latency_ms 3.250 > max_latency_ms 2"
    ]
    assert O.over_budget({}, {"max_latency_ms": 2}) == []  # not measured: not judged


def test_latency_space_needs_a_reference_or_a_budget(tmp_path):
    three = DIGITS_SPACE.replace(
        "  - {metric: params, mode: min}\n",
        "  - {metric: params, mode: min}\n  - {metric: latency_ms, mode: min}\n",
    )
    with pytest.raises(SpaceError, match="no default hypervolume reference point"):
        load_space(str(write_space(tmp_path, three, name="a.yaml")))
    budgeted = three.replace("training:", "budgets: {max_latency_ms: 4}\ntraining:")
    spec = load_space(str(write_space(tmp_path, budgeted, name="b.yaml")))
    assert spec.reference_point[-1] == 4.0 and spec.budgets.max_latency_ms == 4
    # the measurement is on with its defaults, and a measured budget never rejects in the driver
    assert spec.measure == {"latency": {"target": "cpu1", "batch_size": 32, "clock": "wall"}}
    assert spec.budgets.of_kind(O.MEASURED) == {"max_latency_ms": 4}
    assert spec.check_budget(spec.sample(0)) is None
    # measure: alone logs latency without optimising it
    logged = DIGITS_SPACE.replace("training:", "measure: {latency: {target: ort-cpu}}\ntraining:")
    spec = load_space(str(write_space(tmp_path, logged, name="c.yaml")))
    assert spec.measure == {"latency": {"target": "ort-cpu", "batch_size": 32, "clock": "wall"}}
    assert spec.metrics == [M.VAL_ACC, M.PARAMS]


@pytest.mark.parametrize(
    "section, match",
    [
        ("measure: {latency: {target: gpu}}", r"measure\.latency: target 'gpu' is not one of"),
        ("measure: {latency: {batch: 4}}", r"unknown setting\(s\) \['batch'\]"),
        ("measure: {latency: {batch_size: 0}}", "expected a positive integer, got 0"),
        ("measure: {power: {}}", r"measure\.power"),
        ("budgets: {max_latency_ms: -1}", r"budgets\.max_latency_ms: must be > 0"),
        ("budgets: {max_latncy_ms: 1}", "max_latency_ms"),
    ],
)
def test_bad_measure_and_budget_sections_name_the_fix(tmp_path, section, match):
    path = write_space(tmp_path, DIGITS_SPACE.replace("training:", f"{section}\ntraining:"))
    with pytest.raises(SpaceError, match=match):
        load_space(str(path))


def _rows3() -> list[TrialRow]:
    """Completed trials over (val_acc, params, latency_ms); C dominates nothing in 2-D
    (acc, params) against B, but is fastest."""
    data = [
        ("A", 90.0, 100_000, 5.0),
        ("B", 92.0, 50_000, 8.0),
        ("C", 91.0, 60_000, 2.0),  # dominated by B in (acc, params), on the 3-D front
        ("D", 80.0, 200_000, 9.0),  # dominated in all
    ]
    return [
        TrialRow(n, n, "completed", {M.VAL_ACC: a, M.PARAMS: p, M.LATENCY_MS: t}, i)
        for i, (n, a, p, t) in enumerate(data)
    ]


def test_three_objective_front_hypervolume_and_plot():
    import matplotlib.pyplot as plt

    metrics, modes = [M.VAL_ACC, M.PARAMS, M.LATENCY_MS], ["max", "min", "min"]
    front = compute_front(_rows3(), metrics, modes, [0.0, 250_000.0, 10.0])
    assert {r.arch for r in front.members} == {"B", "C"}  # A: dominated by C in all three
    # 3-D hypervolume by inclusion-exclusion of the two boxes to the reference point
    b, c = (92.0, 200_000.0, 2.0), (91.0, 190_000.0, 8.0)  # (acc, ref-params, ref-latency)
    both = (91.0, 190_000.0, 2.0)
    assert math.isclose(front.hypervolume, math.prod(b) + math.prod(c) - math.prod(both))
    assert front.ideal_point == [100.0, 0.0, 0.0] == ideal_point(metrics, modes)
    assert 0 < front.hypervolume_normalised < 1
    table = front_table(front)
    assert "latency_ms" in table and "2.000" in table  # formatted as the registry says
    pairs = projections(front)
    assert pairs == [
        (M.PARAMS, M.VAL_ACC),
        (M.LATENCY_MS, M.VAL_ACC),
        (M.PARAMS, M.LATENCY_MS),
    ]
    fig = front_figure(front)
    try:
        shown = [ax for ax in fig.axes if ax.get_visible()]
        assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in shown] == [
            ("params (log scale)", M.VAL_ACC),
            (M.LATENCY_MS, M.VAL_ACC),
            ("params (log scale)", M.LATENCY_MS),
        ]
        labels = [t.get_text() for t in shown[-1].get_legend().get_texts()]
        assert "front in this projection" in labels
    finally:
        plt.close(fig)


@pytest.fixture
def kparams():
    """A new analytic objective, thousands of parameters, added by one registry call."""
    info = O.register_objective(
        O.ObjectiveInfo(
            "kparams",
            "min",
            O.ANALYTIC,
            "",
            "thousands of parameters",
            "kparams",
            decimals=1,
            ideal=0.0,
            budget="max_kparams",
            value=lambda c: c.params / 1000,
            reference=lambda geometry, ranges, budget: budget or ranges["kparams"][1],
        )
    )
    yield info
    del O._REGISTRY[info.name]  # the registry is global: leave it as other tests expect


def test_a_new_objective_is_one_registry_entry(tmp_path, kparams):
    text = DIGITS_SPACE.replace("metric: params", "metric: kparams").replace(
        "training:", "budgets: {max_kparams: 12.5}\ntraining:"
    )
    spec = load_space(str(write_space(tmp_path, text)))
    assert spec.metrics == [M.VAL_ACC, "kparams"] and spec.reference_point == (0.0, 12.5)
    lo, hi = spec.costs.kparams
    assert lo == spec.costs.params[0] / 1000 and hi == spec.costs.params[1] / 1000
    reasons = {spec.check_budget(spec.sample(i)) for i in range(200)}
    assert any(r and "kparams" in r and "> max_kparams 12.5" in r for r in reasons)
    assert "kparams" in O.logged_metrics()
    rows = [
        TrialRow("a", "a", "completed", {M.VAL_ACC: 90.0, "kparams": 10.0}, 0),
        TrialRow("b", "b", "completed", {M.VAL_ACC: 95.0, "kparams": 12.0}, 1),
    ]
    front = compute_front(rows, spec.metrics, spec.modes, list(spec.reference_point))
    assert len(front.members) == 2 and front.ideal_point == [100.0, 0.0]
    assert "12.0" in front_table(front)
