"""What a search is made of, assembled once Ray is up: the scheduler (FIFO, ASHA on the first
objective, or MO-ASHA over all of them), the searcher behind its budget gate, the MLflow trial
callback and the model writer it calls for finished trials. `experiments.search` drives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import trial_tracker
from experiments.search_options import pauses, scheduler_kind
from lrunet import metrics as M
from lrunet.objectives import logged_metrics
from search_spaces.spec import SearchSpec

if TYPE_CHECKING:
    from experiments.search_options import SearchOptions


def _choose_scheduler(o: SearchOptions, spec: SearchSpec, max_epochs: int):
    kind = scheduler_kind(o, spec)
    grace = spec.training.grace_epochs
    rf = spec.training.reduction_factor
    if kind == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return kind, FIFOScheduler()
    if kind == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # ASHA ranks by one metric: the first objective (the space's accuracy, by default)
        return kind, ASHAScheduler(
            time_attr="training_iteration",
            metric=spec.metrics[0],
            mode=spec.modes[0],
            max_t=max_epochs,
            grace_period=grace,
            reduction_factor=rf,
        )
    from experiments.moasha import MOASHAScheduler

    return kind, MOASHAScheduler(
        metrics=spec.metrics,
        modes=spec.modes,
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=grace,
        reduction_factor=rf,
        pause=pauses(o, spec),  # the budget, not the grid, ends the search
    )


class ModelWriter:
    """Writes a finished trial's model file from its last checkpoint (driver side).

    A module-level class, so the MLflow callback that holds it pickles by reference into Tune's
    experiment state and still works after `--resume`."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def __call__(self, trial, path: Path) -> bool:
        import tempfile

        from experiments.model_file import save_model_file
        from lrunet.recipe import Recipe
        from lrunet.registry import config_from_dict
        from trainables.checkpoint import load_checkpoint
        from trainables.trainable import CHECKPOINT_FILE

        ckpt = trial.checkpoint
        if ckpt is None:
            return False
        with tempfile.TemporaryDirectory(prefix="lrunet-ckpt-") as d:
            ckpt.to_directory(d)
            state = load_checkpoint(Path(d) / CHECKPOINT_FILE)
        last = trial.last_result or {}
        metrics = {k: last[k] for k in logged_metrics() if isinstance(last.get(k), (int, float))}
        metrics[M.EPOCH] = float(state["epoch"])
        save_model_file(
            path,
            config_from_dict(state["config"]),
            Recipe(**state["recipe"]),
            state["model"],
            self.dataset,
            metrics,
        )
        return True


def optuna_storage_url(storage_dir: str) -> str | None:
    """The Optuna study's database, beside the trials (None on remote storage: in memory)."""
    if "://" in storage_dir:
        return None
    Path(storage_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(storage_dir) / 'optuna.db'}"


def build_search(
    o: SearchOptions,
    spec: SearchSpec,
    client,
    exp_id: str,
    parent_id: str,
    max_epochs: int,
    storage_dir: str,
) -> dict[str, Any]:
    """Searcher, scheduler and MLflow callback (Ray's search/scheduler imports start here)."""
    from experiments.searchers import build_searcher

    callback = trial_tracker.make_trial_callback(
        client,
        exp_id,
        parent_id,
        dataset=spec.dataset,
        geometry=spec.geometry,
        max_epochs=max_epochs,
        model_writer=ModelWriter(spec.dataset),
    )
    searcher = build_searcher(
        o.searcher,
        spec,
        o.seed,
        max_epochs,
        callback.log_infeasible,
        optuna_storage=optuna_storage_url(storage_dir),
        study_name=parent_id,
    )
    kind, scheduler = _choose_scheduler(o, spec, max_epochs)
    return {
        "callback": callback,
        "searcher": searcher,
        "scheduler": scheduler,
        "scheduler_kind": kind,
    }
