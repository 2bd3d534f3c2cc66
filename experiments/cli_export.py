"""`python launch.py export`: pick winners of a search from MLflow and export them standalone.

    python launch.py export --experiment NAME (--pareto | --top K | --run-id ID) --out DIR
                            [--register] [--retrain-epochs E] [--tracking-uri URI] [--data-dir P]
                            [--parent-run-id ID]

Which trials (the MLflow layout written by the search, `experiments.tracking`: one parent run
per search tagged lrunet.role=search, one nested run per trial with tags arch/status/pareto and a
`model/model.pt` artifact when completed):

    --pareto    the trials tagged pareto=true of one search (the experiment's newest search run,
                or --parent-run-id). Front members that are not completed are skipped with a
                warning. A front is only meaningful within the search that computed it.
    --top K     the K best completed trials of that search by val_acc (ties: fewer params first),
                one per architecture.
    --run-id    exactly that trial run; it must be completed and hold its model artifact.

Each selected model is exported to DIR/<canonical architecture name>/ (see experiments.export),
its test accuracy measured on the dataset's test split by the eager model and by every exported
file, fed the stored test images as the exported model takes them. The dataset is read from
--data-dir, else (an image folder) from the folder the search read, recorded in its state.
--retrain-epochs E instead trains the architecture from scratch on the full training set (train +
validation) for E epochs with its trial's recipe, evaluates it on the test set, logs that as its
own MLflow run (tag retrain_of) and exports the retrained model. --register logs every export to
MLflow and registers it as a version of `lrunet-<experiment>` with aliases `arch-<name>` and, for
front members, `front-<name>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import tracking
from lrunet import metrics as M

MODEL_ARTIFACT = f"{tracking.MODEL_ARTIFACT_DIR}/{tracking.MODEL_FILE}"
EXAMPLE_BATCH = 256  # images of the test split used for the export checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment",
        required=True,
        metavar="NAME",
        help="MLflow experiment the search logged to (its --experiment-name)",
    )
    pick = parser.add_mutually_exclusive_group(required=True)
    pick.add_argument(
        "--pareto",
        action="store_true",
        help="export the Pareto front (trials tagged pareto=true) of the search",
    )
    pick.add_argument(
        "--top",
        type=int,
        metavar="K",
        help="export the K best completed trials of the search by val_acc",
    )
    pick.add_argument("--run-id", metavar="ID", help="export one trial run")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder; one sub-folder per architecture",
    )
    parser.add_argument(
        "--parent-run-id",
        metavar="ID",
        help="the search (parent run) to pick from (default: the newest search)",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="log and register every export in the MLflow model registry",
    )
    parser.add_argument(
        "--retrain-epochs",
        type=int,
        metavar="E",
        help="retrain from scratch on the full training set for E epochs first",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="P",
        help="dataset folder (default: an image folder's search's own, else $LRUNET_DATA_DIR "
        "or ./data)",
    )


@dataclass(frozen=True)
class Selected:
    """A trial run picked for export."""

    run_id: str
    arch: str
    parent_run_id: str | None
    pareto: bool
    val_acc: float | None
    metrics: dict[str, float]
    tags: dict[str, str]


def run(args: argparse.Namespace) -> int:
    from lrunet.io import check_writable_dir

    if args.top is not None and args.top < 1:
        raise ValueError(f"--top: expected a positive number of trials, got {args.top}")
    if args.retrain_epochs is not None and args.retrain_epochs < 1:
        raise ValueError(
            f"--retrain-epochs: expected a positive integer, got {args.retrain_epochs}"
        )
    out = check_writable_dir(args.out)  # before any download or training
    client = connect(args.tracking_uri)
    experiment = tracking.find_experiment(client, args.experiment)
    selected = select_runs(
        client,
        experiment.experiment_id,
        pareto=args.pareto,
        top=args.top,
        run_id=args.run_id,
        parent_run_id=args.parent_run_id,
    )
    with tempfile.TemporaryDirectory(prefix="lrunet-export-") as scratch:
        models = [(sel, fetch_model_file(client, sel, Path(scratch))) for sel in selected]
        for sel, model_file in models:
            folder, reg = export_one(args, client, experiment, sel, model_file, out)
            line = f"{sel.arch}: exported to {folder}"
            if reg is not None:
                line += f"; registered as {reg.uri} (aliases {', '.join(reg.aliases)})"
            print(line, flush=True)
    return 0


def connect(tracking_uri: str | None):
    """An MlflowClient for the search's store (same default as the search: ./mlflow.db), proven
    usable. A sqlite store that does not exist is an error here: MLflow would silently create an
    empty one."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.default_tracking_uri()
    if uri.startswith("sqlite:///") and not os.path.isfile(uri.removeprefix("sqlite:///")):
        raise FileNotFoundError(
            f"MLflow tracking store {uri} does not exist; pass the search's --tracking-uri"
        )
    tracking.check_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr readable
    return tracking.client_for(uri)


