"""`python launch.py train ARCH --dataset D --epochs E`: train one architecture, no Ray.

What the reference's main.py did, headless: a progress bar per epoch on a terminal (none in a
log file), validation accuracy and images/s printed after every epoch, and a checkpoint at the
end (default
`checkpoints/<canonical-name>-<dataset>.pt`, loadable with `trainables.checkpoint.load_model`).
Unlike main.py it selects nothing on the test set: `--test` only reports the final model's test
accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrunet.recipe import SCHEDULES, Recipe
from lrunet.registry import parse_name
from trainables.data import DATASET_NAMES, VAL_FRACTION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Recipe()
    parser.add_argument(
        "arch",
        help="architecture name of any family, e.g. 14-LruNet-1x, 1.1.1-DACNN-vgg16 or "
        "MobileNetV2-0.25x (python launch.py describe --list)",
    )
    parser.add_argument("--dataset", default="cifar10", choices=DATASET_NAMES)
    parser.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help=f"epochs, also the LR schedule's horizon (default {d.epochs})",
    )
    parser.add_argument(
        "--data-dir", default=None, help="dataset root (default ./data or $LRUNET_DATA_DIR)"
    )
    parser.add_argument("--download", action="store_true", help="download CIFAR/Fashion-MNIST")
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        help="train on this many training images (default: all)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=VAL_FRACTION,
        help=f"share of the training set held out for validation (default {VAL_FRACTION})",
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument(
        "--out",
        default=None,
        help="checkpoint path (default checkpoints/<canonical-name>-<dataset>.pt)",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue a run from its checkpoint (same settings)",
    )
    parser.add_argument(
        "--test", action="store_true", help="report test-set accuracy of the final model"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lrunet import metrics as M
    from lrunet.io import check_writable_dir
    from trainables.data import load_dataset
    from trainables.loop import Trainer

    # the output folder is checked before minutes of loading and training are spent
    check_writable_dir(Path(args.out).parent if args.out else Path("checkpoints"))
    data = load_dataset(args.dataset, args.data_dir, download=args.download)
    cfg = parse_name(args.arch, **data.geometry)
    recipe = Recipe(
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        schedule=args.schedule,
        seed=args.seed,
    )
    out = Path(args.out or f"checkpoints/{cfg.name}-{data.name}.pt")
    trainer = Trainer(
        cfg,
        recipe,
        data,
        device=args.device,
        threads=args.threads,
        subset=args.subset,
        val_fraction=args.val_fraction,
        augment=not args.no_augment,
    )
    if args.resume:
        trainer.load_checkpoint(args.resume)
    c = trainer.counts
    print(
        f"{cfg.name} on {data.name} ({data.source}): {c[M.PARAMS]:,} params, "
        f"{c[M.CONV_PARAMS]:,} conv params, {c[M.MFLOPS]:.2f} MFLOPs at "
        f"{cfg.input_size}x{cfg.input_size}; {len(trainer.train_x):,} train / "
        f"{len(trainer.val_x):,} val images; {trainer.setup.describe()}",
        flush=True,
    )
    # a per-batch bar only where someone watches it: in a log file (no TTY) its carriage
    # returns pile up, and the one line per epoch below says what matters
    interactive = sys.stderr.isatty()
    while trainer.epoch < recipe.epochs:
        bar = None
        if interactive:
            bar = tqdm(
                total=trainer.steps_per_epoch,
                desc=f"epoch {trainer.epoch + 1}/{recipe.epochs}",
                unit="batch",
                leave=False,
                dynamic_ncols=True,
            )

        def on_batch(b: int, n: int, loss: float, acc: float, bar=bar) -> None:
            bar.update(b - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}%")

        try:
            m = trainer.train_epoch(on_batch if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        val = f"val acc {m[M.VAL_ACC]:.2f}% loss {m[M.VAL_LOSS]:.4f}  " if M.VAL_ACC in m else ""
        print(
            f"epoch {m[M.EPOCH]}/{recipe.epochs}  train loss {m[M.TRAIN_LOSS]:.4f} "
            f"acc {m[M.TRAIN_ACC]:.2f}%  {val}lr {m[M.LR]:.4g}  {m[M.EPOCH_SECONDS]:.1f} s  "
            f"{m[M.IMAGES_PER_SEC]:.0f} images/s",
            flush=True,
        )
    trainer.save_checkpoint(out)
    print(f"checkpoint: {out}")
    if args.test:
        t = trainer.evaluate("test")
        print(
            f"test acc {t[M.TEST_ACC]:.2f}% loss {t[M.TEST_LOSS]:.4f} "
            f"({len(data.test_x):,} images at {data.info.eval_size}x{data.info.eval_size})"
        )
    return 0
