"""Hand-worked tests for experiments.pareto: dominance layers, crowding and exact hypervolume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from experiments.pareto import (
    crowding_distance,
    hypervolume,
    hypervolume_over_time,
    non_dominated_sort,
    normalise_to_box,
    normalised_hypervolume,
    pareto_front_mask,
    pareto_ranks,
    to_minimisation,
)

pytestmark = pytest.mark.timeout(60)

ACC_PARAMS = ["max", "min"]  # (validation accuracy, parameters), the default objectives
REF = [0.0, 4.0]
# A = (0.9, 3) and B = (0.6, 1) are the front, D duplicates A, C = (0.5, 2) is dominated by B,
# E = (0.95, 5) beats everyone on accuracy but lies outside the reference point's box.
A, B, C, D, E = (0.9, 3.0), (0.6, 1.0), (0.5, 2.0), (0.9, 3.0), (0.95, 5.0)


def test_to_minimisation_negates_only_max_objectives() -> None:
    out = to_minimisation([[0.9, 3.0], [0.5, 2.0]], ACC_PARAMS)
    np.testing.assert_array_equal(out, [[-0.9, 3.0], [-0.5, 2.0]])


def test_non_dominated_sort_layers_with_duplicates_and_ties() -> None:
    # Ties on one axis: (0.6, 2) is dominated by B = (0.6, 1) (equal accuracy, more parameters)
    # and itself dominates C = (0.5, 2) (equal parameters, less accuracy), so C sinks to layer 3.
    points = [A, B, C, D, (0.6, 2.0)]
    fronts = non_dominated_sort(points, ACC_PARAMS)
    assert [f.tolist() for f in fronts] == [[0, 1, 3], [4], [2]]
    np.testing.assert_array_equal(pareto_ranks(points, ACC_PARAMS), [1, 1, 3, 1, 2])
    # Duplicates: both copies of A are on the front.
    np.testing.assert_array_equal(
        pareto_front_mask(points, ACC_PARAMS), [True, True, False, True, False]
    )


def test_ranks_deeper_layers_and_all_identical_points() -> None:
    points = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (2.0, 2.0)]
    np.testing.assert_array_equal(pareto_ranks(points, ["min", "min"]), [1, 2, 3, 2])
    np.testing.assert_array_equal(pareto_ranks([(5.0, 5.0)] * 3, ["min", "min"]), [1, 1, 1])


def test_single_point_and_empty_set() -> None:
    assert [f.tolist() for f in non_dominated_sort([C], ACC_PARAMS)] == [[0]]
    assert non_dominated_sort([], ACC_PARAMS) == []
    assert pareto_ranks([], ACC_PARAMS).shape == (0,)
    assert hypervolume([C], ACC_PARAMS, REF) == pytest.approx(0.5 * 2.0)
    assert hypervolume([], ACC_PARAMS, REF) == 0.0
    assert hypervolume_over_time([], ACC_PARAMS, REF) == []
    assert crowding_distance([], ACC_PARAMS).shape == (0,)


def test_hypervolume_two_objectives_by_hand() -> None:
    # Rectangles [0, acc] x [params, 4]: A 0.9*1, B 0.6*3, overlap 0.6*1 -> 2.1; C lies in B.
    assert hypervolume([A, B, C], ACC_PARAMS, REF) == pytest.approx(2.1)
    # Duplicates add nothing; the order of points does not matter.
    assert hypervolume([C, D, B, A], ACC_PARAMS, REF) == pytest.approx(2.1)


def test_points_outside_or_on_the_reference_contribute_nothing() -> None:
    assert hypervolume([E], ACC_PARAMS, REF) == 0.0
    assert hypervolume([A, B, E], ACC_PARAMS, REF) == pytest.approx(2.1)
    # On the boundary (params == 4 or accuracy == 0) is not strictly better: zero volume.
    assert hypervolume([(0.9, 4.0), (0.0, 1.0)], ACC_PARAMS, REF) == 0.0


def test_hypervolume_mixed_directions_equal_the_minimised_problem() -> None:
    # (min, max): flip the second axis by hand and compare with the all-min problem.
    # A trade-off (more of the maximised y costs more of the minimised x); staircase to (4, 0):
    # x in [1, 2) up to y=1, [2, 3) up to 2, [3, 4) up to 3 -> 1 + 2 + 3.
    mixed = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    as_min = [(1.0, -1.0), (2.0, -2.0), (3.0, -3.0)]
    expected = 1.0 + 2.0 + 3.0
    np.testing.assert_array_equal(pareto_ranks(mixed, ["min", "max"]), [1, 1, 1])
    assert hypervolume(mixed, ["min", "max"], [4.0, 0.0]) == pytest.approx(expected)
    assert hypervolume(as_min, ["min", "min"], [4.0, 0.0]) == pytest.approx(expected)


def test_hypervolume_three_objectives_by_inclusion_exclusion() -> None:
    # Boxes up to (4, 4, 4): p=(1,1,3) 9, q=(2,2,1) 12, r=(3,1,2) 6; pairwise intersections
    # (componentwise max) p^q=(2,2,3) 4, p^r=(3,1,3) 3, q^r=(3,2,2) 4; triple (3,2,3) 2.
    points = [(1, 1, 3), (2, 2, 1), (3, 1, 2)]
    ref = [4, 4, 4]
    assert hypervolume(points[:2], ["min"] * 3, ref) == pytest.approx(9 + 12 - 4)
    assert hypervolume(points, ["min"] * 3, ref) == pytest.approx(9 + 12 + 6 - 4 - 3 - 4 + 2)
    # Same problem with the first objective maximised: negate it and its reference.
    flipped = [(-1, 1, 3), (-2, 2, 1), (-3, 1, 2)]
    assert hypervolume(flipped, ["max", "min", "min"], [-4, 4, 4]) == pytest.approx(18)


def _inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


def _voxel_count(points: np.ndarray, ref: np.ndarray) -> int:
    grid = np.stack(np.meshgrid(*[np.arange(int(r)) for r in ref], indexing="ij"), axis=-1)
    cells = grid.reshape(-1, len(ref))
    covered = np.zeros(len(cells), dtype=bool)
    for p in points:
        covered |= np.all(cells >= p, axis=1)
    return int(covered.sum())


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_matches_brute_force_on_integer_grids(k: int) -> None:
    rng = np.random.default_rng(k)
    ref = np.full(k, 6.0)
    for _ in range(15):
        points = rng.integers(0, 7, size=(int(rng.integers(1, 8)), k)).astype(float)
        inside = points[np.all(points < ref, axis=1)]
        expected = _voxel_count(inside, ref)  # unit cells [x, x+1)^k dominated by some point
        assert hypervolume(points, ["min"] * k, ref) == pytest.approx(expected)
        assert _inclusion_exclusion(inside, ref) == pytest.approx(expected)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_agrees_with_optuna(k: int) -> None:
    compute_hypervolume = pytest.importorskip("optuna._hypervolume").compute_hypervolume
    rng = np.random.default_rng(100 + k)
    for _ in range(10):
        points = rng.random((int(rng.integers(1, 40)), k))
        ref = np.full(k, 0.9)
        inside = points[np.all(points < ref, axis=1)]
        expected = compute_hypervolume(inside, ref) if len(inside) else 0.0
        assert hypervolume(points, ["min"] * k, ref) == pytest.approx(expected, rel=1e-12)


def test_hypervolume_over_time_is_the_running_front_volume() -> None:
    # C alone 0.5*2; B swallows C -> 0.6*3; E is outside; A adds 0.3*1 -> 2.1.
    out = hypervolume_over_time([C, B, E, A], ACC_PARAMS, REF)
    assert out == pytest.approx([1.0, 1.8, 1.8, 2.1])


def test_crowding_distance_by_hand() -> None:
    # Ranges 4 and 4. (1,3): (2-0)/4 + (4-1.5)/4 = 1.125; (2,1.5): (4-1)/4 + (3-0)/4 = 1.5.
    # The duplicate of (1,3) gets the same distance; the extremes are infinite.
    points = [(0, 4), (1, 3), (1, 3), (2, 1.5), (4, 0)]
    np.testing.assert_allclose(
        crowding_distance(points, ["min", "min"]), [np.inf, 1.125, 1.125, 1.5, np.inf]
    )
    # Directions do not change distances: max/max of the negated points is the same layer.
    negated = [(-x, -y) for x, y in points]
    np.testing.assert_allclose(
        crowding_distance(negated, ["max", "max"]), [np.inf, 1.125, 1.125, 1.5, np.inf]
    )


def test_crowding_distance_small_sets_are_all_boundary() -> None:
    assert np.isinf(crowding_distance([A], ACC_PARAMS)).all()
    assert np.isinf(crowding_distance([A, B], ACC_PARAMS)).all()
    assert np.isinf(crowding_distance([A, A, B], ACC_PARAMS)).all()


@pytest.mark.parametrize(
    ("points", "modes", "match"),
    [
        ([[1.0, 2.0]], ["max", "up"], "'up' is not one of"),
        ([[1.0, 2.0, 3.0]], ["max", "min"], r"shape \(n, 2\)"),
        ([[1.0, float("nan")]], ["max", "min"], "NaN"),
        ([[1.0, 2.0]], "max", "non-empty list"),
    ],
)
def test_invalid_input_names_the_problem(points: object, modes: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pareto_ranks(points, modes)


def test_reference_point_must_match_the_objectives() -> None:
    with pytest.raises(ValueError, match="reference_point must hold 2"):
        hypervolume([A], ACC_PARAMS, [0.0])


# --- normalised hypervolume: the reference box scaled to the unit cube -----------------------
IDEAL = [1.0, 0.0]  # (accuracy as a fraction, parameters): the best corner of the REF box


def test_normalise_to_box_maps_reference_to_zero_and_ideal_to_one() -> None:
    out = normalise_to_box([REF, IDEAL, A, (1.2, -1.0), E], ACC_PARAMS, REF, IDEAL)
    # A = (0.9, 3): 0.9 of the accuracy span, (4 - 3) / 4 of the params span. Past the ideal is
    # clipped to 1; E's params 5 lie outside the box: (4 - 5) / 4 < 0.
    np.testing.assert_allclose(out, [[0, 0], [1, 1], [0.9, 0.25], [1, 1], [0.95, -0.25]])


def test_normalised_hypervolume_two_objectives_by_hand() -> None:
    # A -> (0.9, 0.25), B -> (0.6, 0.75): 0.9*0.25 + 0.6*0.75 - 0.6*0.25 = 0.525 = 2.1 / (1 * 4).
    assert normalised_hypervolume([A, B, C], ACC_PARAMS, REF, IDEAL) == pytest.approx(0.525)
    # E is outside the box (params 5 > 4): nothing, alone or with the others.
    assert normalised_hypervolume([E], ACC_PARAMS, REF, IDEAL) == 0.0
    assert normalised_hypervolume([A, B, E], ACC_PARAMS, REF, IDEAL) == pytest.approx(0.525)
    # Beyond the ideal accuracy is clipped: (1.2, 2) counts as (1, 0.5), not 1.2 * 0.5.
    assert normalised_hypervolume([(1.2, 2.0)], ACC_PARAMS, REF, IDEAL) == pytest.approx(0.5)
    # The ideal point fills the box; the empty set is 0.
    assert normalised_hypervolume([IDEAL], ACC_PARAMS, REF, IDEAL) == pytest.approx(1.0)
    assert normalised_hypervolume([], ACC_PARAMS, REF, IDEAL) == 0.0
    # The search's own units: val_acc in percent against 0, params against 1e6, ideal (100, 0).
    hv = normalised_hypervolume([(90.0, 2e5)], ACC_PARAMS, [0.0, 1e6], [100.0, 0.0])
    assert hv == pytest.approx(0.9 * 0.8)


def test_normalised_hypervolume_three_objectives_by_hand() -> None:
    # The inclusion-exclusion example above: 18 of the 4 x 4 x 4 box.
    points = [(1, 1, 3), (2, 2, 1), (3, 1, 2)]
    zero = [0, 0, 0]
    assert normalised_hypervolume(points, ["min"] * 3, [4, 4, 4], zero) == pytest.approx(18 / 64)
    # A point outside the box ((5, 1, 1): first objective past 4) adds nothing.
    outside = [*points, (5, 1, 1)]
    assert normalised_hypervolume(outside, ["min"] * 3, [4, 4, 4], zero) == pytest.approx(18 / 64)
    # Unequal spans, one maximised: (acc 50 of 100, 2 of 4, 1 of 2) -> 0.5 * 0.5 * 0.5; the same
    # point with params -1 (past the ideal 0) is clipped to 1 on that axis -> 0.5 * 1 * 0.5.
    modes, ref, ideal = ["max", "min", "min"], [0, 4, 2], [100, 0, 0]
    assert normalised_hypervolume([(50, 2, 1)], modes, ref, ideal) == pytest.approx(0.125)
    assert normalised_hypervolume([(50, -1, 1)], modes, ref, ideal) == pytest.approx(0.25)
    # Both together: the clipped point dominates the other in the scaled box.
    both = [(50, 2, 1), (50, -1, 1)]
    assert normalised_hypervolume(both, modes, ref, ideal) == pytest.approx(0.25)


def test_normalised_hypervolume_is_raw_over_box_volume_inside_the_box() -> None:
    rng = np.random.default_rng(7)
    ref, ideal = np.array([0.0, 10.0, 3.0]), np.array([100.0, 0.0, 0.0])
    modes = ["max", "min", "min"]
    for _ in range(10):
        points = rng.random((int(rng.integers(1, 12)), 3)) * [100.0, 10.0, 3.0]
        raw = hypervolume(points, modes, ref)
        assert normalised_hypervolume(points, modes, ref, ideal) == pytest.approx(raw / 3000.0)


def test_ideal_point_must_be_better_than_the_reference() -> None:
    with pytest.raises(ValueError, match=r"strictly better than reference_point .* \[1\]"):
        normalised_hypervolume([A], ACC_PARAMS, REF, [1.0, 4.0])
    with pytest.raises(ValueError, match="ideal_point must hold 2"):
        normalised_hypervolume([A], ACC_PARAMS, REF, [1.0])
