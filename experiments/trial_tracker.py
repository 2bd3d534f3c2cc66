"""The Ray Tune callback that mirrors every trial into a nested MLflow run.

Runs in the driver process, the only writer, so the default SQLite store never sees concurrent
writers. A trial's run is found again by its tags (`mlflow.parentRunId` + `trial_id`), never kept
only in memory: a resumed search (`--resume`) reuses the same trial runs instead of opening
duplicates, and no run is left RUNNING when the search ends. The tags, params and metrics it
writes are listed in `experiments.tracking`; writes go through `experiments.mlflow_writer`, so a
tracking server that goes away delays them instead of losing them.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from experiments.infeasible_runs import InfeasibleRecords, infeasible_tags
from experiments.mlflow_writer import BufferedWriter
from experiments.tracking import (
    COMPLETED,
    FAILED,
    MODEL_ARTIFACT_DIR,
    MODEL_FILE,
    NODE_TAG,
    PARENT_TAG,
    RECOMPUTED_TAG,
    RETRIES_TAG,
    RUNNING,
    STATUS_TAG,
    STOPPED_EARLY,
    _params,
    client_for,
    config_hash,
    failure_reason,
    trial_params,
    trial_run_tags,
    trial_runs,
)
from lrunet import metrics as M
from lrunet.objectives import logged_metrics

log = logging.getLogger(__name__)


def _metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k in logged_metrics():
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


FINAL_FLUSH_S = 120.0


class _TrialTracker(InfeasibleRecords):
    """The body of the Ray Tune callback built by `make_trial_callback` (module docstring).

    The callback is pickled into Tune's experiment state and comes back on `Tuner.restore`: it
    pickles by reference with only its settings (the MLflow client is rebuilt from the URI), and
    every run it needs is found again by tags, so a resumed search writes into the same runs.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        *,
        dataset: str,
        geometry: Mapping[str, int],
        max_epochs: int,
        model_writer: Callable[[Any, Path], bool] | None = None,
    ) -> None:
        self.settings = {
            "tracking_uri": tracking_uri,
            "experiment_id": experiment_id,
            "parent_run_id": parent_run_id,
            "dataset": dataset,
            "geometry": dict(geometry),
            "max_epochs": max_epochs,
            "model_writer": model_writer,
        }
        self._setup()

    def _setup(self) -> None:
        s = self.settings
        self.uri, self.experiment_id, self.parent_run_id = (
            s["tracking_uri"],
            s["experiment_id"],
            s["parent_run_id"],
        )
        self.dataset, self.geometry, self.max_epochs = s["dataset"], s["geometry"], s["max_epochs"]
        self.model_writer = s["model_writer"]
        self.client = client_for(self.uri)
        self.writer = BufferedWriter(self.client)
        self.run_ids: dict[str, str] = {}
        self.logged_step: dict[str, int] = {}  # trial id -> last step in MLflow
        self.node: dict[str, str] = {}
        self.recomputed: dict[str, int] = {}
        self.infeasible_keys: set[str] | None = None
        self.reconciled = False
        self.ended: set[str] = set()  # trials Tune told us finished or failed

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        self._setup()

    # --- runs -------------------------------------------------------------------------------
    def run_id(self, trial) -> str:
        """The trial's run: cached, else found by tags (resume), else created."""
        tid = trial.trial_id
        if tid in self.run_ids:
            return self.run_ids[tid]
        c = self.client
        found = c.search_runs(
            [self.experiment_id],
            f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.trial_id = '{tid}'",
            max_results=1,
        )
        if found:
            run = found[0]
            run_id = run.info.run_id
            history = c.get_metric_history(run_id, M.TRAIN_LOSS)
            self.logged_step[tid] = max((m.step for m in history), default=0)
            self.node[tid] = run.data.tags.get(NODE_TAG, "")
            self.recomputed[tid] = int(run.data.tags.get(RECOMPUTED_TAG, 0))
            if run.info.status != "RUNNING" and trial.status not in ("TERMINATED", "ERROR"):
                c.update_run(run_id, status="RUNNING")  # resumed (an errored trial: retried)
                c.set_tag(run_id, STATUS_TAG, RUNNING)
                if "failure_reason" in run.data.tags:
                    c.delete_tag(run_id, "failure_reason")
        else:
            flat = {k: v for k, v in trial.config.items() if not k.startswith("_run")}
            arch, params = trial_params(flat, self.geometry, self.dataset)
            run = c.create_run(
                self.experiment_id,
                run_name=arch,
                tags=trial_run_tags(
                    self.parent_run_id,
                    arch,
                    params,
                    self.dataset,
                    trial_id=tid,
                    **{STATUS_TAG: RUNNING},
                ),
            )
            run_id = run.info.run_id
            c.log_batch(run_id, params=_params(params))
            self.logged_step[tid] = 0
        self.run_ids[tid] = run_id
        return run_id

    def _on_run(self, what: str, trial, fn: Callable[[str], Any]) -> None:
        """Queue `fn(run_id)` for the trial's run (resolved when the write happens)."""
        self.writer.submit(what, lambda: fn(self.run_id(trial)))

    # --- Tune hooks ---------------------------------------------------------------------------
    def on_step_begin(self, iteration, trials, **info):
        if not self.reconciled:
            self.reconciled = True
            snapshot = list(trials)
            self.writer.submit("reconcile", lambda: self._reconcile(snapshot))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._on_run("create run", trial, lambda rid: None)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step = int(result.get(M.EPOCH, result.get("training_iteration", 0)))
        metrics = _metrics_of(result)
        node = str(result.get(NODE_TAG) or "")
        if result.get(M.INFEASIBLE):  # over a measured budget: its measurements, no epoch
            reason = str(result.get(M.INFEASIBLE_REASON) or "over a measured budget")
            self._on_run(
                "record rejection", trial, lambda rid: self._reject(trial, rid, metrics, reason)
            )
            return
        replayed = bool(result.get(M.REPLAYED))
        ts = int(time.time() * 1000)
        self._on_run(
            "log metrics",
            trial,
            lambda rid: self._log_result(trial, rid, step, metrics, node, ts, replayed),
        )

    def _log_result(
        self,
        trial,
        run_id: str,
        step: int,
        metrics: dict[str, float],
        node: str,
        ts: int,
        replayed: bool = False,
    ) -> None:
        from mlflow.entities import Metric, RunTag

        tid = trial.trial_id
        tags = []
        if node and node != self.node.get(tid):
            tags.append(RunTag(NODE_TAG, node))
        if step <= self.logged_step.get(tid, 0):
            # an epoch already in MLflow came again: keep the first value. Reported again from
            # its checkpoint after a crash (replayed) it was not trained twice; otherwise the
            # trial went back to an older checkpoint and the recomputation is counted.
            if not replayed:
                self.recomputed[tid] = self.recomputed.get(tid, 0) + 1
                tags.append(RunTag(RECOMPUTED_TAG, str(self.recomputed[tid])))
            metrics = {}
        batch = [Metric(k, v, ts, step) for k, v in metrics.items()]
        if batch or tags:
            self.client.log_batch(run_id, metrics=batch, tags=tags)
        if node:
            self.node[tid] = node
        if batch:
            self.logged_step[tid] = step

    def _reject(self, trial, run_id: str, metrics: dict[str, float], reason: str) -> None:
        from mlflow.entities import Metric, RunTag

        flat = {k: v for k, v in trial.config.items() if not k.startswith("_run")}
        tags = {**infeasible_tags(config_hash(flat), reason), "stopped_at_epoch": "0"}
        ts = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def on_trial_recover(self, iteration, trials, trial, **info):
        n = str(getattr(getattr(trial, "run_metadata", None), "num_failures", 1))
        reason = failure_reason(trial)

        def tag(rid: str) -> None:
            self.client.set_tag(rid, RETRIES_TAG, n)
            self.client.set_tag(rid, "last_retry_reason", reason)

        self._on_run("tag retry", trial, tag)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        epoch = self._epoch(trial)
        self._on_run("finish run", trial, lambda rid: self._finish(trial, rid, epoch))

    def _finish(self, trial, run_id: str, epoch: int) -> None:
        if (trial.last_result or {}).get(M.INFEASIBLE):
            self.client.set_terminated(run_id, "FINISHED")  # tagged infeasible by `_reject`
            return
        status = COMPLETED if epoch >= self.max_epochs else STOPPED_EARLY
        if status == COMPLETED and self.model_writer is not None:
            self._log_model(trial, run_id)
        self.client.set_tag(run_id, "stopped_at_epoch", str(epoch))
        self.client.set_tag(run_id, STATUS_TAG, status)
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended.add(trial.trial_id)
        epoch, reason = self._epoch(trial), failure_reason(trial)
        self._on_run("fail run", trial, lambda rid: self._fail(rid, epoch, reason))

    def _fail(self, run_id: str, epoch: int, reason: str) -> None:
        self.client.set_tag(run_id, "stopped_at_epoch", str(epoch))
        self.client.set_tag(run_id, "failure_reason", reason)
        self.client.set_tag(run_id, STATUS_TAG, FAILED)
        self.client.set_terminated(run_id, "FAILED")

    def on_experiment_end(self, trials, **info):
        # Trials that never ended (the driver is stopping) are marked so no run stays RUNNING;
        # `--resume` turns them back to RUNNING. Trials a stopper ended (a time budget: Tune
        # stops them without telling callbacks) finish as stopped early (completed at max_epochs).
        for trial in trials:
            if trial.trial_id not in self.run_ids:
                continue
            if trial.status in ("PENDING", "RUNNING", "PAUSED"):
                rid = self.run_ids[trial.trial_id]
                self.writer("set_tag", rid, STATUS_TAG, "interrupted")
                self.writer("set_terminated", rid, "KILLED")
            elif trial.status == "TERMINATED" and trial.trial_id not in self.ended:
                self.on_trial_complete(0, trials, trial)
        self.flush()

    def flush(self, patience_s: float = FINAL_FLUSH_S) -> bool:
        """Deliver every queued write, retrying for up to `patience_s` seconds."""
        deadline = time.monotonic() + patience_s
        while not self.writer.flush(attempts=1):
            if time.monotonic() > deadline:
                log.error(
                    "MLflow still unreachable: %d write(s) could not be delivered",
                    len(self.writer.pending),
                )
                return False
            time.sleep(3.0)
        return True

    def _epoch(self, trial) -> int:
        last = trial.last_result or {}
        fallback = last.get("training_iteration", self.logged_step.get(trial.trial_id, 0))
        return int(last.get(M.EPOCH, fallback))

    def _log_model(self, trial, run_id: str) -> None:
        with tempfile.TemporaryDirectory(prefix="lrunet-model-") as d:
            path = Path(d) / MODEL_FILE
            try:
                ok = self.model_writer(trial, path)
            except Exception as e:  # a missing checkpoint must not stop the search
                log.warning("could not save the model of trial %s: %s", trial.trial_id, e)
                return
            if ok:
                self.client.log_artifact(run_id, str(path), MODEL_ARTIFACT_DIR)

    def _reconcile(self, trials) -> None:
        """After `--resume`: settle runs the killed driver left behind.

        A run whose trial Tune no longer knows (the driver died before Tune saved that trial)
        is deleted: its proposal is made again under a new trial. A run whose trial Tune has as
        finished but that MLflow still shows RUNNING is finished now.
        """
        known = {t.trial_id: t for t in trials}
        for r in trial_runs(self.client, self.parent_run_id, self.experiment_id):
            tid = r.data.tags.get("trial_id")
            if tid is None or r.info.status not in ("RUNNING", "KILLED"):
                continue
            t = known.get(tid)
            if t is None:
                log.warning(
                    "deleting run %s: trial %s was lost with the driver", r.info.run_id, tid
                )
                self.client.delete_run(r.info.run_id)
            elif t.status == "TERMINATED":
                self.run_ids[tid] = r.info.run_id
                self.ended.add(tid)
                self._finish(t, r.info.run_id, self._epoch(t))
            elif t.status == "ERROR":
                self.ended.add(tid)
                self._fail(r.info.run_id, self._epoch(t), failure_reason(t))


