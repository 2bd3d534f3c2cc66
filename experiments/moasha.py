"""Multi-objective asynchronous successive halving (MO-ASHA) as a Ray Tune scheduler.

Implements Schmucker et al., 2021, "Multi-objective Asynchronous Successive Halving" (section 3):
ASHA's stopping rule with the single metric replaced by an objective vector ranked by
non-dominated sorting. It is Ray's ``ASHAScheduler(brackets=1)`` (``async_hyperband.py``) with
the comparison at a rung swapped, so that with one objective it takes exactly Ray's decisions.

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
* ``keep_front=True`` (the default) adds one rule to the paper's: a trial that no recorded trial
  dominates always continues, whatever its place in the NSGA-II order. Where a rung's front is
  larger than ``1 / reduction_factor`` of it (conflicting objectives, few trials), the order
  alone stops members of the front, and a front member stopped at a rung never enters the final
  front. On the shipped table (19 of 60 configurations on the front) it raised MO-ASHA's
  normalised hypervolume at a quarter of the grid's compute (benchmarks/RESULTS.md §8); with one
  objective it changes nothing (the best so far is never below Ray's percentile).

Pausing (``pause=True``, for searches that end on a budget: a ``tune.Stopper``, Tune's
``time_budget_s``): a trial the rung rule stops is paused instead (Tune keeps its last
checkpoint). While the searcher proposes configurations they run first, as in Ray's ASHA. Once
the searcher is finished (its ``num_samples`` reached, or it said so) and no trial is pending,
the best paused trial resumes: the highest rung first, then the NSGA-II order among everything
recorded at that rung; it meets the rung rule again at the next rung. So the compute a stopping
ASHA leaves unused after the space is exhausted goes to the trials closest to the front, until
the budget ends the search (or every trial finished). Paused trials count as live for Tune's
``ConcurrencyLimiter`` (``TuneConfig(max_concurrent_trials=...)``), which would then starve
the searcher: bound concurrency with trial resources instead (the scheduler refuses the
combination when the first trial is added).

Results missing any objective (or carrying ``None``) are ignored, as Ray ignores results without
its metric. NaN objectives are recorded but left out of comparisons (``nanpercentile``), and a
NaN result is never stopped (Ray's ``nan < cutoff`` is False). With ``stop_last_trials=True``
(Ray's default) a trial is stopped once ``time_attr >= max_t``.

The scheduler keeps its own list of metrics: its ``metric`` property stays ``None``, so Tune
neither validates nor sorts by a single scheduler metric, and ``TuneConfig`` must carry no
``metric``/``mode`` (Tune raises if it does, as for Ray's ASHA built with a metric).

State (the objective vectors recorded at each rung and the stops decided) round-trips through
``save(path)``/``restore(path)``. Ray 2.60's ``Tuner.restore`` neither saves nor restores
scheduler state, so the scheduler also writes it, atomically after every change, to
``moasha-state.json`` in the experiment's driver staging directory; Tune syncs that directory to
``<storage_path>/<experiment>/`` with its experiment checkpoints and copies ``*.json`` back
before it re-adds the trials on resume, and the first ``on_trial_add`` after a resume reloads it.
A trial stopped before an interruption but resumed from an older checkpoint is stopped again when
it reaches the rung where it was stopped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from experiments.pareto import MODES, crowding_distance, pareto_ranks
from lrunet.io import atomic_write_bytes

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

STATE_FILE = "moasha-state.json"
_STATE_VERSION = 1


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
    layers = pareto_ranks(both, ["max"] * k)
    crowd = np.zeros(n + 1)
    for layer in np.unique(layers):
        members = np.flatnonzero(layers == layer)
        if tie_break == "epsnet":  # earlier in the net is better: minus the position
            crowd[members] = -epsilon_net_order(both[members])
        else:
            crowd[members] = crowding_distance(both[members], ["max"] * k)
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


class MOASHAScheduler(FIFOScheduler):
    """Multi-objective ASHA (one bracket); see the module docstring for the promotion rule.

    Args:
        metrics: the objectives, e.g. ``[VAL_ACC, PARAMS]``; every one must be in each result.
        modes: ``"max"`` or ``"min"`` for each metric.
        time_attr: monotone progress attribute of the results (Tune's ``training_iteration``
            equals the epoch count here).
        max_t: the full budget in ``time_attr`` units.
        grace_period: the first rung.
        reduction_factor: keep roughly the top ``1 / reduction_factor`` at each rung.
        stop_last_trials: stop trials once ``time_attr >= max_t`` (Ray's default, True).
        tie_break: how a Pareto layer is ordered, ``"crowding"`` (default) or ``"epsnet"``.
        keep_front: a trial no recorded trial dominates always continues (default True; False is
            the paper's rule alone).
        pause: pause the trials the rung rule stops, and resume the best of them once the
            searcher is finished (for budgeted searches; see the module docstring).
    """

    def __init__(
        self,
        metrics: Sequence[str],
        modes: Sequence[str],
        time_attr: str = "training_iteration",
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
        tie_break: str = "crowding",
        keep_front: bool = True,
        pause: bool = False,
    ) -> None:
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break {tie_break!r}: choose one of {', '.join(TIE_BREAKS)}")
        if isinstance(metrics, str) or len(metrics) == 0:
            raise ValueError(f"metrics must be a non-empty list of metric names; got {metrics!r}")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics must not repeat a name; got {list(metrics)}")
        if isinstance(modes, str) or len(modes) != len(metrics):
            raise ValueError(
                f"modes must list one of {MODES} per metric {list(metrics)}; got {modes!r}"
            )
        for mode in modes:
            if mode not in MODES:
                raise ValueError(f"modes: {mode!r} is not one of {MODES}")
        if not grace_period > 0:
            raise ValueError(f"grace_period must be positive; got {grace_period}")
        if not max_t >= grace_period:
            raise ValueError(f"max_t ({max_t}) must be >= grace_period ({grace_period})")
        if not reduction_factor > 1:
            raise ValueError(f"reduction_factor must be > 1; got {reduction_factor}")
        super().__init__()
        self._metrics = list(metrics)
        self._modes = list(modes)
        self._signs = [1.0 if mode == "max" else -1.0 for mode in modes]
        self._time_attr = time_attr
        self._max_t = max_t
        self._grace_period = grace_period
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._tie_break = tie_break
        self._keep_front = bool(keep_front)
        self._pause = bool(pause)
        self._rungs: list[tuple[float, dict[str, tuple[float, ...]]]] = [
            (milestone, {}) for milestone in rung_milestones(grace_period, max_t, reduction_factor)
        ]
        self._stopped_at: dict[str, float] = {}  # trial id -> rung milestone where it stopped
        self._paused_at: dict[str, float] = {}  # trial id -> milestone where it waits (pause)
        self._resumed: dict[str, float] = {}  # trial id -> milestone it was resumed from
        self._num_stopped = 0
        self._state_path: str | None = None

    @property
    def metrics(self) -> list[str]:
        return list(self._metrics)

    @property
    def modes(self) -> list[str]:
        return list(self._modes)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # Our objectives come from the constructor; a TuneConfig metric/mode is a conflict.
        return metric is None and mode is None

    def on_trial_add(self, tune_controller: TuneController | None, trial: Trial) -> None:
        if self._pause and tune_controller is not None:
            _refuse_concurrency_limiter(tune_controller)
        # The staging path lives in the Ray session directory: no Ray, no persistence.
        if self._state_path is None and trial.storage is not None and ray.is_initialized():
            staging = trial.storage.experiment_driver_staging_path
            self._state_path = str(Path(staging, STATE_FILE))
            if os.path.exists(self._state_path):
                self.restore(self._state_path)

    def _objectives(self, result: dict) -> tuple[float, ...] | None:
        if self._time_attr not in result or result[self._time_attr] is None:
            return None
        if any(result.get(m) is None for m in self._metrics):
            return None
        # Kept as Ray computes ``metric_op * value`` (same dtype), so cutoffs match bit for bit.
        return tuple(s * result[m] for s, m in zip(self._signs, self._metrics, strict=True))

    def on_trial_result(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> str:
        vector = self._objectives(result)
        if vector is None:
            return TrialScheduler.CONTINUE
        now = result[self._time_attr]
        stopped_at = self._stopped_at.get(trial.trial_id)
        if stopped_at is not None and now >= stopped_at:
            return TrialScheduler.STOP  # re-run after a resume from an older checkpoint
        paused_at = self._paused_at.get(trial.trial_id)
        if paused_at is not None and now >= paused_at:
            return TrialScheduler.PAUSE  # restarted without being resumed: wait again
        if now >= self._max_t and self._stop_last_trials:
            self._num_stopped += 1
            return TrialScheduler.STOP
        action, milestone = self._record(trial.trial_id, now, vector)
        if action == TrialScheduler.STOP and self._pause:
            self._paused_at[trial.trial_id] = milestone
            self._persist()
            return TrialScheduler.PAUSE
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
            self._stopped_at[trial.trial_id] = milestone
            self._persist()
        return action

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        """Ray's FIFO choice (pending trials first); with pausing, once the searcher is finished
        and nothing is pending, the best trial paused by the rung rule (highest rung, then the
        NSGA-II order at that rung). Idempotent, as Tune requires."""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        waiting = [t for t in trials if t.status == Trial.PAUSED]
        mine = [t for t in waiting if t.trial_id in self._paused_at]
        for trial in waiting:
            if trial.trial_id not in self._paused_at:
                return trial  # paused by someone else (e.g. Tune itself): FIFO's choice
        running = [t for t in trials if t.status == Trial.RUNNING]
        if not mine or (running and not tune_controller.search_alg.is_finished()):
            return None  # the searcher may still propose (with nothing running it cannot wait)
        if any(t.status == Trial.RUNNING and t.trial_id in self._paused_at for t in trials):
            return None  # one is still saving its checkpoint to pause: choose with it too
        if running and not _room_beside(running, mine[0]):
            return None  # Tune would commit to the choice now and let it wait for resources
        best = self._best_paused([t.trial_id for t in mine])
        self._resumed[best] = self._paused_at.pop(best)
        self._persist()
        return next(t for t in mine if t.trial_id == best)

    def _best_paused(self, trial_ids: Sequence[str]) -> str:
        """The paused trial to resume: the highest rung with one, then its place in the order of
        everything recorded at that rung (Pareto layer, then crowding; ties: the earlier id)."""
        at = {tid: self._paused_at[tid] for tid in trial_ids}
        top = max(at.values())
        recorded = dict(next(r for m, r in self._rungs if m == top))
        ids = [tid for tid in recorded if not any(np.isnan(recorded[tid]))]
        candidates = sorted(tid for tid, m in at.items() if m == top)
        if not all(c in ids for c in candidates):
            return candidates[0]
        points = np.array([recorded[tid] for tid in ids], dtype=float)
        k = points.shape[1]
        layers = pareto_ranks(points, ["max"] * k)
        crowd = np.zeros(len(ids))
        for layer in np.unique(layers):
            members = np.flatnonzero(layers == layer)
            crowd[members] = crowding_distance(points[members], ["max"] * k)
        place = {tid: (int(layers[i]), -float(crowd[i])) for i, tid in enumerate(ids)}
        return min(candidates, key=lambda tid: (place[tid], tid))

    def on_trial_complete(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> None:
        vector = self._objectives(result)
        if vector is not None:
            self._record(trial.trial_id, result[self._time_attr], vector)

    def _record(
        self, trial_id: str, now: float, vector: tuple[float, ...]
    ) -> tuple[str, float | None]:
        """Ray's ``_Bracket.on_result`` with the cutoff replaced by :func:`keeps`."""
        for milestone, recorded in self._rungs:
            if now >= milestone and trial_id in recorded and not self._stop_last_trials:
                break
            if now < milestone or trial_id in recorded:
                continue
            keep = keeps(
                list(recorded.values()),
                vector,
                self._reduction_factor,
                self._tie_break,
                self._keep_front,
            )
            recorded[trial_id] = vector
            self._persist()
            return (TrialScheduler.CONTINUE if keep else TrialScheduler.STOP), milestone
        return TrialScheduler.CONTINUE, None

    def debug_string(self) -> str:
        rungs = " | ".join(f"t={m:g}: {len(r)} recorded" for m, r in reversed(self._rungs))
        paused = f", paused={len(self._paused_at)}" if self._pause else ""
        return (
            f"Using MO-ASHA on {self._metrics}: num_stopped={self._num_stopped}{paused}\n{rungs}"
        )

    def _state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "metrics": self._metrics,
            "modes": self._modes,
            "time_attr": self._time_attr,
            "milestones": [m for m, _ in self._rungs],
            "rungs": [
                {tid: [float(x) for x in v] for tid, v in recorded.items()}
                for _, recorded in self._rungs
            ],
            "stopped_at": self._stopped_at,
            "paused_at": self._paused_at,
            "resumed": self._resumed,
            "num_stopped": self._num_stopped,
        }

    def _persist(self) -> None:
        if self._state_path is not None:
            self.save(self._state_path)

    def save(self, checkpoint_path: str) -> None:
        """Write the recorded rungs and stops as JSON, atomically."""
        atomic_write_bytes(checkpoint_path, json.dumps(self._state()).encode())

    def restore(self, checkpoint_path: str) -> None:
        """Load state written by :meth:`save` by a scheduler with the same settings."""
        with open(checkpoint_path) as f:
            state = json.load(f)
        mine = self._state()
        for key in ("metrics", "modes", "time_attr", "milestones"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"{checkpoint_path}: saved {key} {state.get(key)!r} differ from this "
                    f"scheduler's {mine[key]!r}; build the scheduler with the settings of the "
                    "run being resumed"
                )
        self._rungs = [
            (milestone, {tid: tuple(v) for tid, v in recorded.items()})
            for milestone, recorded in zip(state["milestones"], state["rungs"], strict=True)
        ]
        self._stopped_at = dict(state["stopped_at"])
        self._paused_at = dict(state.get("paused_at", {}))
        self._resumed = dict(state.get("resumed", {}))
        self._num_stopped = int(state["num_stopped"])


def _refuse_concurrency_limiter(tune_controller: TuneController) -> None:
    """Paused trials stay live for a ``ConcurrencyLimiter``, which then stops asking the searcher:
    the search would wait for ever. Name the fix instead."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    search_alg = tune_controller.search_alg
    limited = isinstance(search_alg, BasicVariantGenerator) and search_alg.max_concurrent > 0
    searcher = getattr(search_alg, "searcher", None)
    while searcher is not None or limited:
        if limited or isinstance(searcher, ConcurrencyLimiter):
            raise ValueError(
                "MOASHAScheduler(pause=True) cannot run behind a ConcurrencyLimiter "
                "(TuneConfig(max_concurrent_trials=...)): paused trials would hold its slots and "
                "the searcher would never be asked again; bound concurrency with the trials' "
                "resources (tune.with_resources) instead"
            )
        searcher = getattr(searcher, "searcher", None)


def _room_beside(running: Sequence[Trial], trial: Trial) -> bool:
    """Whether the cluster's resources hold `trial` beside the `running` trials (totals only:
    a trial split over nodes is not modelled)."""
    total = ray.cluster_resources() if ray.is_initialized() else {}
    used: dict[str, float] = {}
    for t in running:
        for key, amount in t.placement_group_factory.required_resources.items():
            used[key] = used.get(key, 0.0) + amount
    need = trial.placement_group_factory.required_resources
    return all(used.get(k, 0.0) + v <= total.get(k, 0.0) + 1e-9 for k, v in need.items() if v)
