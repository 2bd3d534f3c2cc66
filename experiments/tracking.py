"""MLflow wiring, in one place: the store, the parent run, and a Ray Tune callback that mirrors
every trial into a nested run.

Everything here runs in the driver process, the only writer, so the default SQLite store never sees
concurrent writers. A trial's run is found again by its tags (`mlflow.parentRunId` + `trial_id`),
never kept only in memory: a resumed search (`--resume`) reuses the same parent run and the
same trial runs instead of opening duplicates, and no run is left RUNNING when the search ends.

Tags on a trial run: `arch` (canonical name), `dataset`, `trial_id`, `status` (running, completed,
stopped_early, infeasible, failed, interrupted), `stopped_at_epoch`, `failure_reason`, `node_id`
(the Ray node of its latest epoch), `retries` and `last_retry_reason` (a failure Tune retried
from the last checkpoint), `recomputed_epochs` (epochs trained again after a crash, logged once);
an infeasible record has `config_hash` and `infeasible_reason` and is kept once per config; after
the front is computed, `pareto` ("true"/"false") and `pareto_rank`. Params: the flat trial config
(`lrunet.recipe.TRIAL_KEYS`, per-stage reuse spelled out) plus dataset and geometry. Metrics: every
numeric metric of `lrunet.metrics` a trial reports, with step = epoch, one value per step. A
completed trial also holds `model/model.pt` (`experiments.model_file.save_model_file`), which
`launch.py export` reads.

If the tracking server goes away mid-run, writes are kept in order in an in-memory queue, retried
every few seconds and, at the end, for up to `FINAL_FLUSH_S`, so metrics are delayed, not lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lrunet import metrics as M
from lrunet.io import first_line
from lrunet.recipe import flat_trial_config, split_trial_config
from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY

log = logging.getLogger(__name__)

ROLE_TAG = "lrunet.role"
PARENT_ROLE, TRIAL_ROLE, RETRAIN_ROLE = "search", "trial", "retrain"
PARENT_TAG = "mlflow.parentRunId"
STATUS_TAG = "status"
COMPLETED, STOPPED_EARLY, INFEASIBLE, FAILED, RUNNING = (
    "completed",
    "stopped_early",
    "infeasible",
    "failed",
    "running",
)
MODEL_ARTIFACT_DIR = "model"
MODEL_FILE = "model.pt"
LOGGED_METRICS = (
    M.VAL_ACC,
    M.VAL_LOSS,
    M.TRAIN_LOSS,
    M.TRAIN_ACC,
    M.PARAMS,
    M.CONV_PARAMS,
    M.MACS,
    M.MFLOPS,
    M.EPOCH_SECONDS,
    M.IMAGES_PER_SEC,
    M.LR,
)
HEALTH_TIMEOUT_S = 5.0  # /health answers in milliseconds; a launch must fail within 15 s


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / 'mlflow.db'}"


def default_artifact_location(
    tracking_uri: str, cwd: str | os.PathLike | None = None
) -> str | None:
    """An explicit artifact folder beside a local store; None lets a server choose (proxied)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None
    if tracking_uri.startswith("sqlite:///"):
        base = Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent
    else:
        base = Path(cwd or os.getcwd()).resolve()
    return (base / "mlartifacts").as_uri()