_TRACKER_CLASS: type | None = None


def _tracker_class() -> type:
    """`TrialTracker`: `_TrialTracker` as a Ray Tune `Callback` (built on first use, so this
    module imports without Ray; `__getattr__` below lets pickle find it by name)."""
    global _TRACKER_CLASS
    if _TRACKER_CLASS is None:
        from ray.tune import Callback

        cls = type("TrialTracker", (_TrialTracker, Callback), {"__module__": __name__})
        cls.__qualname__ = "TrialTracker"
        _TRACKER_CLASS = cls
    return _TRACKER_CLASS


def __getattr__(name: str) -> Any:
    if name == "TrialTracker":
        return _tracker_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_trial_callback(
    client,
    experiment_id: str,
    parent_run_id: str,
    *,
    dataset: str,
    geometry: Mapping[str, int],
    max_epochs: int,
    model_writer: Callable[[Any, Path], bool] | None = None,
):
    """The Ray Tune callback mirroring trials into nested MLflow runs (see the module docstring).

    `model_writer(trial, path)` writes the trial's final model file to `path` (False: none); it
    must pickle by reference (a module-level function or class), as the callback is saved with
    the experiment for `--resume`.
    """
    return _tracker_class()(
        client.tracking_uri,
        experiment_id,
        parent_run_id,
        dataset=dataset,
        geometry=geometry,
        max_epochs=max_epochs,
        model_writer=model_writer,
    )
