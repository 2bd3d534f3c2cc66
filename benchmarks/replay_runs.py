"""One search of `benchmarks/search_efficiency.py` on a recorded learning-curve table, replayed
through the real Ray Tune loop: our searchers (`experiments.searchers.build_searcher`), our
MO-ASHA or Ray's ASHA/FIFO, and the replay trainable (`trainables.replay`), one trial at a time.

Compute is the sum of the recorded `epoch_seconds` of every epoch a trial reported (what the
search paid to train); a `tune.Stopper` keeps that running sum, in report order, and ends the
search once it reaches the budget. The log it keeps is the trajectory the benchmark reads
hypervolumes from: a trial enters the front when it reports the table's last epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from lrunet import metrics as M

METHODS = (
    "fifo+random",
    "asha(acc)+random",
    "moasha+random",
    "moasha-pause+random",
    "moasha+nsga2",
    "moasha+tpe",
)
# on request: MO-ASHA with epsilon-net ties in a layer; the paper's rule alone (no keep_front)
VARIANTS = ("moasha-epsnet+random", "moasha-paper+random")
TIME_SCALE = 1e6  # recorded seconds / 1e6: the replay trainable sleeps next to nothing


@dataclass(frozen=True)
class Settings:
    """What every replayed search of one benchmark shares."""

    grace: int
    reduction_factor: float
    max_t: int
    budget_s: float  # stop once this much recorded compute was reported


@dataclass
class Trajectory:
    """What one search did, in report order (sequential trials: also compute order)."""

    method: str
    seed: int
    # (compute after the report, config id, epoch, val_acc, params); one row per report
    reports: list[tuple[float, int, int, float, float]] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def compute(self) -> float:
        return self.reports[-1][0] if self.reports else 0.0

    def completed(self, max_t: int) -> list[tuple[float, int, float, float]]:
        """(compute at completion, config id, val_acc, params) of trials that reached max_t."""
        return [(c, cid, acc, p) for c, cid, e, acc, p in self.reports if e >= max_t]

    def trials(self) -> int:
        return sum(1 for r in self.reports if r[2] == 1)

    def epochs_per_trial(self) -> list[tuple[int, int]]:
        """(config id, last epoch reported) per trial, in start order. A report after epoch 1
        goes to the newest trial of its configuration that stopped one epoch short of it (a
        paused trial resumes after others ran)."""
        out: list[list[int]] = []
        for _, cid, e, _, _ in self.reports:
            if e == 1:
                out.append([cid, 1])
                continue
            row = next(r for r in reversed(out) if r[0] == cid and r[1] == e - 1)
            row[1] = e
        return [(a, b) for a, b in out]


class ComputeBudget(tune.Stopper):
    """A `tune.Stopper` that logs every report with
    the running compute and stops the whole search at the budget. It never stops one trial:
    that is the scheduler's call (Tune skips the scheduler when a stopper says stop)."""

    def __init__(self, table, budget_s: float, log: Trajectory) -> None:
        self.table = table
        self.budget_s = budget_s
        self.log = log
        self._compute = 0.0
        self._last: dict[str, int] = {}  # trial id -> last epoch logged

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        from trainables.trainable import RUN_KEY

        epoch = int(result[M.EPOCH])
        if epoch <= self._last.get(trial_id, 0):
            return False  # Tune shows a finished trial's last result once more
        self._last[trial_id] = epoch
        flat = {k: v for k, v in result["config"].items() if k != RUN_KEY}
        cid = self.table.lookup(flat)
        self._compute += float(self.table.curve(cid)[epoch - 1][M.EPOCH_SECONDS])
        self.log.reports.append(
            (self._compute, cid, epoch, float(result[M.VAL_ACC]), float(result[M.PARAMS]))
        )
        return False

    def stop_all(self) -> bool:
        return self._compute >= self.budget_s


@contextlib.contextmanager
def _no_trial_logs():
    """No per-trial result files (a third of a replay's time here): the log above is the record.
    Tune's end-of-run lookup of those files then warns once per trial; silenced, as is its
    line per search saying where it wrote its state."""
    key, old = (
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
        os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"),
    )
    quiet = [
        logging.getLogger(n) for n in ("ray.tune.analysis.experiment_analysis", "ray.tune.tune")
    ]
    levels = [q.level for q in quiet]
    os.environ[key] = "1"
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _scheduler(method: str, spec, s: Settings, metrics: list[str] | None = None):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from experiments.moasha import MOASHAScheduler

    if method.startswith("fifo"):
        return FIFOScheduler()
    if method.startswith("asha"):
        return ASHAScheduler(
            time_attr="training_iteration",
            metric=M.VAL_ACC,
            mode="max",
            max_t=s.max_t,
            grace_period=s.grace,
            reduction_factor=s.reduction_factor,
        )
    metrics = metrics or spec.metrics
    modes = [dict(zip(spec.metrics, spec.modes, strict=True))[m] for m in metrics]
    return MOASHAScheduler(
        metrics=metrics,
        modes=modes,
        time_attr="training_iteration",
        max_t=s.max_t,
        grace_period=s.grace,
        reduction_factor=s.reduction_factor,
        tie_break="epsnet" if "epsnet" in method else "crowding",
        keep_front="paper" not in method,
        pause="pause" in method,
    )


def run_ray(
    method: str,
    table,
    spec,
    seed: int,
    s: Settings,
    storage: str,
    moasha_metrics: list[str] | None = None,
) -> Trajectory:
    """Replay one search of `method` (one of METHODS) with `seed` until `s.budget_s` of compute
    was reported or the searcher has nothing left. Needs a running local Ray."""
    import time

    from experiments.searchers import build_searcher
    from trainables.replay import curve_key, make_replay_trainable
    from trainables.trainable import RUN_KEY

    if method not in METHODS + VARIANTS:
        raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS + VARIANTS)}")
    kind = method.split("+")[1]
    searcher = build_searcher(kind, spec, seed, s.max_t)
    curves = {curve_key(c, table.geometry): table.curve(i) for i, c in enumerate(table.configs)}
    # Paused trials would hold a ConcurrencyLimiter's slot: one trial at a time by its resources
    # (the benchmark's Ray has 2 CPUs), and a checkpoint every epoch to resume from.
    pause = "pause" in method
    trainable = make_replay_trainable(curves, table.geometry, TIME_SCALE, 2 if pause else 1, 0)
    log = Trajectory(method, seed)
    run = {
        "dataset": spec.dataset,
        "subset": spec.training.subset,
        "max_epochs": s.max_t,
        "checkpoint_every": 1 if pause else s.max_t,
    }
    # random walks the grid without replacement and ends there; Optuna's samplers may propose a
    # configuration again (each time it trains again): the budget ends those searches
    samples = len(table.configs) if kind == "random" else 50 * len(table.configs)
    tuner = tune.Tuner(
        trainable,
        param_space={**spec.fixed, RUN_KEY: run},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=_scheduler(method, spec, s, moasha_metrics),
            num_samples=samples,
            max_concurrent_trials=None if pause else 1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{method.replace('(', '-').replace(')', '').replace('+', '-')}-{seed}",
            storage_path=storage,
            stop=ComputeBudget(table, s.budget_s, log),
            verbose=0,
        ),
    )
    t0 = time.perf_counter()
    with _no_trial_logs():
        tuner.fit()
    log.wall_s = time.perf_counter() - t0
    if not log.reports or not math.isfinite(log.compute):
        raise RuntimeError(f"{method} seed {seed}: the replay reported nothing")
    return log
