"""`python launch.py reproduce TABLE`: train a published table's grid and put the paper beside it.

TABLE is one of the LruNet paper's Tables 2-7 or `dacnn` (the DACNN release figure's points). Each
of the table's parts (a shipped search space: `lru_paper` for Table 2, `table7`,
`table7_cifar100` and `table7_fashionmnist` for Table 7, ...) runs as a normal search, with the
search's flags (`--address`, `--gpus-per-trial`, `--storage-path`, `--tracking-uri`, ...), the
paper's recipe (300 epochs, step schedule; `--epochs` shortens it, schedule and all) and no early
stopping. After each part, every trial's best-validation and last checkpoints are scored on the
test set (`experiments.reproduce_eval`), the authors' checkpoints too (`--reference-dir`), and the
comparison (`experiments.reproduce`) is printed and logged to the part's MLflow parent run.

    python launch.py reproduce table2 --counts-only     # counts against the paper, no training
    python launch.py reproduce table2 --smoke           # every row, 1 epoch on 200 images (CPU)
    python launch.py reproduce table5 --data-dir ~/data --address auto --gpus-per-trial 0.5
    python launch.py reproduce table5 --data-dir ~/data --resume    # after an interruption
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.cli_search import _nonneg_float, _positive_int
from experiments.paper_tables import get_table, grid_counts, load_tables
from experiments.reproduce import ReportRow, log_report, report_text, save_figure
from lrunet import metrics as M

SMOKE_EPOCHS = 1
SMOKE_SUBSET = 100  # training images per row
SMOKE_FILES = (300, 100)  # train / test images written when no CIFAR is at hand
SMOKE_TEST_IMAGES = 500  # test images scored per checkpoint in smoke mode (real datasets)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", choices=list(load_tables()), help="the table to reproduce")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--smoke",
        action="store_true",
        help=f"CPU check: every row for {SMOKE_EPOCHS} epoch on {SMOKE_SUBSET} images (CIFAR "
        "absent: real Fashion-MNIST written as CIFAR files)",
    )
    mode.add_argument(
        "--counts-only", action="store_true", help="compare the counts only, train nothing"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, help="epochs per row (default: the paper's 300)"
    )
    parser.add_argument("--subset", type=_positive_int, help="training images per row")
    parser.add_argument("--data-dir", help="dataset folder (torchvision layout)")
    parser.add_argument(
        "--reference-dir",
        help="folder of the authors' released checkpoints (*.t7), scored where a row matches",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue this table's interrupted searches; finished parts are reported again",
    )
    parser.add_argument("--plot", help="also write the comparison plot to this PNG file")
    parser.add_argument("--cpus-per-trial", type=_nonneg_float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=_nonneg_float, default=0.0)
    parser.add_argument("--max-concurrent", type=_positive_int)
    parser.add_argument("--max-failures", type=int, default=2)
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument("--storage-path", help="where Ray keeps trial checkpoints")
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db)")
    parser.add_argument(
        "--experiment-name", help="MLflow experiment (default: reproduce-TABLE[-smoke])"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no live progress table")


def _experiment(args: argparse.Namespace, part: str, parts: int) -> str:
    base = args.experiment_name or f"reproduce-{args.table}" + ("-smoke" if args.smoke else "")
    return base if parts == 1 else f"{base}-{part}"


def _part_data(args: argparse.Namespace, dataset: str) -> tuple[str | None, str, bool]:
    """(data_dir, what the part trains on, in words; whether that is the real dataset)."""
    from trainables.data import load_dataset

    try:
        data = load_dataset(dataset, args.data_dir)
        return args.data_dir, f"{dataset} from {data.source}", True
    except FileNotFoundError:
        if not args.smoke or dataset not in ("cifar10", "cifar100"):
            raise
    from experiments.reproduce_eval import SMOKE_SOURCE, write_smoke_data

    root = args.storage_path if args.storage_path and "://" not in args.storage_path else None
    folder = Path(root or "ray_results").expanduser().resolve() / "reproduce-smoke-data" / dataset
    write_smoke_data(dataset, folder, *SMOKE_FILES)
    what = SMOKE_SOURCE.format(name=dataset) + f", {SMOKE_FILES[0]} / {SMOKE_FILES[1]} in {folder}"
    return str(folder), what, False


def _search_options(args, part: str, experiment: str, data_dir: str | None, epochs, subset):
    from experiments.cli_search import run_flags
    from experiments.search import SearchOptions

    return SearchOptions(
        space=part,
        data_dir=data_dir,
        max_epochs=epochs,
        grace_epochs=epochs,  # no early stopping: every row reaches the full budget
        subset=subset,
        searcher="random",  # a finite space: its grid, each point once
        scheduler="fifo",
        experiment_name=experiment,
        **run_flags(args),
        space_overrides={"recipe": {"epochs": epochs}} if epochs else {},
        keep_best=M.VAL_ACC,
    )


def _finished_parent(client, experiment: str):
    """The newest search of `experiment`: (parent run, finished?) or (None, False)."""
    from experiments import tracking

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, False
    parent = tracking.latest_parent_run(client, exp.experiment_id)
    if parent is None:
        return None, False
    return parent, parent.data.tags.get("search_status") == "finished"


def _run_part(args, table, part, data, rows, epochs, subset) -> tuple[str, str]:
    """Search (or resume, or reuse) one part, then score its trials; (MLflow store, parent run).
    `data`: the part's (data_dir, what it is, whether it is the real dataset)."""
    from experiments import tracking
    from experiments.cli_export import search_data_dir
    from experiments.reproduce_eval import log_trial_score, score_reference, score_trial
    from experiments.search import run_search
    from search_spaces.loader import load_space
    from trainables.data import load_dataset

    spec = load_space(part)
    experiment = _experiment(args, part, len(table.parts))
    data_dir, what, real = data
    print(f"\n{table.name} / {part}: {len(list(spec.grid()))} rows on {what}", flush=True)
    opts = _search_options(args, part, experiment, data_dir, epochs, subset)
    uri = args.tracking_uri or tracking.default_tracking_uri()
    parent, finished = (None, False)
    if args.resume:
        tracking.check_tracking_uri(uri)
        parent, finished = _finished_parent(tracking.client_for(uri), experiment)
    if parent is not None and finished:
        print(f"{experiment}: its search {parent.info.run_name} finished; reporting it again")
        client = tracking.client_for(uri)
        parent_id, exp_id = parent.info.run_id, parent.info.experiment_id
        storage_dir = parent.data.tags.get("storage_dir", "")
        data_dir = search_data_dir(client, parent_id) or data_dir
    else:
        if parent is not None:
            opts.space, opts.resume = None, experiment
        result = run_search(opts)
        uri, parent_id, exp_id = result.tracking_uri, result.parent_run_id, result.experiment_id
        storage_dir = result.storage_dir
        client = tracking.client_for(uri)
    data = load_dataset(spec.dataset, data_dir)
    limit = SMOKE_TEST_IMAGES if args.smoke else None
    for run in tracking.trial_runs(client, parent_id, exp_id):
        rr = rows.get((spec.dataset, run.data.tags.get("arch")))
        if rr is None or run.data.tags.get(tracking.ROLE_TAG) != tracking.TRIAL_ROLE:
            continue
        status = run.data.tags.get(tracking.STATUS_TAG)
        if status != tracking.COMPLETED:
            rr.notes.append(f"trial {status}")
            continue
        rr.trial = score_trial(run, storage_dir, data, limit)
        log_trial_score(client, rr.trial)
    for rr in rows.values():
        if rr.row.dataset != spec.dataset or not rr.row.reference or not args.reference_dir:
            continue
        from experiments.reproduce_eval import ReferenceScore

        path = Path(args.reference_dir).expanduser() / rr.row.reference
        if not path.is_file():
            rr.reference = ReferenceScore(
                path.name, rr.row.arch, spec.dataset, None, 0, f"not in {path.parent}"
            )
        elif not real:
            note = f"not measured: the smoke data is not {spec.dataset}"
            rr.reference = ReferenceScore(path.name, rr.row.arch, spec.dataset, None, 0, note)
        else:
            rr.reference = score_reference(path, rr.row.arch, data, limit)
    return uri, parent_id


