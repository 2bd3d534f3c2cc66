"""MLflow wiring, in one place: the store, the parent run, and a Ray Tune callback that mirrors
every trial into a nested run.

Everything here runs in the driver process, the only writer, so the default SQLite store never sees
concurrent writers. A trial's run is found again by its tags (`mlflow.parentRunId` + `trial_id`),
never kept only in memory: a resumed search (`--resume`) reuses the same parent run and the
same trial runs instead of opening duplicates, and no run is left RUNNING when the search ends.

Tags on a trial run: `arch` (canonical name), `dataset`, `trial_id`, `status` (running, completed,
stopped_early, infeasible, failed), `stopped_at_epoch`, `failure_reason`; after the front is
computed, `pareto` ("true"/"false") and `pareto_rank`. Params: the flat trial config
(`lrunet.recipe.TRIAL_KEYS`, per-stage reuse spelled out) plus dataset and geometry. Metrics: every
numeric metric of `lrunet.metrics` a trial reports, with step = epoch. A completed trial also holds
`model/model.pt` (`experiments.export.save_model_file`), which `launch.py export` reads.

If the tracking server goes away mid-run, writes are kept in an in-memory queue and retried on
every later event and once more (with patience) at the end, so metrics are delayed, not lost.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lrunet import metrics as M
from lrunet.recipe import flat_trial_config, split_trial_config

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
HEALTH_TIMEOUT_S = 10.0


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
    """Calls into MLflow that survive a tracking server going away: failures are queued, retried
    in order at the next call, and flushed with patience at the end."""

    def __init__(self, client) -> None:
        self.client = client
        self.pending: list[tuple[str, tuple, dict]] = []
        self.warned = False

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.pending.append((method, args, kwargs))
        self.flush(attempts=1)

    def flush(self, attempts: int = 1, wait_s: float = 2.0) -> bool:
        for attempt in range(attempts):
            while self.pending:
                method, args, kwargs = self.pending[0]
                try:
                    getattr(self.client, method)(*args, **kwargs)
                except Exception as e:  # server down, timeout, 5xx: keep for later
                    if _is_permanent(e):
                        log.warning("MLflow rejected %s: %s", method, str(e).splitlines()[0])
                        self.pending.pop(0)
                        continue
                    if not self.warned:
                        log.warning(
                            "MLflow unreachable (%s); buffering %d write(s) for retry",
                            str(e).splitlines()[0][:120],
                            len(self.pending),
                        )
                        self.warned = True
                    break
                self.pending.pop(0)
            if not self.pending:
                if self.warned:
                    log.warning("MLflow reachable again; buffered writes delivered")
                    self.warned = False
                return True
            if attempt + 1 < attempts:
                time.sleep(wait_s)
        return False


def _is_permanent(e: Exception) -> bool:
    code = getattr(e, "error_code", "")
    return code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST")


def _metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k in LOGGED_METRICS:
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


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

    `model_writer(trial, path)` writes the trial's final model file to `path` (False: none).
    """
    from mlflow.entities import Metric
    from ray.tune import Callback

    class MlflowTrials(Callback):
        def __init__(self) -> None:
            self.writer = BufferedWriter(client)
            self.run_ids: dict[str, str] = {}
            self.last_epoch: dict[str, int] = {}

        # --- runs ---------------------------------------------------------------------------
        def run_id(self, trial) -> str:
            tid = trial.trial_id
            if tid in self.run_ids:
                return self.run_ids[tid]
            found = client.search_runs(
                [experiment_id],
                f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.trial_id = '{tid}'",
                max_results=1,
            )
            if found:
                run_id = found[0].info.run_id
                if found[0].info.status != "RUNNING":
                    client.update_run(run_id, status="RUNNING")
            else:
                flat = {k: v for k, v in trial.config.items() if not k.startswith("_run")}
                arch, params = trial_params(flat, geometry, dataset)
                run = client.create_run(
                    experiment_id,
                    run_name=arch,
                    tags={
                        PARENT_TAG: parent_run_id,
                        ROLE_TAG: TRIAL_ROLE,
                        "trial_id": tid,
                        "arch": arch,
                        "dataset": dataset,
                        STATUS_TAG: RUNNING,
                    },
                )
                run_id = run.info.run_id
                self.writer("log_batch", run_id, params=_params(params))
            self.run_ids[tid] = run_id
            return run_id

        def on_trial_start(self, iteration, trials, trial, **info):
            self.run_id(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            run_id = self.run_id(trial)
            step = int(result.get("training_iteration", result.get(M.EPOCH, 0)))
            self.last_epoch[trial.trial_id] = step
            ts = int(time.time() * 1000)
            metrics = [Metric(k, v, ts, step) for k, v in _metrics_of(result).items()]
            if metrics:
                self.writer("log_batch", run_id, metrics=metrics)

        def on_trial_complete(self, iteration, trials, trial, **info):
            run_id = self.run_id(trial)
            epoch = self._epoch(trial)
            status = COMPLETED if epoch >= max_epochs else STOPPED_EARLY
            if status == COMPLETED and model_writer is not None:
                self._log_model(trial, run_id)
            self.writer("set_tag", run_id, STATUS_TAG, status)
            self.writer("set_tag", run_id, "stopped_at_epoch", str(epoch))
            self.writer("set_terminated", run_id, "FINISHED")

        def on_trial_error(self, iteration, trials, trial, **info):
            run_id = self.run_id(trial)
            self.writer("set_tag", run_id, STATUS_TAG, FAILED)
            self.writer("set_tag", run_id, "stopped_at_epoch", str(self._epoch(trial)))
            self.writer("set_tag", run_id, "failure_reason", failure_reason(trial))
            self.writer("set_terminated", run_id, "FAILED")

        def on_experiment_end(self, trials, **info):
            # Trials that never ended (the driver is stopping) are marked so no run stays RUNNING;
            # `--resume` turns them back to RUNNING.
            for trial in trials:
                if (
                    trial.status in ("PENDING", "RUNNING", "PAUSED")
                    and trial.trial_id in self.run_ids
                ):
                    rid = self.run_ids[trial.trial_id]
                    self.writer("set_tag", rid, STATUS_TAG, "interrupted")
                    self.writer("set_terminated", rid, "KILLED")
            self.flush()

        def flush(self) -> None:
            if not self.writer.flush(attempts=10, wait_s=3.0):
                log.error(
                    "MLflow still unreachable: %d write(s) could not be delivered",
                    len(self.writer.pending),
                )

        def _epoch(self, trial) -> int:
            last = trial.last_result or {}
            return int(last.get("training_iteration", self.last_epoch.get(trial.trial_id, 0)))

        def _log_model(self, trial, run_id: str) -> None:
            with tempfile.TemporaryDirectory(prefix="lrunet-model-") as d:
                path = Path(d) / MODEL_FILE
                try:
                    ok = model_writer(trial, path)
                except Exception as e:  # a missing checkpoint must not stop the search
                    log.warning("could not save the model of trial %s: %s", trial.trial_id, e)
                    return
                if ok:
                    self.writer("log_artifact", run_id, str(path), MODEL_ARTIFACT_DIR)
                    self.writer.flush(attempts=3)  # the temp file goes away with this block

        def log_infeasible(self, flat: Mapping[str, Any], reason: str) -> None:
            """A config the searcher proposed that breaks a budget: recorded, never trained."""
            try:
                arch, params = trial_params(flat, geometry, dataset)
            except ValueError:  # not even a valid architecture
                arch, params = "invalid", {k: _fmt_param(v) for k, v in flat.items()}
            run = client.create_run(
                experiment_id,
                run_name=arch,
                tags={
                    PARENT_TAG: parent_run_id,
                    ROLE_TAG: TRIAL_ROLE,
                    "arch": arch,
                    "dataset": dataset,
                    STATUS_TAG: INFEASIBLE,
                    "infeasible_reason": reason[:4000],
                },
            )
            self.writer("log_batch", run.info.run_id, params=_params(params))
            self.writer("set_terminated", run.info.run_id, "FINISHED")

    return MlflowTrials()


def _params(params: Mapping[str, str]):
    from mlflow.entities import Param

    return [Param(k, v[:6000]) for k, v in params.items()]


def failure_reason(trial) -> str:
    """The last line of a failed trial's error (e.g. 'FloatingPointError: loss became nan ...')."""
    text = ""
    path = getattr(trial, "error_file", None)
    try:
        if path and os.path.exists(path):
            text = Path(path).read_text(errors="replace")
    except OSError:
        pass
    if not text:
        text = str(getattr(trial, "error_msg", "") or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln.split(":")[0] or "Exception" in ln.split(":")[0]]
    return (errors[-1] if errors else (lines[-1] if lines else "unknown error"))[:500]
