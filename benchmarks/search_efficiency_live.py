"""The live check of `benchmarks/search_efficiency.py --live`: the schedulers on real training,
each with the same wall-clock budget (the replayed benchmark's small reality check).

On real Fashion-MNIST (a 3,000-image subset; `benchmarks/search_efficiency.yaml`, a 16-config
grid), this runs, one after the other on the same local Ray:

1. the full grid at the full budget (FIFO, every config for `max_epochs`): the reference front,
   and, from the same trials, a learning-curve table (`experiments.curve_table`, the format of
   `launch.py record`);
2. FIFO + random order, ASHA on accuracy, MO-ASHA (`experiments.moasha`) and MO-ASHA with
   pausing, each with the same wall-clock budget, a fraction (default 1/3) of the time the grid
   took;
3. the same four methods replayed on that table (`benchmarks.replay_runs`, as the replayed
   benchmark runs them) with the same fraction of the grid's recorded compute.

Only trials that reached the full budget enter a front (as in the platform). It prints each
front's hypervolume, its ratio to the grid's, the compute each used (epochs trained and the sum
of the trials' epoch seconds), and, side by side, each method's ratio live and replayed with the
two rankings, the check that replay and reality agree, e.g.

    python benchmarks/search_efficiency.py --live           # about 15-25 minutes on 2 cores
    python benchmarks/search_efficiency.py --live --quick   # 8 configs, 3 epochs: a few minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import pareto  # noqa: E402
from lrunet import metrics as M  # noqa: E402
from search_spaces.loader import load_space  # noqa: E402

HERE = Path(__file__).resolve().parent


# live method -> the same method in the replayed benchmark
REPLAYED = {
    "fifo+random": "fifo+random",
    "asha(acc)": "asha(acc)+random",
    "moasha": "moasha+random",
    "moasha-pause": "moasha-pause+random",
}


@dataclass
class Outcome:
    method: str
    hypervolume: float
    completed: int
    trials: int
    epochs: int
    compute_s: float
    wall_s: float
    front: list[tuple[str, float, float]]
    curves: list[dict] = field(default_factory=list)  # table entries (write_table), per trial


def run_method(method: str, spec, time_budget_s: float | None, storage: str, seed: int) -> Outcome:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from experiments.moasha import MOASHAScheduler
    from experiments.searchers import SpaceSampler
    from lrunet.recipe import split_trial_config
    from trainables.trainable import RUN_KEY, make_trainable

    t = spec.training
    if method in ("grid", "fifo+random"):
        scheduler = FIFOScheduler()
    elif method == "asha(acc)":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            metric=M.VAL_ACC,
            mode="max",
            max_t=t.max_epochs,
            grace_period=t.grace_epochs,
            reduction_factor=t.reduction_factor,
        )
    else:
        scheduler = MOASHAScheduler(
            metrics=spec.metrics,
            modes=spec.modes,
            max_t=t.max_epochs,
            grace_period=t.grace_epochs,
            reduction_factor=t.reduction_factor,
            pause=method == "moasha-pause",
        )
    run = {"dataset": spec.dataset, "subset": t.subset, "max_epochs": t.max_epochs}
    tuner = tune.Tuner(
        make_trainable(1, 0),
        param_space={**spec.fixed, RUN_KEY: run},
        tune_config=tune.TuneConfig(
            search_alg=SpaceSampler(spec, seed),
            scheduler=scheduler,
            num_samples=spec.num_configs,
            # no ConcurrencyLimiter (paused trials would hold its slots): for every method the
            # 2 CPUs bound it (2 trials of 1 CPU), and Tune starts the next trial's actor ahead
            max_concurrent_trials=None,
            reuse_actors=True,
            time_budget_s=time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=method.replace("(", "-").replace(")", "").replace("+", "-"),
            storage_path=storage,
            verbose=0,
        ),
    )
    t0 = time.time()
    grid = tuner.fit()
    wall = time.time() - t0
    points, names, epochs, compute, curves = [], [], 0, 0.0, []
    for r in grid:
        df = r.metrics_dataframe
        if df is None or df.empty:
            continue
        df = df.drop_duplicates("training_iteration", keep="last")  # a resumed trial's repeat
        epochs += len(df)
        compute += float(df[M.EPOCH_SECONDS].sum())
        last = df.iloc[-1]
        if int(last["training_iteration"]) >= t.max_epochs:
            flat = {k: v for k, v in r.config.items() if k != RUN_KEY}
            cfg, _ = split_trial_config(flat, **spec.geometry)
            names.append(cfg.name)
            points.append([float(last[m]) for m in spec.metrics])
            metrics = [m for m in CURVE_METRICS if m in df.columns]
            curve = [{m: float(row[m]) for m in metrics} for _, row in df.iterrows()]
            curves.append(
                {"config": flat, "arch": cfg.name, "family": spec.family, "curve": curve}
            )
    hv = pareto.hypervolume(points, spec.modes, spec.reference_point) if points else 0.0
    front = []
    if points:
        mask = pareto.pareto_front_mask(points, spec.modes)
        front = sorted((names[i], *points[i]) for i in range(len(points)) if mask[i])
    return Outcome(method, hv, len(points), len(grid), epochs, compute, wall, front, curves)


CURVE_METRICS = (M.VAL_ACC, M.VAL_LOSS, M.TRAIN_LOSS, M.PARAMS, M.EPOCH_SECONDS)


def record(grid: Outcome, spec, space_text: str, overrides, path: Path):
    """The grid's trials as a learning-curve table (what `launch.py record` writes)."""
    from experiments.curve_table import write_table

    if len(grid.curves) != spec.num_configs:
        raise RuntimeError(f"the grid completed {len(grid.curves)}/{spec.num_configs} configs")
    provenance = {
        "space": spec.name,
        "space_file": "search_efficiency.yaml",
        "space_yaml": space_text,
        "overrides": overrides,
        "dataset": spec.dataset,
        "subset": spec.training.subset,
        "epochs": spec.training.max_epochs,
        "geometry": spec.geometry,
        "recorded_by": "benchmarks/search_efficiency.py --live",
    }
    return write_table(path, grid.curves, provenance)


