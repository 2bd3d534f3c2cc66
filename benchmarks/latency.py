"""How stable `lrunet.latency`'s measurement is, and what it costs a trial.

For each architecture, target, clock (`lrunet.latency.CLOCKS`: wall, or cpu: the calling
thread's CPU time) and condition, the target is set up once (torch: nothing; ort-cpu: the ONNX
export and an InferenceSession, as a trial pays it) and the measurement is then repeated
`--repeats` times; the conditions are the machine as it is ("idle"), then the machine
with a CPU load generator this script starts itself ("loaded": one busy-loop process per core,
killed by pid when the condition is over). Printed per row: the median of the R medians, their
coefficient of variation (the figure the stopping rule has to keep small), the largest change
between two measurements in a row (the issue's "agree within 10 %"), the median IQR, how many
runs converged before the cap, and the cost: the set-up once, then seconds per measurement. A
trial pays the set-up plus one measurement at batch 1 and one at the space's batch size
(`lrunet.latency.measure_config`).

    python benchmarks/latency.py           # 4 architectures x cpu1, ort-cpu; ~45 min loaded
    python benchmarks/latency.py --models 5-LruNet-0.5x --targets cpu1 --repeats 3   # ~30 s

The machine is also whatever else runs on it: the load average is printed before and after each
row, so "idle" means "without this script's load", stated with the load seen.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_name, load  # noqa: E402

DEFAULT_MODELS = "14-LruNet-1x,5-LruNet-0.5x,2.2.2.2-DACNN-res64d-rot-b,MobileNetV2-0.25x"


class BusyLoad:
    """`procs` busy-loop Python processes for the duration of a `with` block."""

    def __init__(self, procs: int) -> None:
        self.procs = procs
        self.running: list[subprocess.Popen] = []

    def __enter__(self) -> BusyLoad:
        for _ in range(self.procs):
            self.running.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.5)  # let them reach the run queue before anything is timed
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.running:
            p.kill()
        for p in self.running:
            p.wait()
        self.running.clear()


def row(
    name: str, target: str, clock: str, condition: str, runs: list, setup_s: float, seen: str
) -> dict:
    """The figures of R measurements (lrunet.latency.Latency) of one architecture/target."""
    medians = [r.median_ms for r in runs]
    mean = statistics.fmean(medians)
    cv = statistics.pstdev(medians) / mean if len(medians) > 1 else 0.0
    steps = [abs(b - a) / min(a, b) for a, b in zip(medians, medians[1:])]
    return {
        "model": name,
        "target": target,
        "clock": clock,
        "condition": condition,
        "median_ms": statistics.median(medians),
        "cv_pct": 100 * cv,
        "max_step_pct": 100 * max(steps, default=0.0),
        "iqr_ms": statistics.median(r.iqr_ms for r in runs),
        "stable": f"{sum(r.stable for r in runs)}/{len(runs)}",
        "setup_s": setup_s,
        "measure_s": statistics.median(r.seconds for r in runs),
        "load": seen,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated names")
    parser.add_argument("--targets", default="cpu1,ort-cpu", help="comma-separated targets")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per condition")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument(
        "--load-procs", type=int, default=os.cpu_count() or 1, help="busy loops when loaded"
    )
    parser.add_argument("--conditions", default="idle,loaded", help="idle, loaded or both")
    parser.add_argument(
        "--clocks", default="wall,cpu", help="wall and/or cpu (lrunet.latency.CLOCKS)"
    )
    args = parser.parse_args(argv)

    import torch

    from lrunet import latency as L
    from lrunet.datasets import DATASETS
    from lrunet.registry import build_model, parse_name

    targets = args.targets.split(",")
    conditions = args.conditions.split(",")
    clocks = args.clocks.split(",")
    if not set(clocks) <= set(L.CLOCKS):
        raise SystemExit(f"--clocks: choose from {', '.join(L.CLOCKS)}")
    if not set(targets) <= set(L.TARGETS):
        raise SystemExit(f"--targets: choose from {', '.join(L.TARGETS)}")
    if not set(conditions) <= {"idle", "loaded"} or args.repeats < 2:
        raise SystemExit("--conditions: idle and/or loaded; --repeats: at least 2")
    geometry = DATASETS[args.dataset].geometry
    cfgs = [parse_name(n, **geometry) for n in args.models.split(",")]

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}; "
        f"load average at start: {load()}"
    )
    print(
        f"rule: warm-up {L.WARMUP_CALLS} calls/{L.WARMUP_SECONDS}s, samples of ~"
        f"{L.SAMPLE_SECONDS * 1e3:g} ms, blocks of {L.BLOCK}, >= {L.MIN_SAMPLES} samples, stop "
        f"at < {L.TOLERANCE:.0%} change over {L.STABLE_BLOCKS} blocks or "
        f"{L.DEFAULT_MAX_SECONDS:g} s; batch {args.batch_size}, {args.repeats} repeats; "
        f"loaded = {args.load_procs} busy-loop processes"
    )
    rows = []
    for cfg in cfgs:
        torch.manual_seed(0)
        model = build_model(cfg)
        shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
        for target, clock in [(t, c) for t in targets for c in clocks]:
            for condition in conditions:
                # one more run than the repeats: its seconds include the set-up (for ort-cpu the
                # export, under this condition's load), so it is not one of the R
                before = load()
                sizes = [args.batch_size] * (args.repeats + 1)
                if condition == "loaded":
                    with BusyLoad(args.load_procs):
                        runs = L.measure_batches(model, shape, target, sizes, clock=clock)
                else:
                    runs = L.measure_batches(model, shape, target, sizes, clock=clock)
                setup = runs[0].seconds - statistics.median(r.seconds for r in runs[1:])
                seen = f"{before} -> {load()}"
                rows.append(
                    row(cfg.name, target, clock, condition, runs[1:], max(setup, 0.0), seen)
                )
                r = rows[-1]
                print(
                    f"  {r['model']:<28} {target:<8} {clock:<5} {condition:<7} "
                    f"{r['median_ms']:9.3f} ms  "
                    f"CV {r['cv_pct']:5.1f} %  max step {r['max_step_pct']:5.1f} %  "
                    f"stable {r['stable']}  ({r['measure_s']:.1f} s each)",
                    flush=True,
                )

    print()
    print(
        "| model | target | clock | condition | median ms | CV of medians | largest step | IQR ms "
        "| stable | set-up s | s per measurement | load (1/5/15 min) before -> after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['target']} | {r['clock']} | {r['condition']} | "
            f"{r['median_ms']:.3f} | "
            f"{r['cv_pct']:.1f} % | {r['max_step_pct']:.1f} % | {r['iqr_ms']:.3f} | "
            f"{r['stable']} | {r['setup_s']:.1f} | {r['measure_s']:.1f} | {r['load']} |"
        )
    print(f"\nload average at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
