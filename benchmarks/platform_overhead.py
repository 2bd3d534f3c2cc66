"""The platform's overhead: a real search against the same training loop run bare.

Three configurations on real Fashion-MNIST, sized so that each trains for about `--seconds`
(default 60 s) on this machine, are run bare and as searches:

* bare: `trainables.loop.Trainer` in this process, one after the other, 2 threads each;
* platform: `launch.py`'s search (`experiments.search.run_search`) over a space holding those
  configs: a local Ray start, one trial at a time with 2 CPUs, FIFO (no early stopping),
  a checkpoint every epoch, MLflow logging from the driver into a fresh SQLite store, the Pareto
  front and its plots at the end. Once with all three configs, once with the first alone.

The overhead of a search with n trials is F + n * m: F is paid once per search (imports, the
MLflow store, the Ray start, the first trial process, the front), m by every trial (its process
or actor reuse, per-epoch checkpoints and MLflow writes). The two searches give both; m is what
grows with a search, F what a short search feels. It prints the wall times, F, m and m's share
of a trial's bare training time:

    python benchmarks/platform_overhead.py               # about 9 minutes on 2 cores
    python benchmarks/platform_overhead.py --seconds 15  # quicker, shares larger
"""

from __future__ import annotations

import argparse
import os
import subprocess
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


def bare(subset: int, reuse: tuple[int, ...] = REUSE) -> tuple[float, list[float]]:
    from lrunet.recipe import split_trial_config
    from trainables.data import load_dataset
    from trainables.loop import Trainer

    data = load_dataset("fashionmnist")
    per_trial = []
    t0 = time.perf_counter()
    for n in reuse:
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


def platform(subset: int, folder: Path, reuse: tuple[int, ...] = REUSE) -> float:
    from experiments.search import SearchOptions, run_search

    folder.mkdir(parents=True, exist_ok=True)
    space = folder / "overhead.yaml"
    space.write_text(
        textwrap.dedent(
            SPACE.format(
                reuse=", ".join(map(str, reuse)),
                width=WIDTH,
                epochs=EPOCHS,
                n=len(reuse),
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


def timed_child(mode: str, subset: int, folder: Path) -> float:
    """Wall time of one measurement in a fresh Python process: bare or a search, each paying its
    own interpreter start, imports and dataset load, as a user's run does."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--subset", str(subset), "--folder", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode:
        sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def child(mode: str, subset: int, folder: Path) -> None:
    reuse = REUSE if mode.endswith("all") else REUSE[:1]
    if mode.startswith("bare"):
        bare(subset, reuse)
    else:
        platform(subset, folder / mode, reuse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="target training per trial")
    parser.add_argument("--child", choices=["bare-all", "bare-one", "search-all", "search-one"])
    parser.add_argument("--subset", type=int)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if args.child:
        child(args.child, args.subset, args.folder)
        return 0
    import ray
    import torch

    subset = calibrate(args.seconds)
    n = len(REUSE)
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__}, ray {ray.__version__}; "
        f"configs {[f'{r}-LruNet-{WIDTH:g}x' for r in REUSE]}, {EPOCHS} epochs of {subset:,} "
        "Fashion-MNIST images each; every run in a fresh process"
    )
    with tempfile.TemporaryDirectory(prefix="lrunet-overhead-") as d:
        t = {
            mode: timed_child(mode, subset, Path(d))
            for mode in ("bare-all", "search-all", "bare-one", "search-one")
        }
    print(
        f"bare: {t['bare-all']:.1f} s for {n} configs, {t['bare-one']:.1f} s for the first; "
        f"search: {t['search-all']:.1f} s and {t['search-one']:.1f} s"
    )
    over_all = t["search-all"] - t["bare-all"]
    over_one = t["search-one"] - t["bare-one"]
    per_trial = (over_all - over_one) / (n - 1)
    fixed = over_one - per_trial
    mean = (t["bare-all"] - t["bare-one"]) / (n - 1)  # a trial's training, without the start
    print(
        f"overhead of the {n}-trial search: {over_all:.1f} s = {over_all / t['bare-all']:.1%} "
        "of the bare run"
    )
    print(f"fixed, once per search: {fixed:.1f} s")
    print(
        f"per trial: {per_trial:.1f} s = {per_trial / mean:.1%} of a trial's {mean:.1f} s of "
        "bare training"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
