"""One search, start to finish: validate everything, start (or join) Ray, run the Tuner with the
MLflow callback, then compute and log the Pareto front.

Every check that can fail on user input (the space file, the dataset, the tracking store, the
storage folder, the flags) runs before Ray starts, so a typo costs a second, not a cluster hour.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from experiments import tracking
from experiments.front import load_front, log_front
from experiments.ray_cluster import (
    check_reachable,
    check_resources,
    default_concurrency,
    local_offer,
    ray_session,
    token_auth_if_available,
)
from experiments.search_build import (  # noqa: F401 (ModelWriter: pickled search states name it here)
    ModelWriter,
    build_search,
    optuna_storage_url,
)
from experiments.search_options import (  # noqa: F401 (the public names of a search)
    RESUMED_OPTIONS,
    SCHEDULERS,
    SearchOptions,
    SearchResult,
    check_flags,
    check_measure_device,
    check_pausing,
    merged_overrides,
    pauses,
)
from experiments.search_state import log_parent, resume_state, space_file, write_state
from lrunet.objectives import MEASURED
from search_spaces.loader import GeometryFromData, load_space
from search_spaces.spec import SearchSpec

log = logging.getLogger(__name__)


def _storage_root(o: SearchOptions) -> str:
    root = o.storage_path or str(Path("ray_results").resolve())
    if "://" in root:  # s3://, gs://: Ray checks these itself
        return root
    p = Path(root).expanduser().resolve()
    fix = "pass --storage-path a folder you can write to"
    if p.exists() and not p.is_dir():
        raise ValueError(f"--storage-path {p} is a file, not a folder; {fix}")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--storage-path {p}: cannot create it ({e.strerror}); {fix}") from None
    if not os.access(p, os.W_OK):
        raise ValueError(f"--storage-path {p} is not writable; {fix}")
    return str(p)


def _slug(text: str) -> str:
    """A folder name made from user text: no separators, never '.', '..' or hidden, so the
    search's folder stays inside --storage-path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "search"


def _open_parent(o, spec, uri, state, root, experiment_name, data_dir, client):
    """The search's parent run: created (with its state for --resume), or the resumed one."""
    if client is None:  # only now: a bad input before this must not create or touch the store
        client = tracking.client_for(uri)
    exp_id = tracking.get_or_create_experiment(
        client, experiment_name, tracking.default_artifact_location(uri)
    )
    if o.resume:
        parent_id = state["parent_run_id"]
        storage_dir = state["storage_dir"]
        client.update_run(parent_id, status="RUNNING")
        client.set_tag(parent_id, "search_status", "resumed")
    else:
        run_name = _slug(f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        storage_dir = f"{root.rstrip('/')}/{_slug(experiment_name)}/{run_name}"
        parent = client.create_run(
            exp_id,
            run_name=run_name,
            tags={
                tracking.ROLE_TAG: tracking.PARENT_ROLE,
                "space": spec.name,
                "family": spec.family,
                "storage_dir": storage_dir,
                "mlflow.note.content": spec.description,
            },
        )
        parent_id = parent.info.run_id
        log_parent(client, parent_id, o, spec, storage_dir)
        state = {
            "parent_run_id": parent_id,
            "space_path": str(Path(space_file(spec)).resolve()),
            "overrides": merged_overrides(o, folder_geometry(data_dir)),
            "storage_dir": storage_dir,
            "data_dir": data_dir,
            "options": {k: v for k, v in asdict(o).items() if k != "argv"},
        }
        write_state(client, parent_id, state)
    return parent_id, client, exp_id, storage_dir


def run_search(o: SearchOptions) -> SearchResult:
    """Run (or, with `o.resume`, continue) a search and return its front."""
    t0 = time.time()
    check_flags(o)
    address = o.address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        token_auth_if_available()
    uri = (
        o.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.default_tracking_uri()
    )
    tracking.check_tracking_uri(uri)

    state: dict[str, Any] = {}
    if o.resume:
        client = tracking.client_for(uri)
        state = resume_state(client, o.resume)
        o.space = state["space_path"]
        for k in RESUMED_OPTIONS:  # the interrupted search's settings, not today's defaults
            if k in state.get("options", {}):
                setattr(o, k, state["options"][k])
    from experiments.replay import REPLAY_TAG, check_covered, prepare_replay

    table = prepare_replay(o)  # --replay: the table's own space unless --space names one
    # absolute: trials run in folders of their own, and an export finds it in the search's state
    data_dir = state.get("data_dir", o.data_dir)
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().resolve())
    # an image folder's classes, channels and size are read from it (and a wrong one given in the
    # space refused) before anything is counted: budgets, costs and reference point use them
    geometry = folder_geometry(data_dir)
    if o.resume:
        spec = load_space(state["space_path"], state["overrides"], geometry_from_data=geometry)
        experiment_name = o.resume
    else:
        if not o.space:
            raise ValueError(
                "no search space: pass --space NAME|PATH (see 'python launch.py "
                "spaces') or --resume EXPERIMENT"
            )
        spec = load_space(o.space, merged_overrides(o, geometry), geometry_from_data=geometry)
        suffix = "-replay" if table is not None else ""
        experiment_name = o.experiment_name or f"lrunet-{spec.name}{suffix}"

    # the data must be there before any compute is spent (this also warms the node's cache)
    from trainables.data import load_dataset

    if table is None:
        load_dataset(spec.dataset, data_dir)
    else:  # a replay trains nothing; every trial it can run must be in the table
        check_covered(table, spec)

    max_epochs = spec.training.max_epochs
    if spec.fixed.get("epochs", max_epochs) < max_epochs:
        raise ValueError(
            f"recipe.epochs {spec.fixed['epochs']} is below training.max_epochs "
            f"{max_epochs}; trials cannot train past their LR schedule"
        )
    root = None if o.resume else _storage_root(o)
    if not address:  # a local Ray offers this machine: checked before Ray starts
        check_resources(o.cpus_per_trial, o.gpus_per_trial, False, [local_offer()])
    check_measure_device(spec, o.gpus_per_trial)
    check_pausing(o, spec)
    with ray_session(o):
        # what trials ask of a node is checked against what the nodes offer before any run is
        # created: Tune would otherwise wait forever for a node that cannot exist
        check_resources(o.cpus_per_trial, o.gpus_per_trial, bool(address))
        parent_id, client, exp_id, storage_dir = _open_parent(
            o, spec, uri, state, root, experiment_name, data_dir, client if o.resume else None
        )
        if table is not None:
            client.set_tag(parent_id, REPLAY_TAG, str(table.path.resolve()))

        def build() -> dict[str, Any]:
            return build_search(o, spec, client, exp_id, parent_id, max_epochs, storage_dir)

        try:
            _fit(o, spec, build, storage_dir, max_epochs, data_dir)
        except BaseException:
            client.set_tag(parent_id, "search_status", "interrupted")
            client.set_terminated(parent_id, "KILLED")
            raise
    front, _ = load_front(
        client, experiment_name, (spec.metrics, spec.modes, list(spec.reference_point)), parent_id
    )
    log_front(client, parent_id, front)
    client.set_tag(parent_id, "search_status", "finished")
    client.set_terminated(parent_id, "FINISHED")
    infeasible = sum(
        r.data.tags.get(tracking.STATUS_TAG) == tracking.INFEASIBLE
        for r in tracking.trial_runs(client, parent_id, exp_id)
    )
    return SearchResult(
        experiment_name, parent_id, uri, storage_dir, front, infeasible, time.time() - t0, exp_id
    )


