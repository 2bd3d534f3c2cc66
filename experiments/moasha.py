"""Multi-objective asynchronous successive halving (MO-ASHA) as a Ray Tune scheduler.

Implements Schmucker et al., 2021, "Multi-objective Asynchronous Successive Halving" (section 3):
ASHA's stopping rule with the single metric replaced by an objective vector ranked by
non-dominated sorting. It is Ray's ``ASHAScheduler(brackets=1)`` (``async_hyperband.py``) with
the comparison at a rung swapped, so that with one objective it takes exactly Ray's decisions.

The rung rule (where rungs sit, when a trial reaching one continues, the ``keep_front``
addition to the paper's) is ``experiments.moasha_rule``, re-exported here.

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
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from experiments.moasha_rule import (
    TIE_BREAKS,
    epsilon_net_order,
    keeps,
    layer_order,
    rung_milestones,
)
from experiments.pareto import MODES
from lrunet.io import atomic_write_bytes

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

STATE_FILE = "moasha-state.json"
_STATE_VERSION = 1
__all__ = [
    "STATE_FILE",
    "TIE_BREAKS",
    "MOASHAScheduler",
    "epsilon_net_order",
    "keeps",
    "rung_milestones",
]


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
        if any(t.trial_id in self._paused_at for t in running):
            return None  # one is still saving its checkpoint to pause: choose with it too
        if running and not _room_beside(running, mine[0]):
            return None  # Tune would commit to the choice now and let it wait for resources
        best = self._best_paused([t.trial_id for t in mine])
        del self._paused_at[best]
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
        layers, crowd = layer_order(np.array([recorded[tid] for tid in ids], dtype=float))
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
            "num_stopped": self._num_stopped,
        }

    def _persist(self) -> None:
        # the temp file stays outside the staging folder, which Tune copies while we write
        if self._state_path is not None:
            self.save(self._state_path, Path(self._state_path).parent.parent)

    def save(self, checkpoint_path: str, tmp_dir: str | os.PathLike | None = None) -> None:
        """Write the recorded rungs and stops as JSON, atomically (the temp file in `tmp_dir`,
        default: beside the file)."""
        atomic_write_bytes(checkpoint_path, json.dumps(self._state()).encode(), tmp_dir)

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
        self._num_stopped = int(state["num_stopped"])


def _refuse_concurrency_limiter(tune_controller: TuneController) -> None:
    """Paused trials stay live for a ``ConcurrencyLimiter`` (or a ``BasicVariantGenerator``'s
    own limit), which then stops asking the searcher: the search would wait for ever. Name the
    fix instead."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    search_alg = tune_controller.search_alg
    limited = isinstance(search_alg, BasicVariantGenerator) and search_alg.max_concurrent > 0
    searcher = getattr(search_alg, "searcher", None)
    while not limited and searcher is not None:
        limited = isinstance(searcher, ConcurrencyLimiter)
        searcher = getattr(searcher, "searcher", None)
    if limited:
        raise ValueError(
            "MOASHAScheduler(pause=True) cannot run behind a ConcurrencyLimiter "
            "(TuneConfig(max_concurrent_trials=...)): paused trials would hold its slots and "
            "the searcher would never be asked again; bound concurrency with the trials' "
            "resources (tune.with_resources) instead"
        )


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