def run(args: argparse.Namespace) -> int:
    table = get_table(args.table)
    counts = grid_counts(table)
    rows = {(r.dataset, r.arch): ReportRow(r, counts[(r.dataset, r.arch)][1]) for r in table.rows}
    if args.reference_dir and not Path(args.reference_dir).expanduser().is_dir():
        raise FileNotFoundError(2, "--reference-dir is not a folder", args.reference_dir)
    print(report_text(table, list(rows.values())), flush=True)
    bad = [r for r in rows.values() if not r.exact(table)]
    if args.counts_only:
        return 1 if bad else 0
    epochs = args.epochs or (SMOKE_EPOCHS if args.smoke else None)
    subset = args.subset or (SMOKE_SUBSET if args.smoke else None)
    from search_spaces.loader import load_space

    # every part's data is found (or the smoke files written) before the first part trains
    data = {part: _part_data(args, load_space(part).dataset) for part in table.parts}
    parents = [_run_part(args, table, p, data[p], rows, epochs, subset) for p in table.parts]
    what = [d[1] for d in data.values()]
    length = f"{epochs} epoch(s)" if epochs else "the paper's 300 epochs"
    images = f"{subset:,} training images per row" if subset else "the whole training split"
    trained = f"trained: {length}, step schedule, {images}, on " + "; ".join(dict.fromkeys(what))
    if args.smoke:
        trained += ". Smoke mode: the accuracies check the pipeline, not the paper"
    text = report_text(table, list(rows.values()), trained)
    print("\n" + text)
    from experiments import tracking

    for uri, parent_id in parents:
        log_report(tracking.client_for(uri), parent_id, table, list(rows.values()), text)
    print(f"\nlogged to the parent run(s) under reproduce/{table.name}.{{txt,csv,png}}")
    if args.plot:
        print(f"plot: {save_figure(table, list(rows.values()), Path(args.plot)).resolve()}")
    return 1 if bad else 0
