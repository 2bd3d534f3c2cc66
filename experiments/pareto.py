"""Pareto dominance, non-dominated sorting, crowding distance and exact hypervolume.

Small pure functions over numpy arrays (no Ray, no MLflow) shared by the search's final Pareto
front (issue 5) and the multi-objective ASHA scheduler (``experiments.moasha``, issue 6).
Every function takes ``points`` as an ``(n, k)`` array-like (one row per trial, one column per
objective) and ``modes``, one ``"max"`` or ``"min"`` per objective; internally everything is
turned into minimisation by negating the ``"max"`` columns (:func:`to_minimisation`).

Conventions, chosen so that results never depend on the order of the input rows:

* Dominance (minimisation form): ``a`` dominates ``b`` iff ``a <= b`` in every objective and
  ``a < b`` in at least one. Identical points therefore never dominate each other: duplicates
  share a Pareto layer, and if one copy is on the front all copies are.
* Non-dominated sorting is Deb et al.'s (NSGA-II, 2002, section III-A); layer 1 is the front.
* Crowding distance is NSGA-II's (section III-B) with three documented details: duplicates are
  scored once and every copy gets that score (so copies always tie); every point attaining the
  smallest or largest value of an objective is a boundary point (infinite distance); an objective
  on which all points are equal contributes nothing. Ties inside one objective's sort are broken
  by the lexicographic order of the full vectors.
* Hypervolume is the Lebesgue measure of the region dominated by the points and bounded by the
  reference point, computed exactly by slicing along one objective (HSO; While et al., 2006) with
  a sweep in two dimensions. Points that are not strictly better than the reference point in
  every objective contribute nothing. NaN objectives are rejected with a ``ValueError``.
* The normalised hypervolume rescales every objective to the reference box first: the reference
  point maps to 0 and an ideal corner (e.g. 100 % accuracy, 0 parameters) to 1, so the value is a
  share of the box in [0, 1], comparable across spaces whose raw units differ. Points beyond the
  ideal corner are clipped to it; points outside the box contribute nothing, as above.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODES = ("max", "min")


def _as_points(points: object, modes: Sequence[str]) -> np.ndarray:
    """Validate ``modes`` and return ``points`` as a float ``(n, k)`` array."""
    if isinstance(modes, str) or len(modes) == 0:
        raise ValueError(
            f"modes must be a non-empty list of 'max'/'min', one per objective; got {modes!r}"
        )
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"modes: {mode!r} is not one of {MODES}; fix the objective's mode")
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.zeros((0, len(modes)))
    if arr.ndim == 1 and len(modes) == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != len(modes):
        raise ValueError(
            f"points must have shape (n, {len(modes)}) to match modes {list(modes)}; "
            f"got shape {arr.shape}"
        )
    if np.isnan(arr).any():
        rows = sorted({int(i) for i in np.argwhere(np.isnan(arr))[:, 0]})
        raise ValueError(f"points: rows {rows} contain NaN objectives; drop those trials first")
    return arr


def to_minimisation(points: object, modes: Sequence[str]) -> np.ndarray:
    """Return a float copy of ``points`` with every ``"max"`` objective negated."""
    arr = _as_points(points, modes)
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in modes])
    return arr * signs


def _dominance_matrix(minimised: np.ndarray) -> np.ndarray:
    """``d[i, j]`` is True iff point i dominates point j (minimisation form)."""
    a = minimised[:, None, :]
    b = minimised[None, :, :]
    return np.all(a <= b, axis=2) & np.any(a < b, axis=2)


def _sort_minimised(minimised: np.ndarray) -> list[np.ndarray]:
    n = minimised.shape[0]
    if n == 0:
        return []
    dominates = _dominance_matrix(minimised)
    dominated_by = dominates.sum(axis=0)  # how many points dominate each point
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(dominated_by == 0)
    while current.size:
        fronts.append(current)
        dominated_by = dominated_by - dominates[current].sum(axis=0)
        dominated_by[current] = -1  # never select an assigned point again
        current = np.flatnonzero(dominated_by == 0)
    return fronts


def non_dominated_sort(points: object, modes: Sequence[str]) -> list[np.ndarray]:
    """Split the points into Pareto layers: a list of index arrays, the front first.

    Each index array is sorted ascending; together they partition ``range(n)``. An empty input
    gives an empty list.
    """
    return _sort_minimised(to_minimisation(points, modes))


def pareto_ranks(points: object, modes: Sequence[str]) -> np.ndarray:
    """Return each point's 1-based Pareto layer (1 = on the front) as an int array."""
    minimised = to_minimisation(points, modes)
    ranks = np.zeros(minimised.shape[0], dtype=int)
    for layer, members in enumerate(_sort_minimised(minimised), start=1):
        ranks[members] = layer
    return ranks