def _selected(run) -> Selected:
    tags = dict(run.data.tags)
    val = run.data.metrics.get(M.VAL_ACC)
    return Selected(
        run_id=run.info.run_id,
        arch=tags.get("arch") or run.info.run_name,
        parent_run_id=tags.get(tracking.PARENT_TAG),
        pareto=tags.get("pareto", "").lower() == "true",
        val_acc=float(val) if val is not None else None,
        metrics=dict(run.data.metrics),
        tags=tags,
    )


def select_runs(
    client,
    experiment_id: str,
    *,
    pareto: bool = False,
    top: int | None = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
) -> list[Selected]:
    """The trial runs to export (see the module docstring for the rules)."""
    from mlflow.exceptions import MlflowException

    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ValueError(f"run {run_id!r} does not exist in the tracking store") from None
        if run.info.experiment_id != experiment_id:
            raise ValueError(
                f"run {run_id} belongs to another experiment (id "
                f"{run.info.experiment_id}), not the one given by --experiment"
            )
        sel = _selected(run)
        _require_completed(sel)
        return [sel]

    if parent_run_id is None:
        parent = tracking.latest_parent_run(client, experiment_id)
        if parent is None:
            raise ValueError(
                "the experiment has no search run; start one with 'python launch.py --space NAME'"
            )
        parent_run_id = parent.info.run_id
    else:
        try:
            parent = client.get_run(parent_run_id)
        except MlflowException:
            raise ValueError(f"--parent-run-id {parent_run_id}: no such run") from None
        if (
            parent.info.experiment_id != experiment_id
            or parent.data.tags.get(tracking.ROLE_TAG) != tracking.PARENT_ROLE
        ):
            raise ValueError(
                f"--parent-run-id {parent_run_id}: not a search run of this experiment"
            )
    search = f"search run {parent_run_id}"
    trials = [
        _selected(r)
        for r in tracking.trial_runs(client, parent_run_id, experiment_id)
        if tracking.STATUS_TAG in r.data.tags
    ]

    if pareto:
        front = [s for s in trials if s.pareto]
        if not front:
            raise ValueError(
                f"no trial of {search} is tagged pareto=true (compute the front with "
                "'python launch.py pareto')"
            )
        picked = []
        for s in front:
            status = s.tags.get(tracking.STATUS_TAG)
            if status != tracking.COMPLETED:
                print(
                    f"warning: skipping front member {s.arch} (run {s.run_id}): status "
                    f"{status}, it has no fully trained model",
                    file=sys.stderr,
                )
            else:
                picked.append(s)
        if not picked:
            raise ValueError(f"no front member of {search} completed training")
    else:
        picked = [
            s
            for s in trials
            if s.tags.get(tracking.STATUS_TAG) == tracking.COMPLETED and s.val_acc is not None
        ]
        if not picked:
            raise ValueError(f"no completed trial with a {M.VAL_ACC} in {search}")

    # one per architecture (the export folder is named by it): the best val_acc wins, then the
    # smaller model
    def key(s: Selected) -> tuple[float, float]:
        val = s.val_acc if s.val_acc is not None else float("-inf")
        return (-val, s.metrics.get(M.PARAMS, float("inf")))

    best: dict[str, Selected] = {}
    for s in sorted(picked, key=key):
        best.setdefault(s.arch, s)
    chosen = list(best.values())
    return chosen[:top] if top is not None else chosen


