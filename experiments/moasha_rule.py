"""The rung rule of multi-objective ASHA (Schmucker et al., 2021, section 3), without Ray:
where the rungs are, and whether a trial reaching one continues. The scheduler around it is
``experiments.moasha.MOASHAScheduler``.

Rungs sit at ``grace_period * reduction_factor**k`` (same count formula as Ray's ``_Bracket``).
When a trial's ``time_attr`` first reaches a rung it is compared with the ``n`` trials already
recorded there, then recorded itself. As in Ray, one recorded trial is enough to stop a trial;
the first trial at a rung always continues. Objectives are turned into "larger is better" by
negating ``"min"`` ones (Ray's ``metric_op``). With ``q = 1 / reduction_factor``:

* One objective: the trial stops iff its value is below
  ``np.nanpercentile(recorded, (1 - q) * 100)``, Ray's own expression.
* Several objectives: rank the recorded trials and the newcomer ``x`` together by Pareto layer
  (non-dominated sorting), ties within a layer by NSGA-II crowding distance (larger first; see
  ``experiments.pareto`` for duplicates and boundary points; ``tie_break="epsnet"`` uses the
  epsilon-net order instead, measured worse on the shipped table: benchmarks/RESULTS.md §8).
  Let ``b`` be the number of recorded trials ranked strictly ahead of ``x`` and
  ``h = (1 - q)(n - 1) = j + f`` (``j`` integer, ``0 <= f < 1``), the position of Ray's
  percentile among the recorded trials sorted worst first.
  ``x`` continues iff it is at least as good as the recorded trial at position ``ceil(h)``
  (``b <= n - 1 - ceil(h)``); it stops if it is worse than the one at ``j`` (``b > n - 1 - j``).
  Otherwise ``x`` lies between the two recorded trials ``lo`` (position ``j``) and ``hi``
  (``j + 1``), where Ray interpolates; so do we: with objectives scaled by their range over the
  compared trials, ``x`` continues iff its projection onto the segment ``lo -> hi`` is at least
  ``f`` of the way along. With a single objective this rule *is* Ray's percentile test (a
  constant second objective leaves the decisions unchanged: see ``tests/test_moasha.py``).
  So a trial that dominates every recorded trial always continues, and one dominated by every
  recorded trial always stops.
* ``keep_front=True`` (the scheduler's default; ``keeps`` takes the paper's rule alone unless
  asked) adds one rule to the paper's: a trial that no recorded trial
  dominates always continues, whatever its place in the NSGA-II order. Where a rung's front is
  larger than ``1 / reduction_factor`` of it (conflicting objectives, few trials), the order
  alone stops members of the front, and a front member stopped at a rung never enters the final
  front. On the shipped table (19 of 60 configurations on the front) it raised MO-ASHA's
  normalised hypervolume at a quarter of the grid's compute (benchmarks/RESULTS.md §8); with one
  objective it changes nothing (the best so far is never below Ray's percentile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from experiments.pareto import crowding_distance, pareto_ranks


def rung_milestones(grace_period: float, max_t: float, reduction_factor: float) -> list[float]:
    """Rung milestones, descending, exactly as Ray's ``_Bracket`` (bracket 0) makes them."""
    max_rungs = int(np.log(max_t / grace_period) / np.log(reduction_factor) - 0 + 1)
    return [grace_period * reduction_factor**k for k in reversed(range(max_rungs))]


TIE_BREAKS = ("crowding", "epsnet")


def epsilon_net_order(points: np.ndarray) -> np.ndarray:
    """Position of each point (larger is better in every column) in an epsilon-net order: the
    best in the first objective first, then again and again the point farthest (Euclidean,
    objectives scaled by their range) from those already chosen; ties go to the lower index."""
    n = points.shape[0]
    span = np.ptp(points, axis=0)
    span[span == 0] = 1.0
    scaled = points / span
    chosen = [int(np.argmax(points[:, 0]))]
    nearest = np.linalg.norm(scaled - scaled[chosen[0]], axis=1)
    while len(chosen) < n:
        nearest[chosen] = -1.0
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(scaled - scaled[pick], axis=1))
    position = np.empty(n, dtype=int)
    position[chosen] = np.arange(n)
    return position


def layer_order(points: np.ndarray, tie_break: str = "crowding") -> tuple[np.ndarray, np.ndarray]:
    """The NSGA-II order of `points` (larger is better in every column): each point's Pareto
    layer (1 = non-dominated) and, within its layer, a score where larger is better (crowding
    distance, or minus the epsilon-net position with ``tie_break="epsnet"``)."""
    k = points.shape[1]
    layers = pareto_ranks(points, ["max"] * k)
    score = np.zeros(points.shape[0])
    for layer in np.unique(layers):
        members = np.flatnonzero(layers == layer)
        if tie_break == "epsnet":  # earlier in the net is better: minus the position
            score[members] = -epsilon_net_order(points[members])
        else:
            score[members] = crowding_distance(points[members], ["max"] * k)
    return layers, score


def keeps(
    recorded: Sequence[Sequence[float]],
    x: Sequence[float],
    reduction_factor: float,
    tie_break: str = "crowding",
    keep_front: bool = False,
) -> bool:
    """Does a trial with objective vector ``x`` (larger is better in every coordinate) continue
    at a rung where ``recorded`` vectors were recorded before it? The module docstring has the
    rule; with one objective it is Ray's ASHA cutoff verbatim. ``tie_break`` orders a layer:
    NSGA-II crowding distance, or ``"epsnet"``, the epsilon-net order of Salinas et al. (2021),
    the other tie-break the MO-ASHA paper evaluates. ``keep_front``: also continue whenever no
    recorded vector dominates ``x`` (the paper's rule alone when False)."""
    xv = np.asarray(x, dtype=float).reshape(-1)
    k = xv.shape[0]
    values = np.asarray(recorded, dtype=float).reshape(-1, k)
    if k == 1:
        if values.shape[0] == 0:
            return True
        cutoff = np.nanpercentile(list(values[:, 0]), (1 - 1 / reduction_factor) * 100)
        return not bool(xv[0] < cutoff)
    values = values[~np.isnan(values).any(axis=1)]
    n = values.shape[0]
    if n == 0 or np.isnan(xv).any():
        return True
    if keep_front and not np.any(np.all(values >= xv, axis=1) & np.any(values > xv, axis=1)):
        return True
    both = np.vstack([values, xv])
    layers, crowd = layer_order(both, tie_break)
    # Sort key, worst first: deeper layer is worse, then smaller crowding distance is worse.
    keys = [(-int(layers[i]), float(crowd[i])) for i in range(n + 1)]
    ahead = sum(1 for i in range(n) if keys[i] > keys[n])
    h = (1 - 1 / reduction_factor) * (n - 1)
    j = math.floor(h)
    frac = h - j
    if ahead <= n - 1 - math.ceil(h):
        return True
    if ahead > n - 1 - j:
        return False
    # Between positions j and j + 1 (frac > 0 here): interpolate as Ray's percentile does.
    order = sorted(range(n), key=lambda i: (keys[i], tuple(values[i])))
    scale = np.ptp(both, axis=0)
    scale[scale == 0] = 1.0
    lo, hi, xs = values[order[j]] / scale, values[order[j + 1]] / scale, xv / scale
    cut = lo + frac * (hi - lo)
    return bool(np.dot(xs - cut, hi - lo) >= 0)
