"""`python launch.py record --experiment NAME --out TABLE.csv`: a finished full-budget grid
search's learning curves as a table (`experiments.curve_table`), for `launch.py --replay` and
benchmarks.

A grid search is a finite space run with `--num-samples` equal to its size, `grace_epochs ==
max_epochs` (or `--scheduler fifo`) and the random searcher, which walks a finite space without
replacement. The table is read from MLflow only: the parent run's space file, overrides and
command, and every trial run's metric history (every numeric metric it logged, one value per
epoch) and node tag. Every configuration of the space must have one completed trial with the full
epoch budget, else nothing is written and the error names a missing one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments import tracking
from experiments.curve_table import CurveTable, write_table
from experiments.search_state import STATE_FILE
from lrunet import metrics as M


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the search")
    parser.add_argument("--out", required=True, help="table to write (TABLE.csv + TABLE.json)")
    parser.add_argument("--run-id", help="the search's parent run (default: the newest)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db)")
    parser.add_argument(
        "--machine",
        help="what the search ran on, for the provenance (default: this machine's description)",
    )


def _download_text(client, run_id: str, artifact: str, folder: str) -> str:
    try:
        return Path(client.download_artifacts(run_id, artifact, folder)).read_text()
    except Exception as e:
        raise ValueError(
            f"search run {run_id} has no readable {artifact} ({str(e)[:120]}); record a search "
            "run by 'python launch.py --space ...'"
        ) from None


def _commit(cwd: str | None) -> str:
    """The git commit of the folder the search ran in (+ '-dirty' with modified tracked files)."""
    for folder in filter(None, (cwd, os.getcwd())):
        try:
            head = subprocess.run(
                ["git", "-C", folder, "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            dirty = subprocess.run(
                ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if head.returncode == 0:
            note = "" if folder == cwd else f" (of {folder}, where it was recorded)"
            return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") + note
    return "unknown"


def _machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, {platform.platform()}"


def _parent(client, experiment: str, run_id: str | None):
    exp = tracking.find_experiment(client, experiment)
    if run_id:
        parent = client.get_run(run_id)
        if parent.info.experiment_id != exp.experiment_id:
            raise ValueError(f"run {run_id} is not in experiment {experiment!r}")
    else:
        parent = tracking.latest_parent_run(client, exp.experiment_id)
        if parent is None:
            raise ValueError(f"experiment {experiment!r} holds no search")
    status = parent.data.tags.get("search_status")
    if status != "finished":
        raise ValueError(
            f"search {parent.info.run_name} of {experiment!r} is {status or 'not finished'}; "
            "record a finished search (--resume it first, or pass --run-id)"
        )
    return exp, parent


def _curve(client, run, epochs: int) -> list[dict[str, float]]:
    """Epoch 1..epochs of a trial run: every metric it logged, by step (= epoch)."""
    by_epoch: list[dict[str, float]] = [{} for _ in range(epochs)]
    for key in sorted(run.data.metrics):
        for m in client.get_metric_history(run.info.run_id, key):
            if 1 <= m.step <= epochs:
                by_epoch[m.step - 1][key] = float(m.value)
    for e, values in enumerate(by_epoch, start=1):
        for need in (M.VAL_ACC, M.EPOCH_SECONDS):
            if need not in values:
                raise ValueError(
                    f"trial run {run.info.run_id} ({run.data.tags.get('arch')}) has no {need} "
                    f"at epoch {e}; it cannot be replayed"
                )
    return by_epoch


def record(
    experiment: str,
    out: str | os.PathLike,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    machine: str | None = None,
    argv: list[str] | None = None,
) -> CurveTable:
    """Write the learning-curve table of a finished grid search (module docstring)."""
    from search_spaces.loader import load_space

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # 3 small files
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.default_tracking_uri()
    tracking.check_tracking_uri(uri)
    client = tracking.client_for(uri)
    exp, parent = _parent(client, experiment, run_id)
    pid = parent.info.run_id
    with tempfile.TemporaryDirectory(prefix="lrunet-record-") as d:
        state = json.loads(_download_text(client, pid, STATE_FILE, d))
        command = _download_text(client, pid, "command.txt", d)
        spaces = [a.path for a in client.list_artifacts(pid, "space") if not a.is_dir]
        if len(spaces) != 1:
            raise ValueError(f"search run {pid} holds {len(spaces)} space files, not one")
        space_yaml = _download_text(client, pid, spaces[0], d)
        space_path = Path(d) / Path(spaces[0]).name
        spec = load_space(str(space_path), state.get("overrides") or None)
    if not spec.is_grid:
        raise ValueError(
            f"search {parent.info.run_name} ran a continuous space ({spec.name}); record a grid "
            "search (choice/randint knobs, --num-samples = its size, grace = max epochs)"
        )
    epochs = spec.training.max_epochs
    runs: dict[tuple, Any] = {}
    for run in tracking.trial_runs(client, pid, exp.experiment_id):
        tags = run.data.tags
        if tags.get(tracking.STATUS_TAG) == tracking.COMPLETED:
            runs.setdefault((tags.get("arch"), _identity(run.data.params)), run)
    entries = []
    for flat in spec.grid():
        arch, params = tracking.trial_params(flat, spec.geometry, spec.dataset)
        run = runs.get((arch, _identity(params)))
        if run is None:
            raise ValueError(
                f"search {parent.info.run_name} has no completed {epochs}-epoch trial of {arch} "
                f"({len(runs)} of {spec.num_configs} configurations completed); run the whole "
                "grid: --num-samples equal to the space's size, grace_epochs = max_epochs"
            )
        entries.append(
            {
                "config": flat,
                "arch": arch,
                "family": params.get("family", spec.family),
                "node": run.data.tags.get(tracking.NODE_TAG, ""),
                "curve": _curve(client, run, epochs),
            }
        )
    cwd = command.splitlines()[0][3:].strip() if command.startswith("cd ") else None
    options = state.get("options", {})
    provenance = {
        "space": spec.name,
        "space_file": Path(spaces[0]).name,
        "space_yaml": space_yaml,
        "overrides": state.get("overrides") or {},
        "dataset": spec.dataset,
        "data_dir": state.get("data_dir"),
        "subset": spec.training.subset,
        "epochs": epochs,
        "geometry": spec.geometry,
        "commit": _commit(cwd),
        "command": command.strip(),
        "created": _iso(parent.info.start_time),
        "finished": _iso(parent.info.end_time),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine or _machine(),
        "cpus_per_trial": options.get("cpus_per_trial"),
        "max_concurrent": options.get("max_concurrent"),
        "experiment": experiment,
        "parent_run_id": pid,
        "tracking_uri": uri,
        "record_command": " ".join(argv or []),
        "trial_seconds": sum(r[M.EPOCH_SECONDS] for e in entries for r in e["curve"]),
    }
    return write_table(out, entries, provenance)


def _identity(params) -> tuple:
    """A trial's identity among its MLflow params: every param but the dataset's."""
    skip = {"dataset", "num_classes", "in_channels", "input_size"}
    return tuple(sorted((k, str(v)) for k, v in params.items() if k not in skip))


def _iso(ms: int | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) if ms else None


def run(args: argparse.Namespace) -> int:
    argv = list(getattr(args, "argv", None) or ["launch.py"])
    if argv[1:2] != ["record"]:  # launch.py hands over the arguments after the command
        argv.insert(1, "record")
    table = record(args.experiment, args.out, args.tracking_uri, args.run_id, args.machine, argv)
    seconds = table.provenance["trial_seconds"]
    print(
        f"{table.path}: {len(table.configs)} configurations x {table.epochs} epochs "
        f"({', '.join(sorted(set(table.families)))}; {len(table.metrics)} metrics, "
        f"{seconds / 3600:.2f} trial-hours); provenance in {table.path.with_suffix('.json')}"
    )
    return 0