def pareto_front_mask(points: object, modes: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated points; identical points are all non-dominated."""
    return pareto_ranks(points, modes) == 1


def _crowding_minimised(minimised: np.ndarray) -> np.ndarray:
    n = minimised.shape[0]
    if n == 0:
        return np.zeros(0)
    unique, inverse = np.unique(minimised, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    m = unique.shape[0]
    distance = np.zeros(m)
    if m <= 2:
        return np.full(n, np.inf)
    # np.unique sorts rows lexicographically, so a stable sort on one column breaks its ties by
    # the lexicographic order of the full vectors.
    for column in range(unique.shape[1]):
        values = unique[:, column]
        low, high = values.min(), values.max()
        if high == low:
            continue
        order = np.argsort(values, kind="stable")
        gaps = np.zeros(m)
        gaps[order[1:-1]] = (values[order[2:]] - values[order[:-2]]) / (high - low)
        distance += gaps
        distance[(values == low) | (values == high)] = np.inf
    return distance[inverse]


def crowding_distance(points: object, modes: Sequence[str]) -> np.ndarray:
    """NSGA-II crowding distance of each point within the given set (meant to be one layer).

    Larger is more isolated. Boundary points (extreme in some objective) are infinite, so are all
    points when there are at most two distinct ones; copies of a point get the same distance.
    """
    return _crowding_minimised(to_minimisation(points, modes))


def _hv_minimised(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of points already strictly inside the reference box (minimisation)."""
    n, k = points.shape
    if n == 0:
        return 0.0
    if k == 1:
        return float(reference[0] - points[:, 0].min())
    # Sort along the first objective; ties by the rest so dominated copies come later.
    order = np.lexsort(points.T[::-1])
    points = points[order]
    if k == 2:
        area, best_y = 0.0, reference[1]
        xs = np.append(points[:, 0], reference[0])
        for i in range(n):
            best_y = min(best_y, points[i, 1])
            area += (xs[i + 1] - xs[i]) * (reference[1] - best_y)
        return float(area)
    # HSO: between consecutive distinct first-objective values the slice is the (k-1)-D
    # hypervolume of the points seen so far; keep only that prefix's non-dominated points.
    volume = 0.0
    xs = np.append(points[:, 0], reference[0])
    prefix: np.ndarray = np.zeros((0, k - 1))
    for i in range(n):
        width = xs[i + 1] - xs[i]
        candidate = np.vstack([prefix, points[i, 1:]])
        prefix = candidate[_front_of_minimised(candidate)]
        if width > 0:
            volume += width * _hv_minimised(prefix, reference[1:])
    return float(volume)


def _front_of_minimised(points: np.ndarray) -> np.ndarray:
    """Indices of non-dominated points, keeping one copy of duplicates."""
    _, first = np.unique(points, axis=0, return_index=True)
    first = np.sort(first)
    dominated = _dominance_matrix(points[first]).any(axis=0)
    return first[~dominated]


def _check_reference(reference_point: object, modes: Sequence[str]) -> np.ndarray:
    ref = np.asarray(reference_point, dtype=float).reshape(-1)
    if ref.shape[0] != len(modes) or not np.isfinite(ref).all():
        raise ValueError(
            f"reference_point must hold {len(modes)} finite numbers, one per objective "
            f"{list(modes)}; got {reference_point!r}"
        )
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in modes])
    return ref * signs


def hypervolume(points: object, modes: Sequence[str], reference_point: object) -> float:
    """Exact hypervolume dominated by ``points`` up to ``reference_point`` (any number of
    objectives). The reference point is given in the objectives' own directions, e.g.
    ``[0.0, 1e6]`` for ``(accuracy max, params min)``; points not strictly better than it in every
    objective contribute nothing, and an empty set has hypervolume 0.
    """
    minimised = to_minimisation(points, modes)
    ref = _check_reference(reference_point, modes)
    inside = minimised[np.all(minimised < ref, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    return _hv_minimised(inside[_front_of_minimised(inside)], ref)


def hypervolume_over_time(
    points_in_completion_order: object, modes: Sequence[str], reference_point: object
) -> list[float]:
    """Hypervolume of the first 1, 2, ..., n points, in the order given (one value per point)."""
    minimised = to_minimisation(points_in_completion_order, modes)
    ref = _check_reference(reference_point, modes)
    out: list[float] = []
    front = np.zeros((0, len(modes)))
    volume = 0.0
    for row in minimised:
        if np.all(row < ref):
            candidate = np.vstack([front, row])
            front = candidate[_front_of_minimised(candidate)]
            volume = _hv_minimised(front, ref)
        out.append(volume)
    return out


def normalise_to_box(
    points: object, modes: Sequence[str], reference_point: object, ideal_point: object
) -> np.ndarray:
    """``points`` rescaled per objective so that the reference point is 0 and the ideal corner
    is 1 (larger is better in every column afterwards); values past the ideal are clipped to 1,
    values worse than the reference stay below 0."""
    minimised = to_minimisation(points, modes)
    ref = _check_reference(reference_point, modes)
    ideal = np.asarray(ideal_point, dtype=float).reshape(-1)
    if ideal.shape[0] != len(modes) or not np.isfinite(ideal).all():
        raise ValueError(
            f"ideal_point must hold {len(modes)} finite numbers, one per objective "
            f"{list(modes)}; got {ideal_point!r}"
        )
    ideal = ideal * np.array([-1.0 if mode == "max" else 1.0 for mode in modes])
    span = ref - ideal
    if not np.all(span > 0):
        bad = [i for i in range(len(modes)) if not span[i] > 0]
        raise ValueError(
            f"ideal_point {ideal_point!r} must be strictly better than reference_point "
            f"{reference_point!r} in every objective; objectives {bad} are not"
        )
    return np.minimum((ref - minimised) / span, 1.0)


def normalised_hypervolume(
    points: object, modes: Sequence[str], reference_point: object, ideal_point: object
) -> float:
    """Hypervolume of ``points`` in the reference box scaled to the unit cube (module
    docstring): 1 means a point at the ideal corner, 0 nothing inside the box."""
    scaled = normalise_to_box(points, modes, reference_point, ideal_point)
    return hypervolume(scaled, ["max"] * len(modes), np.zeros(len(modes)))