def replayed(table, spec, fraction: float, storage: str, seed: int) -> dict[str, float]:
    """Each live method replayed on `table` with `fraction` of its recorded compute: the
    normalised hypervolume (platform view) it reached."""
    from benchmarks import search_report as R
    from benchmarks.replay_runs import Settings, run_ray

    t = spec.training
    fr = R.frame(table, spec.reference_point, t.max_epochs)
    s = Settings(t.grace_epochs, t.reduction_factor, t.max_epochs, fraction * fr.grid_compute)
    out = {}
    for live, method in REPLAYED.items():
        log = run_ray(method, table, table.space(), seed, s, storage)
        out[live] = R.hv_at(log, fr, [fraction])["platform"][0]
    return out


TIE = 0.001  # normalised hypervolumes this close rank the same (the table prints 0.1 %)


def ranks(values: dict[str, float], tie: float = TIE) -> dict[str, int]:
    """1 for the largest value; values within `tie` of each other share the better rank."""
    return {k: 1 + sum(1 for w in values.values() if w > v + tie) for k, v in values.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="search_efficiency.py --live", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="8 configs, 3 epochs")
    parser.add_argument(
        "--fraction",
        type=float,
        default=1 / 3,
        help="wall-clock budget of each method as a fraction of the grid's",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table-out", help="keep the grid's learning-curve table here (CSV)")
    args = parser.parse_args(argv)

    import ray
    import torch

    overrides = None
    if args.quick:
        overrides = {
            "model": {"reuse": {"choice": [1, 2]}, "width": {"choice": [0.125, 0.5]}},
            "training": {"max_epochs": 3, "subset": 1500},
        }
    spec = load_space(str(HERE / "search_efficiency.yaml"), overrides)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    pythonpath = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), torch {torch.__version__}, "
        f"ray {ray.__version__}; space {spec.name}: {spec.num_configs} configs, "
        f"{spec.training.max_epochs} epochs, {spec.training.subset} images"
    )
    with tempfile.TemporaryDirectory(prefix="lrunet-bench-") as storage:
        ref = run_method("grid", spec, None, storage, args.seed)
        budget = ref.wall_s * args.fraction
        print(f"grid: {ref.wall_s:.0f} s wall; each method gets {budget:.0f} s")
        table = record(
            ref,
            spec,
            (HERE / "search_efficiency.yaml").read_text(),
            overrides,
            Path(args.table_out or Path(storage, "live_grid.csv")),
        )
        outcomes = [ref] + [run_method(m, spec, budget, storage, args.seed) for m in REPLAYED]
        replay = replayed(table, spec, args.fraction, storage, args.seed)
    ray.shutdown()

    print()
    print(
        f"{'method':<12} {'hypervolume':>12} {'vs grid':>8} {'completed':>10} {'epochs':>7} "
        f"{'compute s':>10} {'vs grid':>8} {'wall s':>7}"
    )
    for o in outcomes:
        print(
            f"{o.method:<12} {o.hypervolume:>12.4g} {o.hypervolume / ref.hypervolume:>8.1%} "
            f"{o.completed:>4}/{o.trials:<5} {o.epochs:>7} {o.compute_s:>10.0f} "
            f"{o.compute_s / ref.compute_s:>8.1%} {o.wall_s:>7.0f}"
        )
    for o in outcomes:
        print(f"\n{o.method} front ({', '.join(spec.metrics)}):")
        for name, *vals in o.front:
            print(f"  {name:<28} " + "  ".join(f"{v:,.2f}" for v in vals))
    live = {o.method: o.hypervolume / ref.hypervolume for o in outcomes[1:]}
    live_rank, replay_rank = ranks(live), ranks(replay)
    print(
        f"\nlive vs replayed on the grid's own table (seed {args.seed}; live: "
        f"{args.fraction:.3g} of the grid's wall clock, replayed: of its recorded compute)"
    )
    print(f"{'method':<14} {'live vs grid':>12} {'rank':>5} {'replayed':>9} {'rank':>5}")
    for m in REPLAYED:
        print(f"{m:<14} {live[m]:>12.1%} {live_rank[m]:>5} {replay[m]:>9.1%} {replay_rank[m]:>5}")
    agree = live_rank == replay_rank
    print(f"rankings {'agree' if agree else 'DIFFER'} (ties: within {TIE:.1%} of the grid's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
