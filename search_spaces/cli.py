"""`launch.py spaces` and `launch.py check-space`: list and validate search spaces.

    python launch.py spaces                      one line per shipped space
    python launch.py spaces -v                   the full summary of each
    python launch.py check-space lru_full        validate a shipped space and summarise it
    python launch.py check-space my.yaml -n 5    ... and show 5 sampled configs with their costs

Errors (a bad file) raise ValueError / FileNotFoundError, which launch.py prints as one line with
exit code 2. Neither command imports Ray or Optuna.
"""

from __future__ import annotations

import argparse
import random

from lrunet.objectives import budget_keys
from lrunet.recipe import split_trial_config
from lrunet.registry import format_name
from search_spaces.loader import list_spaces, load_space
from search_spaces.spec import SearchSpec


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "check-space":
        parser.add_argument("space", help="a shipped space name (e.g. lru_full) or a .yaml path")
        parser.add_argument(
            "-n",
            "--samples",
            type=int,
            default=0,
            metavar="N",
            help="also print N sampled configs and whether each is feasible",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed for --samples")
    else:
        parser.add_argument(
            "-v", "--verbose", action="store_true", help="print the full summary of every space"
        )


def _short(n: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def table(specs: list[SearchSpec]) -> str:
    """One row per space: dataset, dimensions, configs, params and MFLOPs ranges, budgets."""
    header = ("space", "dataset", "dims", "configs", "params", "MFLOPs", "budgets")
    rows = [header]
    for s in specs:
        c, b = s.costs, s.budgets
        keys = budget_keys()
        budgets = [f"{keys[k]}<={_short(v)}" for k, v in b.limits.items()]
        rows.append(
            (
                s.name,
                s.dataset,
                str(s.dimensions),
                "continuous" if s.num_configs is None else f"{s.num_configs:,}",
                f"{_short(c.params[0])}-{_short(c.params[1])}",
                f"{c.mflops[0]:.3g}-{c.mflops[1]:.4g}",
                " ".join(x for x in budgets if x) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def samples(spec: SearchSpec, n: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = [f"  {n} sampled configs (seed {seed}):"]
    for _ in range(n):
        flat = spec.sample(rng)
        reason = spec.check_budget(flat)
        if reason is not None:
            lines.append(f"    infeasible  {reason}")
            continue
        c = spec.counts(flat)
        name = format_name(split_trial_config(flat, **spec.geometry)[0])
        lines.append(f"    ok          {name}: {c.params:,} params, {c.mflops:.2f} MFLOPs")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.command == "check-space":
        spec = load_space(args.space)
        print(spec.summary())
        if args.samples > 0:
            print(samples(spec, args.samples, args.seed))
        print(f"ok: {spec.path} is a valid search space")
        return 0
    specs = [load_space(name) for name in list_spaces()]
    if getattr(args, "verbose", False):
        print("\n\n".join(s.summary() for s in specs))
    else:
        print(table(specs))
        print("\ndetails: python launch.py check-space NAME   (or launch.py spaces -v)")
    return 0
