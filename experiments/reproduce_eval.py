"""Test-set scores for `launch.py reproduce`, measured after the search, never during it.

The publications report one test accuracy per row; how they chose the epoch matters (the LruNet
reference keeps the checkpoint with the best *test* accuracy, LRUNET_SPEC.md §4). A reproduce
search keeps, for every trial, its best-validation checkpoint beside its last
(`SearchOptions.keep_best`); here both are scored once on the test split:

    test_acc_best_val   the checkpoint with the best validation accuracy (the honest estimate)
    test_acc_last       the last epoch's

and logged on the trial's MLflow run (with `best_val_epoch`, `best_val_acc`
and `last_checkpoint_epoch`). The authors' released checkpoints
(`lrunet.reference`) are scored the same way, at the reference's own test geometry, where a row
names one. `write_smoke_data` writes the small CIFAR-format files a `--smoke` run trains on when
no CIFAR is at hand: real Fashion-MNIST images, padded to 32x32 and repeated on 3 channels.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lrunet import metrics as M

# the names live with every other metric's (lrunet.metrics); kept here for existing imports
TEST_ACC_BEST_VAL = M.TEST_ACC_BEST_VAL
TEST_ACC_LAST = M.TEST_ACC_LAST
BEST_VAL_EPOCH = M.BEST_VAL_EPOCH
BEST_VAL_ACC = M.BEST_VAL_ACC
LAST_EPOCH = M.LAST_CHECKPOINT_EPOCH


@dataclass
class TrialScore:
    """What a completed trial of a reproduce search measured."""

    arch: str
    dataset: str
    run_id: str
    val_acc: float | None = None  # best validation accuracy over the epochs
    best_epoch: int | None = None
    last_epoch: int | None = None
    test_best_val: float | None = None
    test_last: float | None = None
    note: str = ""


@dataclass
class ReferenceScore:
    file: str
    arch: str
    dataset: str
    test_acc: float | None  # measured here
    images: int
    note: str = ""


def _trial_checkpoints(storage_dir: str, trial_id: str) -> dict[int, Path]:
    """epoch -> checkpoint folder of one trial (a local or mounted --storage-path)."""
    folder = Path(storage_dir) / f"trial_{trial_id}"
    out = {}
    for d in sorted(folder.glob("checkpoint_*")):
        try:
            out[int(json.loads((d / "lrunet.json").read_text())["epoch"])] = d
        except (OSError, ValueError, KeyError):
            continue
    return out


def eval_images(data, limit: int | None = None, pad: bool = True):
    """(images, labels) of the test split as the platform evaluates them (padded to the
    training geometry; `pad=False`: the stored images, the reference's way)."""
    from trainables.data import pad_for_eval

    x, y = data.test_x, data.test_y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return (pad_for_eval(x, data.info) if pad else x), y


def _accuracy(model, images, labels) -> float:
    from trainables.device import select_device
    from trainables.loop import evaluate_model

    setup = select_device("auto")
    model = model.to(setup.device, memory_format=setup.memory_format)
    return evaluate_model(model, images, labels, setup)[0]


def score_trial(run, storage_dir: str, data, limit: int | None = None) -> TrialScore:
    """Score one completed trial's best-validation and last checkpoints on the test split
    (metrics already on its run, from an earlier call, are reused)."""
    from trainables.checkpoint import load_model
    from trainables.trainable import CHECKPOINT_FILE

    tags, have = run.data.tags, run.data.metrics
    s = TrialScore(tags.get("arch", run.info.run_name), data.name, run.info.run_id)
    if TEST_ACC_LAST in have:
        s.test_last, s.test_best_val = have[TEST_ACC_LAST], have.get(TEST_ACC_BEST_VAL)
        s.best_epoch = int(have[BEST_VAL_EPOCH]) if BEST_VAL_EPOCH in have else None
        s.val_acc = have.get(BEST_VAL_ACC)
        s.last_epoch = int(have[LAST_EPOCH]) if LAST_EPOCH in have else None
        return s
    ckpts = _trial_checkpoints(storage_dir, tags.get("trial_id", ""))
    if not ckpts:
        s.note = f"no checkpoint under {storage_dir}/trial_{tags.get('trial_id')}"
        return s
    s.last_epoch = max(ckpts)
    images, labels = eval_images(data, limit)
    model, state = load_model(ckpts[s.last_epoch] / CHECKPOINT_FILE)
    s.test_last = _accuracy(model, images, labels)
    history = [h for h in state.get("history", []) if M.VAL_ACC in h]
    if history:
        # the latest of equally good epochs: the one Ray's checkpoint manager keeps on a tie
        best = max(history, key=lambda h: (h[M.VAL_ACC], h[M.EPOCH]))
        s.val_acc, s.best_epoch = float(best[M.VAL_ACC]), int(best[M.EPOCH])
        if s.best_epoch == s.last_epoch:
            s.test_best_val = s.test_last
        elif s.best_epoch in ckpts:
            best_model, _ = load_model(ckpts[s.best_epoch] / CHECKPOINT_FILE)
            s.test_best_val = _accuracy(best_model, images, labels)
        else:
            s.note = f"best-validation checkpoint (epoch {s.best_epoch}) was not kept"
    return s


def log_trial_score(client, s: TrialScore) -> None:
    for key, v in (
        (TEST_ACC_BEST_VAL, s.test_best_val),
        (TEST_ACC_LAST, s.test_last),
        (BEST_VAL_EPOCH, s.best_epoch),
        (BEST_VAL_ACC, s.val_acc),
        (LAST_EPOCH, s.last_epoch),
    ):
        if v is not None:
            client.log_metric(s.run_id, key, float(v))


def score_reference(path: Path, arch: str, data, limit: int | None = None) -> ReferenceScore:
    """An authors' checkpoint scored on `data`'s test split at the reference's geometry (the
    stored images, pixels / 255, eval mode; LRUNET_SPEC.md §3)."""
    from lrunet.reference import load_reference

    model, _ = load_reference(path)
    images, labels = eval_images(data, limit, pad=False)
    if model.cfg.name != arch:
        return ReferenceScore(path.name, model.cfg.name, data.name, None, 0, f"is not {arch}")
    return ReferenceScore(
        path.name, arch, data.name, _accuracy(model, images, labels), len(labels)
    )


# --- smoke data -------------------------------------------------------------------------------

SMOKE_SOURCE = "real Fashion-MNIST images written as {name} batches (28x28 padded to 32x32, grey "
SMOKE_SOURCE += "repeated on 3 channels, labels 0-9): not {name}, so accuracies mean nothing"


def _cifar_record(x: torch.Tensor, y: torch.Tensor, label_key: bytes) -> dict[bytes, Any]:
    d: dict[bytes, Any] = {
        b"batch_label": b"lrunet reproduce --smoke",
        label_key: [int(v) for v in y],
        b"data": x.reshape(len(x), -1).numpy(),
        b"filenames": [b"fmnist_%05d.png" % i for i in range(len(x))],
    }
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [0] * len(x)
    return d


def _dump(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the CIFAR distribution format
    tmp.replace(path)


def write_smoke_data(name: str, root: Path, train: int = 500, test: int = 200) -> Path:
    """Write `train` + `test` real Fashion-MNIST images as a CIFAR-10 or CIFAR-100 folder under
    `root` (torchvision's layout) and return `root`; deterministic, so a rerun rewrites the same
    files."""
    from trainables.data import load_dataset

    fm = load_dataset("fashionmnist")
    if train > len(fm.train_x) or test > len(fm.test_x):
        raise ValueError(f"smoke data: at most {len(fm.train_x)} / {len(fm.test_x)} images")

    def rgb32(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1).contiguous()

    tx, ty = rgb32(fm.train_x[:train]), fm.train_y[:train]
    vx, vy = rgb32(fm.test_x[:test]), fm.test_y[:test]
    names = [c.encode() for c in fm.classes]
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (bx, by) in enumerate(zip(tx.chunk(5), ty.chunk(5)), start=1):
            _dump(_cifar_record(bx, by, b"labels"), folder / f"data_batch_{i}")
        _dump(_cifar_record(vx, vy, b"labels"), folder / "test_batch")
        _dump({b"label_names": names, b"num_vis": 3072}, folder / "batches.meta")
    elif name == "cifar100":
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        _dump(_cifar_record(tx, ty, b"fine_labels"), folder / "train")
        _dump(_cifar_record(vx, vy, b"fine_labels"), folder / "test")
        fine = names + [b"unused_%02d" % i for i in range(len(names), 100)]
        _dump({b"fine_label_names": fine, b"coarse_label_names": [b"all"]}, folder / "meta")
    else:
        raise ValueError(f"smoke data: {name!r} is not cifar10 or cifar100")
    return root