def _require_completed(sel: Selected) -> None:
    status = sel.tags.get(tracking.STATUS_TAG)
    if status != tracking.COMPLETED:
        what = f"status {status}" if status else "no status tag (not a trial, or still running)"
        raise ValueError(
            f"run {sel.run_id} ({sel.arch}) never finished training: {what}; only "
            "completed trials can be exported"
        )


def fetch_model_file(client, sel: Selected, scratch: Path):
    """Download and read the trial's model artifact; ValueError if it has none."""
    from experiments.model_file import load_model_file

    _require_completed(sel)
    listed = {a.path for a in client.list_artifacts(sel.run_id, tracking.MODEL_ARTIFACT_DIR)}
    if MODEL_ARTIFACT not in listed:
        raise ValueError(
            f"run {sel.run_id} ({sel.arch}) has no {MODEL_ARTIFACT} artifact; it "
            "never finished, or its upload failed"
        )
    dst = scratch / sel.run_id
    dst.mkdir(parents=True, exist_ok=True)
    local = client.download_artifacts(sel.run_id, MODEL_ARTIFACT, str(dst))
    return load_model_file(local)


def _images(x) -> Any:
    return x.float().div_(255.0)  # the reference's normalisation: pixels / 255, no mean/std


def search_data_dir(client, parent_run_id: str | None) -> str | None:
    """The data folder the search of `parent_run_id` read (its state file), or None."""
    import json

    from experiments.search_state import STATE_FILE

    if not parent_run_id:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="lrunet-state-") as d:
            local = client.download_artifacts(parent_run_id, STATE_FILE, d)
            return json.loads(Path(local).read_text()).get("data_dir")
    except Exception:  # an older or foreign search: fall back to the default folder
        return None


def load_export_data(client, sel: Selected, model_file, data_dir: str | None):
    """The dataset `model_file` was trained on, at the model's geometry (an image folder: read
    from `data_dir`, else the search's own folder, at the model's input size)."""
    from trainables.data import load_dataset

    name, cfg = model_file.dataset, model_file.model_cfg
    if name != "imagefolder":
        return load_dataset(name, data_dir)
    data_dir = data_dir or search_data_dir(client, sel.parent_run_id)
    data = load_dataset(name, data_dir)
    if data.info.eval_size != cfg.input_size:  # trained at an explicit size: read it so
        data = load_dataset(name, data_dir, input_size=cfg.input_size)
    return data