def check_tracking_uri(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Fail fast, with the fix in the message, when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (user's server)
                ok = r.status == 200
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ConnectionError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it with "
                f"'mlflow server --host 127.0.0.1 --port 5000' or pass another --tracking-uri"
            ) from None
        if not ok:
            raise ConnectionError(
                f"MLflow tracking server {uri} answered {url} with an error; "
                "check the server's log"
            )
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
        if not folder.is_dir():
            raise FileNotFoundError(
                f"folder {folder} of tracking store {uri} does not exist; "
                "create it or pass another --tracking-uri"
            )
        if not os.access(folder, os.W_OK):
            raise PermissionError(
                13,
                "tracking store folder is not writable (pass another --tracking-uri)",
                str(folder),
            )
    elif "://" in uri and not uri.startswith(("file://", "databricks")):
        raise ValueError(
            f"--tracking-uri {uri!r}: use sqlite:///PATH.db, http(s)://HOST:PORT or file:///PATH"
        )


def client_for(uri: str):
    """An `MlflowClient` whose HTTP retries are bounded (MLflow's default waits minutes)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} was deleted; restore it in the UI or "
                "pass another --experiment-name"
            )
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def find_experiment(client, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = [e.name for e in client.search_experiments(max_results=50)]
        raise ValueError(
            f"MLflow experiment {name!r} does not exist in this store; existing: "
            f"{names or 'none'} (check --tracking-uri and --experiment)"
        )
    return exp


def latest_parent_run(client, experiment_id: str):
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def trial_runs(client, parent_run_id: str, experiment_id: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def _fmt_param(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def trial_params(
    flat: Mapping[str, Any], geometry: Mapping[str, int], dataset: str
) -> tuple[str, dict[str, str]]:
    """(canonical arch name, MLflow params) of a flat trial config: per-stage reuse spelled out."""
    cfg, recipe = split_trial_config(flat, **geometry)
    params = {k: _fmt_param(v) for k, v in flat_trial_config(cfg, recipe).items()}
    params.update({"dataset": dataset, **{k: str(v) for k, v in geometry.items()}})
    return cfg.name, params


class BufferedWriter:
    """MLflow writes that survive a tracking server going away.

    Each write is a thunk run in submission order. A failure (server down, timeout, 5xx) keeps it
    and everything after it queued; the queue is retried at most every `retry_every_s` seconds on
    later writes (so an outage does not stall Tune on every event) and with patience by `flush`.
    A thunk may resolve its run lazily, so even a trial that starts during an outage gets its run.
    """

    def __init__(self, client, retry_every_s: float = 5.0) -> None:
        self.client = client
        self.retry_every_s = retry_every_s
        self.pending: list[tuple[str, Callable[[], Any]]] = []
        self.warned = False
        self._next_try = 0.0

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue `client.<method>(*args, **kwargs)`."""
        self.submit(method, lambda: getattr(self.client, method)(*args, **kwargs))

    def submit(self, what: str, thunk: Callable[[], Any]) -> None:
        self.pending.append((what, thunk))
        if time.monotonic() >= self._next_try:
            self.flush(attempts=1)

    def flush(self, attempts: int = 1, wait_s: float = 2.0) -> bool:
        for attempt in range(attempts):
            while self.pending:
                what, thunk = self.pending[0]
                try:
                    thunk()
                except Exception as e:
                    if _is_permanent(e):
                        log.warning("MLflow rejected %s: %s", what, first_line(e))
                        self.pending.pop(0)
                        continue
                    if not self.warned:
                        log.warning(
                            "MLflow unreachable (%s); buffering %d write(s) for retry",
                            first_line(e)[:160],
                            len(self.pending),
                        )
                        self.warned = True
                    self._next_try = time.monotonic() + self.retry_every_s
                    break
                self.pending.pop(0)
            if not self.pending:
                if self.warned:
                    log.warning("MLflow reachable again; buffered writes delivered")
                    self.warned = False
                self._next_try = 0.0
                return True
            if attempt + 1 < attempts:
                time.sleep(wait_s)
        return False


def _is_permanent(e: Exception) -> bool:
    """An error that retrying cannot fix (a bad value, a bug): logged and dropped."""
    if isinstance(e, (TypeError, KeyError, AttributeError)):
        return True
    code = getattr(e, "error_code", "")
    return code in (
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_ALREADY_EXISTS",
        "RESOURCE_DOES_NOT_EXIST",
        "BAD_REQUEST",
    )


def _metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k in LOGGED_METRICS:
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def config_hash(flat: Mapping[str, Any]) -> str:
    """A short stable key of a flat trial config (infeasible records are kept once per config)."""
    text = json.dumps({k: flat[k] for k in sorted(flat)}, default=str, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


NODE_TAG, RETRIES_TAG, RECOMPUTED_TAG = "node_id", "retries", "recomputed_epochs"
FINAL_FLUSH_S = 120.0


class _TrialTracker:
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
                tags={
                    PARENT_TAG: self.parent_run_id,
                    ROLE_TAG: TRIAL_ROLE,
                    "trial_id": tid,
                    "arch": arch,
                    FAMILY_KEY: params.get(FAMILY_KEY, DEFAULT_FAMILY),
                    "dataset": self.dataset,
                    STATUS_TAG: RUNNING,
                },
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

    def on_trial_recover(self, iteration, trials, trial, **info):
        n = str(getattr(getattr(trial, "run_metadata", None), "num_failures", 1))
        reason = failure_reason(trial)

        def tag(rid: str) -> None:
            self.client.set_tag(rid, RETRIES_TAG, n)
            self.client.set_tag(rid, "last_retry_reason", reason)

        self._on_run("tag retry", trial, tag)

    def on_trial_complete(self, iteration, trials, trial, **info):
        epoch = self._epoch(trial)
        self._on_run("finish run", trial, lambda rid: self._finish(trial, rid, epoch))

    def _finish(self, trial, run_id: str, epoch: int) -> None:
        status = COMPLETED if epoch >= self.max_epochs else STOPPED_EARLY
        if status == COMPLETED and self.model_writer is not None:
            self._log_model(trial, run_id)
        self.client.set_tag(run_id, "stopped_at_epoch", str(epoch))
        self.client.set_tag(run_id, STATUS_TAG, status)
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        epoch, reason = self._epoch(trial), failure_reason(trial)
        self._on_run("fail run", trial, lambda rid: self._fail(rid, epoch, reason))

    def _fail(self, run_id: str, epoch: int, reason: str) -> None:
        self.client.set_tag(run_id, "stopped_at_epoch", str(epoch))
        self.client.set_tag(run_id, "failure_reason", reason)
        self.client.set_tag(run_id, STATUS_TAG, FAILED)
        self.client.set_terminated(run_id, "FAILED")

    def on_experiment_end(self, trials, **info):
        # Trials that never ended (the driver is stopping) are marked so no run stays RUNNING;
        # `--resume` turns them back to RUNNING.
        for trial in trials:
            if trial.status in ("PENDING", "RUNNING", "PAUSED") and trial.trial_id in self.run_ids:
                rid = self.run_ids[trial.trial_id]
                self.writer("set_tag", rid, STATUS_TAG, "interrupted")
                self.writer("set_terminated", rid, "KILLED")
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
                self._finish(t, r.info.run_id, self._epoch(t))
            elif t.status == "ERROR":
                self._fail(r.info.run_id, self._epoch(t), failure_reason(t))

    def log_infeasible(self, flat: Mapping[str, Any], reason: str) -> None:
        """A config the searcher proposed that breaks a budget: recorded once, never trained."""
        flat = dict(flat)
        self.writer.submit("record infeasible", lambda: self._log_infeasible(flat, reason))

    def _log_infeasible(self, flat: dict[str, Any], reason: str) -> None:
        key = config_hash(flat)
        if self.infeasible_keys is None:
            runs = self.client.search_runs(
                [self.experiment_id],
                f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.`{STATUS_TAG}` = "
                f"'{INFEASIBLE}'",
                max_results=50_000,
            )
            self.infeasible_keys = {r.data.tags.get("config_hash", "") for r in runs}
        if key in self.infeasible_keys:  # proposed again (e.g. replayed after --resume)
            return
        try:
            arch, params = trial_params(flat, self.geometry, self.dataset)
        except ValueError:  # not even a valid architecture
            arch, params = "invalid", {k: _fmt_param(v) for k, v in flat.items()}
        run = self.client.create_run(
            self.experiment_id,
            run_name=arch,
            tags={
                PARENT_TAG: self.parent_run_id,
                ROLE_TAG: TRIAL_ROLE,
                "arch": arch,
                FAMILY_KEY: params.get(FAMILY_KEY, DEFAULT_FAMILY),
                "dataset": self.dataset,
                "config_hash": key,
                STATUS_TAG: INFEASIBLE,
                "infeasible_reason": reason[:4000],
            },
        )
        self.infeasible_keys.add(key)
        self.client.log_batch(run.info.run_id, params=_params(params))
        self.client.set_terminated(run.info.run_id, "FINISHED")


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


def _params(params: Mapping[str, str]):
    from mlflow.entities import Param

    return [Param(k, v[:6000]) for k, v in params.items()]


_EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))(?:\(.*?\))?: (.+)$"
)


