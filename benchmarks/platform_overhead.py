"""The platform's overhead per trial: a real search against the same training loop run bare.

Three configurations on real Fashion-MNIST, sized so that each trains for about `--seconds`
(default 60 s) on this machine, are run twice:

* bare: `trainables.loop.Trainer` in this process, one after the other, 2 threads each;
* platform: `launch.py`'s search (`experiments.search.run_search`) over a space holding exactly
  those configs: a local Ray start, one trial at a time with 2 CPUs, FIFO (no early stopping),
  a checkpoint every epoch, MLflow logging from the driver into a fresh SQLite store, the Pareto
  front and its plots at the end.

It prints the wall time of both, the overhead per trial and its share of the bare time:

    python benchmarks/platform_overhead.py               # about 7 minutes on 2 cores
    python benchmarks/platform_overhead.py --seconds 15  # quicker, overhead share larger
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REUSE = (1, 2, 3)
WIDTH = 0.5
EPOCHS = 3
SPACE = """\
description: benchmarks/platform_overhead.py, three fixed configs
dataset: fashionmnist
model:
  reuse: {{choice: [{reuse}]}}
  width: {width}
  groups: 8
recipe:
  lr: 0.1
  batch_size: 128
  schedule: cosine
training:
  max_epochs: {epochs}
  grace_epochs: {epochs}
  num_samples: {n}
  subset: {subset}
"""


def bare(subset: int) -> tuple[float, list[float]]:
    from lrunet.recipe import split_trial_config
    from trainables.data import load_dataset
    from trainables.loop import Trainer

    data = load_dataset("fashionmnist")
    per_trial = []
    t0 = time.perf_counter()
    for n in REUSE:
        t = time.perf_counter()
        flat = {
            "reuse": n,
            "width": WIDTH,
            "groups": 8,
            "lr": 0.1,
            "batch_size": 128,
            "schedule": "cosine",
            "epochs": EPOCHS,
        }
        cfg, recipe = split_trial_config(flat, **data.geometry)
        trainer = Trainer(cfg, recipe, data, device="cpu", threads=2, subset=subset)
        for _ in range(EPOCHS):
            trainer.train_epoch()
        per_trial.append(time.perf_counter() - t)
    return time.perf_counter() - t0, per_trial


def calibrate(seconds: float) -> int:
    """Training images per trial so that the middle config trains for about `seconds`."""
    from lrunet.recipe import split_trial_config
    from trainables.data import load_dataset
    from trainables.loop import Trainer

    data = load_dataset("fashionmnist")
    flat = {"reuse": REUSE[1], "width": WIDTH, "groups": 8, "batch_size": 128, "epochs": 1}
    cfg, recipe = split_trial_config(flat, **data.geometry)
    trainer = Trainer(cfg, recipe, data, device="cpu", threads=2, subset=2560)
    trainer.train_epoch()  # warm-up
    ips = trainer.train_epoch()["images_per_sec"]
    val_share = 0.1
    return max(512, int(seconds * ips / EPOCHS * (1 - val_share)))


def platform(subset: int, folder: Path) -> float:
    from experiments.search import SearchOptions, run_search

    space = folder / "overhead.yaml"
    space.write_text(
        textwrap.dedent(
            SPACE.format(
                reuse=", ".join(map(str, REUSE)),
                width=WIDTH,
                epochs=EPOCHS,
                n=len(REUSE),
                subset=subset,
            )
        )
    )
    t0 = time.perf_counter()
    run_search(
        SearchOptions(
            space=str(space),
            scheduler="fifo",
            cpus_per_trial=2,
            max_concurrent=1,
            verbose=0,
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            storage_path=str(folder / "ray"),
        )
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="target training per trial")
    args = parser.parse_args(argv)
    import ray
    import torch

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    subset = calibrate(args.seconds)
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__}, ray {ray.__version__}; "
        f"configs {[f'{n}-LruNet-{WIDTH:g}x' for n in REUSE]}, {EPOCHS} epochs of {subset:,} "
        "Fashion-MNIST images each"
    )
    bare_s, per_trial = bare(subset)
    print(f"bare loop: {bare_s:.1f} s ({', '.join(f'{s:.1f}' for s in per_trial)} s per trial)")
    with tempfile.TemporaryDirectory(prefix="lrunet-overhead-") as d:
        plat_s = platform(subset, Path(d))
    n = len(REUSE)
    over = (plat_s - bare_s) / n
    print(f"platform: {plat_s:.1f} s (Ray start, trials, checkpoints, MLflow, front)")
    print(
        f"overhead: {over:.1f} s per trial = {over / (bare_s / n):.1%} of a trial's "
        f"{bare_s / n:.1f} s of bare training"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
