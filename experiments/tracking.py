"""MLflow wiring, in one place: the store, experiments, the parent and trial runs' tags, and
finding runs again.

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

The Ray Tune callback that writes the trial runs is `experiments.trial_tracker`; its writes are
buffered through a tracking-server outage by `experiments.mlflow_writer`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def trial_run_tags(
    parent_run_id: str, arch: str, params: Mapping[str, str], dataset: str, **extra: str
) -> dict[str, str]:
    """The tags every trial run starts with (a trained trial's and an infeasible record's):
    parent, role, architecture, family, dataset, then `extra`."""
    from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY

    return {
        PARENT_TAG: parent_run_id,
        ROLE_TAG: TRIAL_ROLE,
        "arch": arch,
        FAMILY_KEY: params.get(FAMILY_KEY, DEFAULT_FAMILY),
        "dataset": dataset,
        **extra,
    }


def config_hash(flat: Mapping[str, Any]) -> str:
    """A short stable key of a flat trial config (infeasible records are kept once per config)."""
    text = json.dumps({k: flat[k] for k in sorted(flat)}, default=str, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


NODE_TAG, RETRIES_TAG, RECOMPUTED_TAG = "node_id", "retries", "recomputed_epochs"


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


def __getattr__(name: str) -> Any:
    # search states pickled before the callback moved to experiments.trial_tracker name it here
    if name == "TrialTracker":
        from experiments.trial_tracker import TrialTracker

        return TrialTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
