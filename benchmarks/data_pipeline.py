"""The share of a training step spent on batching and augmentation (goal: under 5 %).

The trainer (`trainables/loop.py`) keeps the whole training set in memory as uint8 and builds
each batch as: index with the epoch's permutation, convert to float in [0, 1], augment the batch
on the device (`trainables.augment.augment_batch`: random crop with 4 px zero padding, rotation
within +-10 deg, horizontal flip, one `grid_sample`), convert to the model's memory layout. This
script times exactly those operations against the training step of the model that consumes the
batch (`lrunet.model.LruNet` prepared as the trainer prepares it, SGD with momentum), for the
CIFAR geometry (3x32x32) and the Fashion-MNIST one (1x28x28 cropped to 32x32). Pixel values do
not change the cost, so the images are random bytes (no dataset needed).

    python benchmarks/data_pipeline.py                    # 1- and 14-LruNet-1x, batch 128
    python benchmarks/data_pipeline.py --quick --models 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_step import cpu_name, load  # noqa: E402
from lrunet.config import LruNetConfig  # noqa: E402
from lrunet.model import LruNet, memory_format_for, prepare_for_device  # noqa: E402
from trainables.augment import augment_batch  # noqa: E402

GEOMETRIES = {  # name: (channels, stored size, training crop, flip)
    "cifar (3x32x32)": (3, 32, 32, True),
    "fashion-mnist (1x28x28 -> 32)": (1, 28, 32, True),
}


def median_time(fn, calls: int) -> float:
    """Median seconds of single calls: robust to load spikes on a shared machine."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Batcher:
    """The trainer's batch construction over an in-memory uint8 training set."""

    def __init__(
        self,
        images: int,
        batch: int,
        channels: int,
        size: int,
        crop: int,
        flip: bool,
        memory_format: torch.memory_format,
    ) -> None:
        self.gen = torch.Generator().manual_seed(0)
        self.train_x = torch.randint(
            0, 256, (images, channels, size, size), dtype=torch.uint8, generator=self.gen
        )
        self.train_y = torch.randint(0, 10, (images,), generator=self.gen)
        self.perm = torch.randperm(images, generator=self.gen)
        self.batch, self.crop, self.flip, self.fmt = batch, crop, flip, memory_format
        self.cursor = 0

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.cursor % (len(self.perm) - self.batch)
        self.cursor += self.batch
        idx = self.perm[start : start + self.batch]
        x = self.train_x[idx].float().div_(255)
        x = augment_batch(x, self.gen, out_size=self.crop, flip=self.flip)
        return x.contiguous(memory_format=self.fmt), self.train_y[idx]


def step_time(cfg: LruNetConfig, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per training step of the model as the trainer prepares it."""
    model = prepare_for_device(LruNet(cfg), x.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    return median_time(step, steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="1,14", help="reuse counts N of N-LruNet-1x (1,14)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=50_000, help="training-set size held in memory")
    p.add_argument("--steps", type=int, default=10, help="timed model steps per model")
    p.add_argument("--batches", type=int, default=100, help="timed batches per geometry")
    p.add_argument("--quick", action="store_true", help="3 steps, 30 batches")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.batches = 3, 30
    try:
        reuses = [int(n) for n in args.models.split(",")]
    except ValueError:
        p.error(f"--models: expected comma-separated integers, got {args.models!r}")

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    fmt = memory_format_for(device)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch {args.batch}; load average {load()}"
    )
    rows = []
    for geo, (ch, size, crop, flip) in GEOMETRIES.items():
        batcher = Batcher(args.images, args.batch, ch, size, crop, flip, fmt)
        for _ in range(5):
            batcher()
        t_batch = median_time(batcher, args.batches)
        xb, yb = batcher()
        for n in reuses:
            cfg = LruNetConfig(reuse=n, in_channels=ch, input_size=crop)
            t_step = step_time(cfg, xb, yb, args.steps)
            share = t_batch / (t_batch + t_step)
            rows.append((geo, cfg.name, t_batch, t_step, share))
            print(
                f"{geo:30s} {cfg.name:13s} batch+augment {t_batch * 1e3:7.2f} ms, "
                f"train step {t_step * 1e3:8.1f} ms, share {share:6.2%}",
                flush=True,
            )
    worst = max(rows, key=lambda r: r[4])
    print(f"load average at end: {load()}")
    print(
        f"largest share: {worst[4]:.2%} ({worst[0]}, {worst[1]}); goal < 5 %: "
        f"{'met' if worst[4] < 0.05 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