def failure_reason(trial) -> str:
    """One line on why a trial failed, from the newest failure in its error file: the Python
    exception raised in the trial ('FloatingPointError: training loss became nan ...'), else the
    first line of Ray's report ('The actor died unexpectedly ... (worker exit type ...)')."""
    text = ""
    path = getattr(trial, "error_file", None)
    try:
        if path and os.path.exists(path):
            text = Path(path).read_text(errors="replace")
    except OSError:
        pass
    if not text:
        text = str(getattr(trial, "error_msg", "") or "")
    return summarize_error(text)


def summarize_error(text: str) -> str:
    """The gist of a Ray Tune error report (see `failure_reason`)."""
    blocks = re.split(r"(?m)^Failure # \d+.*$", text)
    lines = [ln.strip() for ln in blocks[-1].strip().splitlines() if ln.strip()]
    exceptions = [m for m in map(_EXCEPTION_LINE.match, lines) if m]
    if exceptions:
        name, message = exceptions[-1].groups()
        return f"{name.rsplit('.', 1)[-1]}: {message}"[:500]
    if not lines:
        return "unknown error"
    exit_type = re.search(r"Worker exit type: (\w+)", blocks[-1])
    suffix = f" (worker exit type {exit_type.group(1)})" if exit_type else ""
    return (lines[0].rstrip(".") + suffix)[:500]
