"""The Ray Tune function trainable: a thin adapter over `trainables.loop.Trainer`.

A trial's `config` is flat: the LruNet and recipe knobs under exactly `lrunet.recipe.TRIAL_KEYS`
(e.g. `reuse_4`, `width`, `lr`, `epochs`), plus one reserved key, `"_run"`, a dict of run settings
that are not hyperparameters (see `RunSpec`)::

    {"reuse": 4, "lr": 0.1, "epochs": 30,
     "_run": {"dataset": "fashionmnist", "subset": 5000, "cpus": 2}}

Flattened spellings "_run/dataset" (as some searchers produce) are accepted too. Every epoch the
trial reports the `Trainer`'s metrics (validation accuracy and loss, training loss and accuracy,
params, conv params, MACs, MFLOPs, epoch seconds, images/s, LR, epoch) with
`tune.report(..., checkpoint=...)`, the checkpoint being a folder holding `checkpoint.pt` and
`lrunet.json` (its epoch). Ray's `training_iteration` is reported as the epoch itself, so it stays
equal to it across restarts.

A restarted trial resumes from the newest checkpoint it can read: `tune.get_checkpoint()`, or a
newer one in the trial's folder on the storage. Tune saves its experiment state every few seconds,
so a driver killed mid-search comes back knowing an older checkpoint than the workers wrote, and
would otherwise train finished epochs again. The epochs Tune had not seen are reported once more
from the checkpoint's history, flagged `replayed` (not trained: MLflow keeps the first values,
the schedulers and searchers catch up), the last of them with the checkpoint, so Tune registers it.
Ray is imported only when a trial runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrunet import metrics as M
from lrunet.datasets import VAL_FRACTION
from lrunet.io import first_line
from lrunet.recipe import split_trial_config

if TYPE_CHECKING:  # torch loads with the Trainer, when a trial trains (not for a replay)
    from trainables.loop import Trainer

RUN_KEY = "_run"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_META = "lrunet.json"  # {"epoch": N}, read to find a trial's newest checkpoint cheaply
NODE_ID = "node_id"  # result key: the Ray node that trained the epoch (a text, not a metric)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Run settings of a trial (the `"_run"` dict). All optional.

    dataset, data_dir, download: what to train on (`trainables.data.load_dataset`);
    input_size: the side an image folder of mixed sizes is resized to (the space's).
    subset: train on this many images of the training split (None: all).
    val_fraction: share of each class held out for validation (fixed seed, same for all trials).
    max_epochs: stop after this many epochs (default and maximum: the recipe's `epochs`, which is
        also the LR schedule's horizon; ASHA-style schedulers stop trials earlier themselves).
    cpus: torch threads on the CPU (default: the CPUs Ray assigned to the trial).
    device: "auto" (a GPU when Ray gave the trial one), "cpu" or "cuda".
    checkpoint_every: save a checkpoint every this many epochs, and always at the last one.
    augment: the paper's crop/rotate/flip augmentation.
    measure: what to measure before training (`lrunet.objectives.MEASUREMENTS` name ->
        settings, e.g. {"latency": {"target": "cpu1", "batch_size": 32}}); reported every epoch.
    limits: budgets on measured objectives (budget key -> limit, e.g. {"max_latency_ms": 4}):
        a trial over one reports itself infeasible and trains nothing.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    input_size: int | None = None  # an image folder of mixed sizes is resized to it
    subset: int | None = None
    val_fraction: float = VAL_FRACTION
    max_epochs: int | None = None
    cpus: int | None = None
    device: str = "auto"
    checkpoint_every: int = 1
    augment: bool = True
    measure: dict[str, dict[str, Any]] | None = None
    limits: dict[str, float] | None = None

    def __post_init__(self) -> None:
        for name in ("subset", "max_epochs", "cpus"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(
                    f"{RUN_KEY}.{name}: expected a positive integer or None, got {v!r}"
                )
        if (
            isinstance(self.checkpoint_every, bool)
            or not isinstance(self.checkpoint_every, int)
            or self.checkpoint_every < 1
        ):
            raise ValueError(
                f"{RUN_KEY}.checkpoint_every: expected a positive integer, "
                f"got {self.checkpoint_every!r}"
            )
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 1:
            raise ValueError(
                f"{RUN_KEY}.val_fraction: expected a number in [0, 1), got {self.val_fraction!r}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown {RUN_KEY} key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def split_run_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], RunSpec]:
    """Separate a trial config into (flat LruNet/recipe knobs, RunSpec)."""
    flat, run = {}, dict(config.get(RUN_KEY) or {})
    for key, value in config.items():
        if key == RUN_KEY:
            continue
        if key.startswith(RUN_KEY + "/"):
            run[key[len(RUN_KEY) + 1 :]] = value
        else:
            flat[key] = value
    return flat, RunSpec.from_dict(run)


def build_trainer(config: Mapping[str, Any], cpus: int | None = None) -> tuple[Trainer, RunSpec]:
    """The `Trainer` a trial config describes (no Ray needed: the CLI and tests use it too)."""
    from trainables.data import load_dataset
    from trainables.loop import Trainer

    flat, spec = split_run_config(config)
    sized = {"input_size": spec.input_size} if spec.input_size is not None else {}
    data = load_dataset(spec.dataset, spec.data_dir, download=spec.download, **sized)
    cfg, recipe = split_trial_config(flat, **data.geometry)
    if spec.max_epochs is not None and spec.max_epochs > recipe.epochs:
        raise ValueError(
            f"{RUN_KEY}.max_epochs: {spec.max_epochs} exceeds the recipe's epochs "
            f"({recipe.epochs}), the LR schedule's horizon; raise 'epochs' instead"
        )
    trainer = Trainer(
        cfg,
        recipe,
        data,
        device=spec.device,
        threads=spec.cpus or cpus,
        subset=spec.subset,
        val_fraction=spec.val_fraction,
        augment=spec.augment,
    )
    return trainer, spec


def _assigned_cpus() -> int | None:
    import ray

    try:
        n = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not inside a Ray worker
        return None
    return max(1, int(n)) if n else None


def _node_id() -> str:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # not inside a Ray worker
        return ""


def _checkpoint_epoch(checkpoint) -> int | None:
    """The epoch a checkpoint holds, from its `lrunet.json` (None: unreadable or absent)."""
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{CHECKPOINT_META}") as f:
            return int(json.loads(f.read())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stored_checkpoints() -> list:
    """This trial's checkpoint folders on the storage, including ones Tune has not registered."""
    import pyarrow.fs as pafs
    from ray import tune

    try:  # Tune's own handle on the storage, so cloud storage works as a local folder does
        storage = tune.get_context().get_storage()
        fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    except Exception as e:  # no storage context (e.g. an older Ray): Tune's checkpoint only
        log.debug("cannot list the trial's checkpoints: %s", e)
        return []
    return [
        tune.Checkpoint(path=info.path, filesystem=fs)
        for info in infos
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")
    ]