def folder_geometry(data_dir: str | None) -> GeometryFromData:
    """What completes an image folder's geometry in a space (`load_space(geometry_from_data=)`):
    the folder's own, exactly as every trial reads it (`load_dataset(name, data_dir)`)."""

    def complete(name: str, given: Any) -> dict[str, int]:
        from trainables.data import load_dataset

        size = given.get("input_size")
        # one size: never resized (another size is refused); mixed sizes: resized to the
        # space's input_size, else to the most common one, exactly as every trial reads them
        info = load_dataset(name, data_dir, input_size=size).info
        return info.geometry

    return complete


def _fit(
    o: SearchOptions,
    spec: SearchSpec,
    build: Callable[[], dict[str, Any]],
    storage_dir: str,
    max_epochs: int,
    data_dir: str | None,
) -> None:
    from ray import tune

    from trainables.trainable import RUN_KEY, make_trainable

    # Tune saves its experiment state (what --resume restarts from) after trial checkpoints
    # (num_to_keep=1 below), yet a killed driver can leave it behind the checkpoints the workers
    # wrote: each trial resumes from the newest one on the storage (`trainables.trainable`), so
    # a killed driver costs at most the epochs in flight.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if o.replay:
        from experiments.replay import prepare_replay, replay_trainable

        trainable = replay_trainable(o, prepare_replay(o))
    else:
        trainable = make_trainable(o.cpus_per_trial, o.gpus_per_trial)
    root, name = storage_dir.rsplit("/", 1)
    if o.resume and tune.Tuner.can_restore(storage_dir):
        # searcher, scheduler and MLflow callback come back from the experiment state
        tuner = tune.Tuner.restore(
            storage_dir, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
        tuner.fit()
        return
    search = build()
    run = {
        "dataset": spec.dataset,
        "data_dir": data_dir,
        "subset": spec.training.subset,
        "max_epochs": max_epochs,
    }
    if spec.dataset == "imagefolder":  # a folder of mixed sizes is read at the space's size
        run["input_size"] = spec.geometry["input_size"]
    if spec.measure:  # measured before training, on the trial's hardware (lrunet.objectives)
        run["measure"] = spec.measure
        run["limits"] = spec.budgets.of_kind(MEASURED)
        # a trial over a measured budget reports no objective, which Tune's strict check of
        # the searcher's and scheduler's metrics would take for a broken trainable
        os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    param_space = {**spec.fixed, RUN_KEY: run}
    # pausing: no ConcurrencyLimiter (paused trials would hold its slots), resources bound it
    limit = None if pauses(o, spec) else o.max_concurrent or default_concurrency(o)
    tune_config = tune.TuneConfig(
        search_alg=search["searcher"],
        scheduler=search["scheduler"],
        num_samples=spec.training.num_samples,
        max_concurrent_trials=limit,
        reuse_actors=True,
        time_budget_s=o.time_budget_s,
        trial_dirname_creator=_trial_dirname,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=root,
        callbacks=[search["callback"]],
        failure_config=tune.FailureConfig(max_failures=o.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=1,  # Ray keeps the latest too: with keep_best, the best and the last
            checkpoint_score_attribute=o.keep_best,
            checkpoint_score_order="max",
        ),
        verbose=o.verbose,
    )
    tuner = tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )
    tuner.fit()


def _trial_dirname(trial) -> str:
    """Short trial folders (Ray's default spells the whole config into the path)."""
    return f"trial_{trial.trial_id}"
