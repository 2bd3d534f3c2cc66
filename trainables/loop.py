"""The plain training loop: one network (of any registered family), one recipe, one dataset. No
Ray, no MLflow.

`Trainer` holds the data as tensors on its device, trains with the paper's recipe (SGD, momentum
0.9, weight decay 5e-4 on all parameters, cross-entropy on the ReLU'd logits; LRUNET_SPEC.md §4)
and a per-iteration LR schedule from `Recipe` ("step": x0.1 at 2/3 and 5/6 of the budget,
"cosine", "constant"; see `lr_factor_fn`), augments every batch on the device
(`trainables.augment`) and validates on the fixed split of `trainables.data.split_indices`.

Its state (model, optimizer, scheduler, grad scaler, the torch/CUDA/python/numpy RNGs, the data
generator that draws batch order and augmentation, and the epoch) round-trips through
`save_checkpoint`/`load_checkpoint`, so an interrupted run resumed from epoch k produces exactly
the epoch k+1 of an uninterrupted one (same seed, same device).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrunet import metrics as M
from lrunet.recipe import STEP_MILESTONES, Recipe
from lrunet.registry import build_model, config_from_dict, config_to_dict, count
from trainables.augment import augment_batch
from trainables.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from trainables.data import VAL_FRACTION, Dataset, pad_for_eval, split_indices
from trainables.device import DeviceSetup, select_device

EVAL_BATCH = 500
DATA_SEED_OFFSET = 7919  # the data generator's seed is recipe.seed + this, apart from torch's

BatchHook = Callable[[int, int, float, float], None]  # (batch, num_batches, loss, acc)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor_fn(recipe: Recipe, steps_per_epoch: int) -> Callable[[int], float]:
    """LR multiplier as a function of the optimizer step, for `LambdaLR`.

    "step" divides the LR by 10 at 2/3 and again at 5/6 of the budget (the paper's epochs 200 and
    250 of 300, `lrunet.recipe.STEP_MILESTONES`), counted in optimizer steps: the same epochs as
    `Recipe.milestones()` whenever those fractions of `epochs` are whole, and still two drops for
    budgets too short for whole-epoch milestones (1 epoch: drops after 2/3 and 5/6 of it, where
    whole epochs would give none).
    """
    total = recipe.epochs * steps_per_epoch
    drops = [round(f * total) for f in STEP_MILESTONES]

    def factor(step: int) -> float:
        if recipe.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        if recipe.schedule == "step":
            return 0.1 ** sum(step >= d for d in drops)
        return 1.0

    return factor


@torch.inference_mode()
def evaluate_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    setup: DeviceSetup | None = None,
    batch_size: int = EVAL_BATCH,
) -> tuple[float, float]:
    """(accuracy in percent, mean cross-entropy) of `model` on uint8 images, no augmentation."""
    setup = setup or DeviceSetup(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(setup.device, non_blocking=True).float().div_(255)
            x = x.contiguous(memory_format=setup.memory_format)
            y = labels[i : i + batch_size].to(setup.device, non_blocking=True)
            with setup.autocast():
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
    finally:
        model.train(was_training)
    n = max(len(images), 1)
    return 100.0 * correct / n, loss_sum / n


class Trainer:
    """Trains `cfg` with `recipe` on `data`. Call `train_epoch()` once per epoch."""

    def __init__(
        self,
        cfg: Any,
        recipe: Recipe,
        data: Dataset,
        *,
        device: str | torch.device | DeviceSetup = "auto",
        threads: int | None = None,
        subset: int | None = None,
        val_fraction: float = VAL_FRACTION,
        augment: bool = True,
    ) -> None:
        info = data.info
        if (cfg.num_classes, cfg.in_channels, cfg.input_size) != (
            info.num_classes,
            info.in_channels,
            info.eval_size,
        ):
            raise ValueError(
                f"config geometry (num_classes={cfg.num_classes}, in_channels={cfg.in_channels}, "
                f"input_size={cfg.input_size}) does not match dataset {info.name!r} "
                f"({info.geometry}); build the config with the dataset's geometry"
            )
        self.cfg, self.recipe, self.data = cfg, recipe, data
        self.subset, self.val_fraction, self.augment = subset, val_fraction, augment
        self.setup = device if isinstance(device, DeviceSetup) else select_device(device, threads)
        dev = self.setup.device

        train_idx, val_idx = split_indices(data.train_y, val_fraction, subset)
        if len(train_idx) < 2:
            raise ValueError(f"subset: need at least 2 training images, got {len(train_idx)}")
        self.train_x = data.train_x[train_idx].to(dev)
        self.train_y = data.train_y[train_idx].to(dev)
        self.val_x = pad_for_eval(data.train_x[val_idx], info).to(dev)
        self.val_y = data.train_y[val_idx].to(dev)

        bs = recipe.batch_size
        n = len(self.train_x)
        # A last batch of one image cannot be batch-normalised in training mode: drop it.
        self.steps_per_epoch = n // bs + (1 if n % bs >= 2 else 0)
        self.images_per_epoch = min(n, self.steps_per_epoch * bs)

        seed_everything(recipe.seed)
        self.model = build_model(cfg).to(dev, memory_format=self.setup.memory_format)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor_fn(recipe, self.steps_per_epoch)
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.setup.needs_grad_scaler else None
        self.generator = torch.Generator().manual_seed(recipe.seed + DATA_SEED_OFFSET)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        # metrics of the architecture that hold for every epoch (measured latency, ...)
        self.constants: dict[str, float] = {}
        c = count(cfg)
        self.counts = {
            M.PARAMS: c.params,
            M.CONV_PARAMS: c.conv_params,
            M.MACS: c.macs,
            M.MFLOPS: c.mflops,
        }

    # --- training -----------------------------------------------------------------------------

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.train_x[idx].float().div_(255)
        if self.augment:
            info = self.data.info
            x = augment_batch(x, self.generator, out_size=info.train_size, flip=info.flip)
        return x.contiguous(memory_format=self.setup.memory_format), self.train_y[idx]

    def train_epoch(self, on_batch: BatchHook | None = None) -> dict[str, float]:
        """Train one epoch, validate, and return the epoch's metrics (`lrunet.metrics` names).

        `on_batch(batches_done, num_batches, running_loss, running_acc)` is called after every
        step on the CPU, every 25 steps on a GPU (each call synchronises it).
        Raises FloatingPointError when the training loss stops being finite.
        """
        t0 = time.perf_counter()
        self.model.train()
        dev, bs = self.setup.device, self.recipe.batch_size
        perm = torch.randperm(len(self.train_x), generator=self.generator).to(dev)
        check_every = 1 if dev.type == "cpu" else 25  # each check synchronises a GPU
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        for b in range(self.steps_per_epoch):
            x, y = self._batch(perm[b * bs : (b + 1) * bs])
            lr = self.optimizer.param_groups[0]["lr"]
            with self.setup.autocast():
                out = self.model(x)
                loss = F.cross_entropy(out.float(), y, label_smoothing=self.recipe.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(y)
            last = b == self.steps_per_epoch - 1
            if (b + 1) % check_every == 0 or last:
                running = loss_sum.item() / seen
                if not math.isfinite(running):
                    where = f"batch {b + 1}" if check_every == 1 else f"or before batch {b + 1}"
                    raise FloatingPointError(
                        f"training loss became {running} at epoch {self.epoch + 1}, {where} of "
                        f"{self.steps_per_epoch} (lr {lr:g}); lower the learning rate or check "
                        f"the data"
                    )
                if on_batch is not None:
                    on_batch(b + 1, self.steps_per_epoch, running, 100.0 * correct.item() / seen)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_seconds = time.perf_counter() - t0
        self.epoch += 1
        result: dict[str, float] = {
            M.EPOCH: self.epoch,
            M.TRAIN_LOSS: loss_sum.item() / seen,
            M.TRAIN_ACC: 100.0 * correct.item() / seen,
            M.LR: lr,
        }
        if len(self.val_x):
            result.update(self.evaluate("val"))
        result.update(self.counts)
        result.update(self.constants)
        result[M.IMAGES_PER_SEC] = seen / train_seconds
        result[M.EPOCH_SECONDS] = time.perf_counter() - t0
        self.history.append(result)
        return result

    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Accuracy and loss on "val" (the split carved from training data) or "test"."""
        if split == "val":
            acc, loss = evaluate_model(self.model, self.val_x, self.val_y, self.setup)
            return {M.VAL_ACC: acc, M.VAL_LOSS: loss}
        if split == "test":
            test_x = pad_for_eval(self.data.test_x, self.data.info)
            acc, loss = evaluate_model(self.model, test_x, self.data.test_y, self.setup)
            return {M.TEST_ACC: acc, M.TEST_LOSS: loss}
        raise ValueError(f"split: {split!r} is not 'val' or 'test'")

    # --- state --------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.cfg),
            "recipe": self.recipe.to_dict(),
            "dataset": self.data.name,
            "subset": self.subset,
            "val_fraction": self.val_fraction,
            "augment": self.augment,
        }

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [
                np_state[0],
                torch.from_numpy(np_state[1].astype(np.int64)),
                int(np_state[2]),
                int(np_state[3]),
                float(np_state[4]),
            ],
            "data": self.generator.get_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            **self._identity(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; it must come from the same config, recipe and data split."""
        mine = self._identity()
        for key, value in mine.items():
            theirs = state.get(key)
            if key == "config":  # compared as configs: files from before a field existed match
                try:
                    same = config_from_dict(theirs) == self.cfg
                except (TypeError, ValueError):
                    same = False
                if same:
                    continue
            if theirs != value:
                raise ValueError(
                    f"checkpoint {key} {state.get(key)!r} differs from this run's {value!r}; "
                    f"resume with the settings the checkpoint was trained with"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        py = rng["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        name, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        self.generator.set_state(rng["data"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        save_checkpoint(self.state_dict(), path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        self.load_state_dict(load_checkpoint(path))
