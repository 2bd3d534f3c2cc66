"""`python launch.py --space NAME|PATH [options]` (or `--resume EXPERIMENT`): the main job;
`--replay TABLE` runs it on a recorded learning-curve table instead of training."""

from __future__ import annotations

import argparse

from experiments.search import SCHEDULERS, SearchOptions, run_search
from experiments.search_summary import summary


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from '90m', '2h', '45s', '1.5d' or a bare number of seconds."""
    t = text.strip().lower()
    scale = _UNITS.get(t[-1:], None)
    try:
        v = float(t[:-1] if scale else t) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90m, 2h or 3600 (seconds), got {text!r}"
        ) from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument(
        "--space", help="search space: a shipped name (python launch.py spaces) or a YAML path"
    )
    g.add_argument(
        "--resume",
        metavar="EXPERIMENT",
        help="continue the newest interrupted search of this MLflow experiment",
    )
    parser.add_argument(
        "--dataset",
        help="override the space's dataset (cifar10, cifar100, fashionmnist, digits, imagefolder)",
    )
    parser.add_argument("--data-dir", help="dataset folder (torchvision layout)")
    parser.add_argument("--num-samples", type=_positive_int, help="trials to run")
    parser.add_argument("--max-epochs", type=_positive_int, help="full epoch budget per trial")
    parser.add_argument(
        "--grace-epochs", type=_positive_int, help="epochs before a trial may be stopped"
    )
    parser.add_argument(
        "--reduction-factor",
        type=_nonneg_float,
        help="successive halving's eta (keep 1/eta per rung)",
    )
    parser.add_argument("--subset", type=_positive_int, help="training images used per trial")
    parser.add_argument("--searcher", default="random", choices=["random", "nsga2", "tpe"])
    parser.add_argument(
        "--scheduler",
        default="auto",
        choices=SCHEDULERS,
        help="auto: moasha for several objectives, asha for one",
    )
    parser.add_argument(
        "--time-budget",
        type=_duration,
        help="end the search after this long (90m, 2h, 3600); MO-ASHA then pauses the trials "
        "it would stop and spends the time left once the space is exhausted on the best of them",
    )
    parser.add_argument("--cpus-per-trial", type=_nonneg_float, default=1.0)
    parser.add_argument(
        "--gpus-per-trial", type=_nonneg_float, default=0.0, help="fractions allowed, e.g. 0.5"
    )
    parser.add_argument(
        "--max-concurrent",
        type=_positive_int,
        help="trials at once (default: as many as the resources allow)",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="retries of a failed trial from its last checkpoint",
    )
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, or a local Ray)"
    )
    parser.add_argument(
        "--storage-path",
        help="where Ray keeps trial checkpoints (shared storage "
        "on a cluster); default ./ray_results",
    )
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db)")
    parser.add_argument("--experiment-name", help="MLflow experiment (default: lrunet-SPACE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no live progress table")
    parser.add_argument(
        "--replay",
        metavar="TABLE",
        help="trials replay this recorded learning-curve table (launch.py record) instead of "
        "training; without --space, the table's own space; one trial at a time unless "
        "--max-concurrent",
    )
    parser.add_argument(
        "--time-scale",
        type=_nonneg_float,
        default=100.0,
        help="with --replay: a recorded epoch of S seconds takes S / time-scale (default 100)",
    )


def run_flags(args: argparse.Namespace) -> dict:
    """The `SearchOptions` of where and how trials run (resources, cluster, stores, seed, output),
    from the flags every search-running command shares (`launch.py --space`, `reproduce`)."""
    return {
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_concurrent": args.max_concurrent,
        "max_failures": args.max_failures,
        "address": args.address,
        "storage_path": args.storage_path,
        "tracking_uri": args.tracking_uri,
        "seed": args.seed,
        "verbose": 0 if args.quiet else 1,
        "argv": args.argv,
    }


def run(args: argparse.Namespace) -> int:
    opts = SearchOptions(
        space=args.space,
        resume=args.resume,
        dataset=args.dataset,
        data_dir=args.data_dir,
        num_samples=args.num_samples,
        max_epochs=args.max_epochs,
        grace_epochs=args.grace_epochs,
        reduction_factor=args.reduction_factor,
        subset=args.subset,
        searcher=args.searcher,
        scheduler=args.scheduler,
        experiment_name=args.experiment_name,
        **run_flags(args),
        replay=args.replay,
        time_scale=args.time_scale,
        time_budget_s=args.time_budget,
    )
    result = run_search(opts)
    print(summary(result))
    return 0