def resume_trainer(trainer: Trainer, known=None, stored: Sequence = ()) -> int:
    """Load the newest readable checkpoint into `trainer`: `known` (the one Tune restored the
    trial from, a `tune.Checkpoint` or None) or one of `stored` (the trial's checkpoint folders).

    Returns the epoch of `known` (0: none, or unreadable); the epochs after it in
    `trainer.history` were trained before a crash without Tune seeing them.
    Raises RuntimeError when there are checkpoints but none can be read.
    """
    known_epoch = _checkpoint_epoch(known) if known is not None else None
    candidates = {c.path: (_checkpoint_epoch(c), c) for c in stored}
    if known is not None:
        candidates[known.path] = (known_epoch, known)
    # newest first; a checkpoint without lrunet.json (written by an older version) last
    ordered = sorted(candidates.values(), key=lambda ec: -1 if ec[0] is None else ec[0])
    ordered.reverse()
    errors = []
    for _, checkpoint in ordered:
        try:
            with checkpoint.as_directory() as d:
                trainer.load_checkpoint(Path(d) / CHECKPOINT_FILE)
        except Exception as e:  # truncated by a crash, deleted by Tune meanwhile, ...
            errors.append(f"{checkpoint.path}: {first_line(e)}")
            continue
        if errors:
            log.warning("skipped unreadable checkpoint(s): %s", "; ".join(errors))
        return trainer.epoch if checkpoint is known else known_epoch or 0
    if ordered:
        raise RuntimeError(
            "no checkpoint of this trial could be read: " + "; ".join(errors) + ". Delete the "
            "trial's checkpoint folders to train it from scratch."
        )
    return 0


def _report(trainer: Trainer, result: dict[str, Any], checkpoint: bool) -> None:
    from ray import tune

    result = {**result, "training_iteration": int(result[M.EPOCH])}
    if not checkpoint:
        tune.report(result)
        return
    with tempfile.TemporaryDirectory(prefix="lrunet-ckpt-") as d:
        write_checkpoint(trainer, d)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))