def export_one(args, client, experiment, sel: Selected, model_file, out: Path):
    """Export (after an optional retrain) one selected trial; returns (folder, Registration)."""
    from experiments.export import export_model, register_export, sanitise_alias
    from trainables.imagefolder import describe_stored_images

    data = load_export_data(client, sel, model_file, args.data_dir)
    cfg, recipe = model_file.model_cfg, model_file.recipe
    geometry = data.geometry
    if (cfg.num_classes, cfg.in_channels) != (geometry["num_classes"], geometry["in_channels"]):
        raise ValueError(
            f"run {sel.run_id}: model has {cfg.num_classes} classes and "
            f"{cfg.in_channels} channels but dataset {data.name} has "
            f"{geometry['num_classes']} and {geometry['in_channels']}"
        )
    if data.name == "imagefolder" and cfg.input_size != geometry["input_size"]:
        raise ValueError(
            f"run {sel.run_id}: model takes {cfg.input_size}x{cfg.input_size} images but the "
            f"image folder {data.source} holds {geometry['input_size']}x"
            f"{geometry['input_size']}; pass the search's --data-dir"
        )
    trial_metrics = {k: float(v) for k, v in model_file.metrics.items()}
    if sel.val_acc is not None:
        trial_metrics.setdefault(M.VAL_ACC, sel.val_acc)
    source: dict[str, Any] = {
        "experiment": experiment.name,
        "run_id": sel.run_id,
        "parent_run_id": sel.parent_run_id,
        "tracking_uri": client.tracking_uri,
    }
    retrain_run_id = None
    if args.retrain_epochs is not None:
        # the trial's recipe with its schedule stretched or shrunk to the retraining budget
        recipe = dataclasses.replace(recipe, epochs=args.retrain_epochs)
        state_dict, metrics, retrain_run_id = retrain(client, experiment, sel, cfg, recipe, data)
        source["retrain_run_id"] = retrain_run_id
        source["retrain_epochs"] = args.retrain_epochs
    else:
        state_dict, metrics = model_file.state_dict, dict(trial_metrics)
    # evaluation sees the test images as training-geometry inputs (Fashion-MNIST: 28 padded to
    # 32); the exported model does that padding itself (input_pad), so it takes the stored
    # images, and the test accuracy is measured on exactly those, by every exported file too
    test_x = _images(data.test_x)
    metrics.pop(M.TEST_ACC, None)  # measured again by export_model, on the exported inputs
    folder = export_model(
        cfg,
        state_dict,
        out,
        recipe=recipe,
        example=test_x[:EXAMPLE_BATCH],
        input_pad=data.info.eval_pad,
        test=(test_x, data.test_y),
        images=describe_stored_images(data),
        metadata={
            "dataset": data.name,
            "metrics": metrics,
            "trial_metrics": trial_metrics,
            "source": source,
            "normalisation": "pixels / 255 (values in [0, 1]), no mean/std",
        },
    )
    reg = None
    if args.register:
        aliases = [f"arch-{sanitise_alias(sel.arch)}"]
        if sel.pareto:
            aliases.append(f"front-{sanitise_alias(sel.arch)}")
        reg = register_export(
            folder,
            experiment_name=experiment.name,
            aliases=aliases,
            run_id=retrain_run_id,
            tags={"export_of": sel.run_id, tracking.ROLE_TAG: "export"},
            tracking_uri=client.tracking_uri,
        )
    return folder, reg


def retrain(client, experiment, sel: Selected, cfg, recipe, data):
    """Train `cfg` from scratch on the full training set (no validation split) for
    `recipe.epochs` epochs, logged as its own run of the experiment (tag retrain_of).
    Returns (state_dict, metrics, run id)."""
    from mlflow.entities import Metric, Param

    from experiments.model_file import save_model_file
    from lrunet.recipe import flat_trial_config
    from trainables.loop import Trainer

    epochs = recipe.epochs
    trainer = Trainer(cfg, recipe, data, val_fraction=0.0)
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"retrain-{sel.arch}",
        tags={
            "retrain_of": sel.run_id,
            "arch": sel.arch,
            "dataset": data.name,
            tracking.ROLE_TAG: tracking.RETRAIN_ROLE,
        },
    )
    run_id = run.info.run_id
    params = {
        **flat_trial_config(cfg, recipe),
        **data.geometry,
        "dataset": data.name,
        "retrain_epochs": epochs,
    }
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    status = "FAILED"
    try:
        result: dict[str, float] = {}
        for _ in range(epochs):
            result = trainer.train_epoch()
            _log_metrics(client, run_id, Metric, result, step=trainer.epoch)
            print(
                f"retrain {sel.arch}: epoch {trainer.epoch}/{epochs} train_acc "
                f"{result[M.TRAIN_ACC]:.2f} %",
                file=sys.stderr,
                flush=True,
            )
        test = trainer.evaluate("test")
        _log_metrics(client, run_id, Metric, test, step=trainer.epoch)
        metrics = {**{k: float(v) for k, v in result.items()}, **test}
        state_dict = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
        with tempfile.TemporaryDirectory(prefix="lrunet-retrain-") as tmp:
            path = save_model_file(
                Path(tmp) / "model.pt", cfg, recipe, state_dict, data.name, metrics
            )
            client.log_artifact(run_id, str(path), tracking.MODEL_ARTIFACT_DIR)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status)
    return state_dict, metrics, run_id


def _log_metrics(client, run_id: str, metric_cls, values: dict[str, float], step: int) -> None:
    import time

    now = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[metric_cls(k, float(v), now, step) for k, v in values.items()]
    )
