"""Search efficiency on a recorded learning-curve table: which searcher + scheduler buys the best
front for the compute it spends?

Every search replays `benchmarks/tables/fmnist_lru_dacnn.csv` (60 real Fashion-MNIST configs x
10 epochs, `launch.py record`) through the real Ray Tune loop, our searchers and schedulers and
the replay trainable (`benchmarks/replay_runs.py`), one trial at a time on one local Ray, until
half of the grid's compute (the sum of the recorded epoch seconds of every epoch reported) is
spent or the searcher has nothing left. Methods: FIFO + random, ASHA on accuracy + random,
MO-ASHA + random, NSGA-II + MO-ASHA, TPE + MO-ASHA, and the peer, Syne Tune 0.16's MOASHA
through its own simulator (`benchmarks/syne_peer.py`; optional extra `[bench]`: skipped, saying
why, when absent). Seeds are paired: seed s gives every random-search method the same shuffled
grid, and the Optuna samplers that seed. Hypervolumes are normalised to the full table's front
(two views: `benchmarks/search_report.py`) and read at 1/10, 1/4 and 1/2 of the grid's compute.

Before the comparison it checks the simulator: FIFO given the whole grid's compute scores exactly
1 in both views, and MO-ASHA with accuracy as its only objective takes Ray's ASHA's decisions on
the same seeded stream. It prints the Spearman correlation of each epoch's accuracy with the last.

    python benchmarks/search_efficiency.py --quick     # 3 seeds
    python benchmarks/search_efficiency.py             # 10 seeds
    python benchmarks/search_efficiency.py --live      # the old live check on real training

`--methods ... moasha-epsnet+random` adds MO-ASHA with epsilon-net ties (benchmarks/RESULTS.md §8
has the figures of the full run, the command and the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import search_report as R  # noqa: E402
from benchmarks.replay_runs import METHODS, VARIANTS, Settings, run_ray  # noqa: E402

TABLE = ROOT / "benchmarks" / "tables" / "fmnist_lru_dacnn.csv"
SHARES = (0.1, 0.25, 0.5)
OURS = ("moasha+random", "moasha-pause+random", "moasha+nsga2", "moasha+tpe", *VARIANTS)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--live", action="store_true", help="the live check (real training) instead")
    p.add_argument("--table", default=str(TABLE), help="a table written by launch.py record")
    p.add_argument("--seeds", type=int, default=10, help="seeds per method (default 10)")
    p.add_argument("--quick", action="store_true", help="3 seeds")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--grace", type=int, default=1, help="first rung, in epochs (default 1)")
    p.add_argument("--reduction-factor", type=float, default=3.0)
    p.add_argument("--methods", nargs="+", default=[*METHODS, "syne-tune"])
    p.add_argument("--no-checks", action="store_true", help="skip the simulator checks")
    p.add_argument("--csv", default=str(ROOT / "benchmarks" / "search_efficiency_seeds.csv"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "search_efficiency.png"))
    p.add_argument("--logs", default=None, help="also write every search's reports (JSON)")
    return p


def check_args(args: argparse.Namespace, table) -> Settings:
    """Settings for the searches; ValueError for arguments that cannot work, before compute."""
    unknown = [m for m in args.methods if m not in (*METHODS, *VARIANTS, "syne-tune")]
    if unknown:
        names = ", ".join((*METHODS, *VARIANTS, "syne-tune"))
        raise ValueError(f"--methods {unknown}: choose from {names}")
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: need at least 1 (10 or more to compare)")
    if not 1 <= args.grace < table.epochs:
        raise ValueError(
            f"--grace {args.grace}: the first rung must be 1..{table.epochs - 1} epochs "
            f"(the table holds {table.epochs})"
        )
    if not args.reduction_factor > 1:
        raise ValueError(f"--reduction-factor {args.reduction_factor}: must be > 1 (e.g. 3)")
    fr = R.frame(table, table.space().reference_point, table.epochs)
    return Settings(args.grace, args.reduction_factor, table.epochs, max(SHARES) * fr.grid_compute)


def simulator_checks(table, spec, s: Settings, fr: R.Frame, storage: str) -> list[str]:
    """FIFO with the whole grid as budget -> normalised HV 1; one-objective MO-ASHA = ASHA."""
    from dataclasses import replace

    from lrunet import metrics as M

    whole = replace(s, budget_s=fr.grid_compute * 1.001)
    fifo = run_ray("fifo+random", table, spec, 0, whole, storage)
    hv = {v: x[-1] for v, x in R.hv_at(fifo, fr, [1.0]).items()}
    lines = [
        f"check: FIFO over the whole grid completed {len(fifo.completed(s.max_t))}/"
        f"{len(table.configs)} configs, normalised HV platform {hv['platform']!r}, "
        f"tight {hv['tight']!r} (must be exactly 1)"
    ]
    if any(abs(v - 1.0) > 1e-12 for v in hv.values()):
        raise RuntimeError("simulator check failed: " + lines[0])
    asha = run_ray("asha(acc)+random", table, spec, 0, s, storage)
    mo1 = run_ray("moasha+random", table, spec, 0, s, storage, moasha_metrics=[M.VAL_ACC])
    same = asha.epochs_per_trial() == mo1.epochs_per_trial()
    lines.append(
        f"check: MO-ASHA on accuracy alone vs Ray's ASHA, seed 0: {len(asha.epochs_per_trial())} "
        f"trials, epochs reached per trial {'identical' if same else 'DIFFERENT'}"
    )
    if not same:
        raise RuntimeError("simulator check failed: " + lines[-1])
    return lines


def run_all(args, table, s: Settings, fr: R.Frame) -> dict[str, list]:
    """Every method x seed; the peer too when Syne Tune is installed."""
    import ray

    from benchmarks import syne_peer

    spec = table.space()
    logs: dict[str, list] = {}
    seeds = range(args.first_seed, args.first_seed + (3 if args.quick else args.seeds))
    ours = [m for m in args.methods if m in METHODS + VARIANTS]
    peer = "syne-tune" in args.methods
    if peer and (why := syne_peer.available()):
        print(f"skipping Syne Tune's MOASHA: {why}")
        peer = False
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    mine = not ray.is_initialized()  # a caller's Ray (the tests') is used as it is
    if mine:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
        )
    try:
        with tempfile.TemporaryDirectory(prefix="lrunet-replay-bench-") as storage:
            if not args.no_checks:
                for line in simulator_checks(table, spec, s, fr, storage):
                    print(line, flush=True)
            for seed in seeds:
                t0 = time.perf_counter()
                for m in ours:
                    logs.setdefault(m, []).append(run_ray(m, table, spec, seed, s, storage))
                if peer:
                    from dataclasses import replace

                    # its simulated clock also counts its own loop's time: stop late, cut here
                    late = replace(s, budget_s=2 * s.budget_s)
                    logs.setdefault(syne_peer.METHOD, []).append(
                        syne_peer.run_syne(table, seed, late)
                    )
                print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        if mine:
            ray.shutdown()
    return logs


def per_seed_rows(logs: dict[str, list], fr: R.Frame) -> list[dict]:
    rows = []
    for m, ls in logs.items():
        for log in ls:
            hv = R.hv_at(log, fr, SHARES)
            for i, share in enumerate(SHARES):
                done = [c for c, *_ in log.completed(fr.max_t) if c <= share * fr.grid_compute]
                rows.append(
                    {
                        "method": m,
                        "seed": log.seed,
                        "share": share,
                        "hv_platform": round(hv["platform"][i], 6),
                        "hv_tight": round(hv["tight"][i], 6),
                        "completed": len(done),
                        "distinct_started": R.distinct_at(log, fr, share),
                        "trials": log.trials(),
                        "compute_share": round(log.compute / fr.grid_compute, 4),
                        "wall_s": round(log.wall_s, 2),
                    }
                )
    return rows


def goal_lines(logs: dict[str, list], fr: R.Frame, view: str = "platform") -> list[str]:
    """The README's goal, per MO-ASHA method of ours, in one hypervolume view."""
    mean = {}
    for m, ls in logs.items():
        per_seed = [R.hv_at(x, fr, SHARES)[view] for x in ls]
        mean[m] = [R.mean_se([v[i] for v in per_seed])[0] for i in range(len(SHARES))]
    peers = [m for m in mean if m not in OURS]
    out = []
    for m in (m for m in OURS if m in mean):
        above = all(mean[m][i] >= mean[p][i] for p in peers for i in range(len(SHARES)))
        quarter = mean[m][SHARES.index(0.25)]
        out.append(
            f"goal ({view} view), {m}: at or above every peer ({', '.join(peers)}) at all "
            f"three budgets: {'yes' if above else 'no'}; {quarter:.4f} at 1/4 (goal >= 0.95): "
            f"{'yes' if quarter >= 0.95 else 'no'}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--live" in argv:
        from benchmarks import search_efficiency_live

        return search_efficiency_live.main([a for a in argv if a != "--live"])
    args = get_args_parser().parse_args(argv)
    import ray

    from experiments.curve_table import load_table

    table = load_table(args.table)
    s = check_args(args, table)
    fr = R.frame(table, table.space().reference_point, s.max_t)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, python {platform.python_version()}, "
        f"ray {ray.__version__}; table {table.path.name}: {len(table.configs)} configs x "
        f"{table.epochs} epochs, grid compute {fr.grid_compute:,.0f} s; rungs "
        f"grace {s.grace}, reduction factor {s.reduction_factor:g}; budget {s.budget_s:,.0f} s"
    )
    rho = table.rank_correlation()
    corr = ", ".join(f"e{e + 1} {r:.2f}" for e, r in enumerate(rho))
    print(f"Spearman(val_acc at epoch e, at the last epoch): {corr}")
    t0 = time.perf_counter()
    logs = run_all(args, table, s, fr)
    wall = time.perf_counter() - t0
    rows = per_seed_rows(logs, fr)
    R.write_csv(Path(args.csv), rows)
    if args.logs:
        Path(args.logs).write_text(
            json.dumps(
                {m: [{"seed": x.seed, "reports": x.reports} for x in ls] for m, ls in logs.items()}
            )
        )
    n = len(next(iter(logs.values())))
    title = (
        f"{table.path.name}: {len(table.configs)} configs x {table.epochs} epochs, "
        f"{n} seeds, grace {s.grace}, rf {s.reduction_factor:g}"
    )
    R.plot(logs, fr, Path(args.plot), title)
    for view in R.VIEWS:
        print(f"\nnormalised hypervolume, {view} view (mean +- SE over {n} seeds):")
        print("\n".join(R.summary_table(logs, fr, SHARES, view, "moasha+random")))
    print("\nper method (mean over seeds): trials, distinct configs by 1/4 and 1/2, compute used")
    for m, ls in logs.items():
        trials = sum(x.trials() for x in ls) / len(ls)
        d4 = sum(R.distinct_at(x, fr, 0.25) for x in ls) / len(ls)
        d2 = sum(R.distinct_at(x, fr, 0.5) for x in ls) / len(ls)
        used = sum(min(x.compute, s.budget_s) for x in ls) / len(ls) / fr.grid_compute
        print(f"  {m:<18} {trials:6.1f} trials, {d4:5.1f} / {d2:5.1f} distinct, {used:.3f}")
    if (peer := logs.get("syne-tune moasha")) is not None:
        from benchmarks.syne_peer import audit

        total: dict[str, int] = {}
        for log in peer:
            for k, v in audit(log, s).items():
                total[k] = total.get(k, 0) + v
        print(
            f"Syne Tune's rung decisions: its ordering-read-as-ranks rule reproduces "
            f"{total['matched']} of {total['decisions']}; of the {total['compared']} with a trial "
            f"recorded at the rung, {total['differ']} differ from the newcomer's own place in "
            f"that ordering ({total['stopped_kept']} stopped that it keeps, "
            f"{total['kept_stopped']} kept that it stops)"
        )
    print()
    for view in R.VIEWS:
        print("\n".join(goal_lines(logs, fr, view)))
    print(f"\nwall {wall:.0f} s; per-seed numbers in {args.csv}, plot in {args.plot}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 is quiet with the old output
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