def write_checkpoint(trainer: Trainer, folder: str | Path) -> Path:
    """Fill `folder` with the trial checkpoint of `trainer`: checkpoint.pt and lrunet.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(folder / CHECKPOINT_FILE)
    (folder / CHECKPOINT_META).write_text(json.dumps({"epoch": trainer.epoch}))
    return folder


def epoch_line(arch: str, m: Mapping[str, Any], epochs: int) -> str:
    """`<arch> epoch e/E  train loss ..  val acc ..%  .. s  .. images/s`, one line."""
    val = f"val acc {m[M.VAL_ACC]:.2f}%  " if M.VAL_ACC in m else ""
    return (
        f"{arch} epoch {int(m[M.EPOCH])}/{epochs}  train loss {m[M.TRAIN_LOSS]:.4f}  {val}"
        f"{m[M.EPOCH_SECONDS]:.1f} s  {m[M.IMAGES_PER_SEC]:.0f} images/s"
    )


def measure_before_training(
    trainer: Trainer, measure: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, float]:
    """The measured metrics of the trial's architecture on its own hardware (`RunSpec.measure`),
    taken from its history when it resumes (a restart on another node keeps the first values),
    else measured now. They become part of every epoch's result (`Trainer.constants`)."""
    import torch

    from lrunet.objectives import get_measurement

    out: dict[str, float] = {}
    last = trainer.history[-1] if trainer.history else {}
    # the network runs at the side it is evaluated at (Fashion-MNIST's 28x28 is padded to 32)
    side = int(trainer.val_x.shape[-1]) if len(trainer.val_x) else trainer.cfg.input_size
    cfg = dataclasses.replace(trainer.cfg, input_size=side)
    for name, settings in (measure or {}).items():
        m = get_measurement(name)
        if all(k in last for k in m.keys):
            out.update({k: last[k] for k in m.keys})
            continue
        # the measurement builds its own model: keep the training's RNG stream untouched
        with torch.random.fork_rng(devices=[]):
            out.update(m.run(cfg, settings, trainer.setup.threads))
    trainer.constants.update(out)
    return out


def rejection(trainer: Trainer, measured: Mapping[str, float], limits) -> dict[str, Any] | None:
    """The result a trial over a measured budget reports instead of training (None: within)."""
    from lrunet.objectives import over_budget

    over = over_budget(measured, limits or {})
    if not over:
        return None
    return {
        M.INFEASIBLE: True,
        M.INFEASIBLE_REASON: f"{trainer.cfg.name} over budget: {'; '.join(over)}",
        M.EPOCH: 0,
        **trainer.counts,
        **measured,
    }


def train_lrunet(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: train, report every epoch, checkpoint, resume."""
    from ray import tune

    # one INFO line per checkpoint per trial drowns Tune's progress table in the driver's terminal
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)

    trainer, spec = build_trainer(config, cpus=_assigned_cpus())
    node = _node_id()
    seen = resume_trainer(trainer, tune.get_checkpoint(), _stored_checkpoints())
    measured = measure_before_training(trainer, spec.measure)
    rejected = rejection(trainer, measured, spec.limits)
    if rejected is not None:  # over a measured budget: recorded infeasible, nothing trained
        print(rejected[M.INFEASIBLE_REASON], flush=True)
        tune.report({**rejected, NODE_ID: node, "training_iteration": 0})
        return
    unseen = [r for r in trainer.history if r[M.EPOCH] > seen]
    for i, result in enumerate(unseen):  # trained before a crash, never registered by Tune
        _report(trainer, {**result, M.REPLAYED: True}, i == len(unseen) - 1)
    last = spec.max_epochs or trainer.recipe.epochs
    while trainer.epoch < last:
        result = {**trainer.train_epoch(), NODE_ID: node}
        # one line per epoch in the trial's log (no per-batch progress in a trial)
        print(epoch_line(trainer.cfg.name, result, last), flush=True)
        save = trainer.epoch % spec.checkpoint_every == 0 or trainer.epoch == last
        _report(trainer, result, save)


def make_trainable(cpus_per_trial: float = 1, gpus_per_trial: float = 0):
    """`train_lrunet` with its per-trial resources, ready for `tune.Tuner`."""
    from ray import tune

    return tune.with_resources(train_lrunet, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
