"""The numbers of `benchmarks/search_efficiency.py`: normalised hypervolume of a search's
trajectory at shares of the grid's compute, mean and standard error over seeds, differences
paired by seed, the per-seed CSV, the plot with bands.

Two views of the same fronts (objectives: validation accuracy, max; parameters, min):

* `platform`: the space's own reference point (what the platform's front reports; for the
  shipped table (0 %, 1.1 x the largest model's parameters)), normalised by the hypervolume of
  the full table's front (every configuration at the full budget).
* `tight`: parameters on a log10 scale and the reference at the full front's nadir widened by
  10 % of the front's range in each objective, normalised the same way. In the platform view
  the single smallest model holds most of the volume, so every method scores near 1 and
  differences shrink; the tight view weighs every member of the front.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.replay_runs import Trajectory
from experiments import pareto
from lrunet import metrics as M

VIEWS = ("platform", "tight")
MODES = ["max", "min"]


@dataclass(frozen=True)
class Frame:
    """What normalises a table's hypervolumes: its compute and its full front in both views."""

    grid_compute: float
    reference: dict[str, tuple[float, float]]
    full_hv: dict[str, float]
    max_t: int

    def transform(self, view: str, acc: float, params: float) -> tuple[float, float]:
        return (acc, math.log10(params)) if view == "tight" else (acc, params)


def frame(table, reference_point: Sequence[float], max_t: int) -> Frame:
    """The normalising frame of `table` searched to `max_t` epochs."""
    compute = sum(
        float(r[M.EPOCH_SECONDS]) for i in range(len(table.configs)) for r in table.curve(i)
    )
    final = np.array(
        [
            (table.curve(i)[max_t - 1][M.VAL_ACC], table.curve(i)[max_t - 1][M.PARAMS])
            for i in range(len(table.configs))
        ],
        dtype=float,
    )
    front = final[pareto.pareto_front_mask(final, MODES)]
    logged = np.column_stack([front[:, 0], np.log10(front[:, 1])])
    span = logged.max(axis=0) - logged.min(axis=0)
    span[span == 0] = 1.0
    tight = (logged[:, 0].min() - 0.1 * span[0], logged[:, 1].max() + 0.1 * span[1])
    reference = {"platform": tuple(float(v) for v in reference_point), "tight": tight}
    full = {
        "platform": pareto.hypervolume(final, MODES, reference["platform"]),
        "tight": pareto.hypervolume(
            np.column_stack([final[:, 0], np.log10(final[:, 1])]), MODES, tight
        ),
    }
    if not all(v > 0 for v in full.values()):
        raise ValueError(f"{table.path}: the full front has no hypervolume; check the table")
    return Frame(compute, reference, full, max_t)


def hv_at(log: Trajectory, fr: Frame, shares: Sequence[float]) -> dict[str, list[float]]:
    """Normalised hypervolume of the trials completed within each share of the grid's compute."""
    done = log.completed(fr.max_t)
    out: dict[str, list[float]] = {}
    for view in VIEWS:
        points = [fr.transform(view, acc, p) for _, _, acc, p in done]
        over = pareto.hypervolume_over_time(points, MODES, fr.reference[view]) if points else []
        at = [c for c, _, _, _ in done]
        values = []
        for share in shares:
            k = int(np.searchsorted(at, share * fr.grid_compute * (1 + 1e-12), side="right"))
            values.append(over[k - 1] / fr.full_hv[view] if k else 0.0)
        out[view] = values
    return out


def distinct_at(log: Trajectory, fr: Frame, share: float) -> int:
    """How many distinct configurations the search had started within `share` of compute."""
    return len({cid for c, cid, e, _, _ in log.reports if e == 1 and c <= share * fr.grid_compute})


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def write_csv(path: Path, rows: list[dict]) -> None:
    """Per seed, method and budget share: both hypervolumes and what the search did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def summary_table(
    logs: dict[str, list[Trajectory]],
    fr: Frame,
    shares: Sequence[float],
    view: str,
    baseline: str,
) -> list[str]:
    """Markdown rows: mean +- SE per method and share, then the paired difference to
    `baseline` (mean +- SE over seeds, and that mean in standard errors)."""
    head = " | ".join(f"{_share(s)} of the grid's compute" for s in shares)
    lines = [f"| method | {head} |", "|---" * (len(shares) + 1) + "|"]
    hv = {m: [hv_at(log, fr, shares)[view] for log in ls] for m, ls in logs.items()}
    for m, per_seed in hv.items():
        cells = [_pm(*mean_se([v[i] for v in per_seed])) for i in range(len(shares))]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if baseline in hv:
        lines.append(f"| *paired: method minus {baseline}* |" + " |" * len(shares))
        base = {log.seed: v for log, v in zip(logs[baseline], hv[baseline], strict=True)}
        for m, per_seed in hv.items():
            if m == baseline:
                continue
            cells = []
            for i in range(len(shares)):
                d = [v[i] - base[log.seed][i] for log, v in zip(logs[m], per_seed, strict=True)]
                mu, se = mean_se(d)
                z = f"{mu / se:+.1f} SE" if se and se > 0 else "="
                cells.append(f"{mu:+.4f} +- {se:.4f} ({z})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _share(s: float) -> str:
    inv = 1 / s
    return f"1/{round(inv)}" if abs(inv - round(inv)) < 1e-9 else f"{s:.2f}"


def _pm(mu: float, se: float) -> str:
    return f"{mu:.4f} +- {se:.4f}" if math.isfinite(se) else f"{mu:.4f}"


def plot(logs: dict[str, list[Trajectory]], fr: Frame, path: Path, title: str) -> None:
    """Mean normalised hypervolume against the share of the grid's compute, +- 1 SE bands,
    one panel per view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0.0, 0.5, 101)
    fig, axes = plt.subplots(1, len(VIEWS), figsize=(12, 4.5), constrained_layout=True)
    for ax, view in zip(axes, VIEWS, strict=True):
        for m, ls in logs.items():
            curves = np.array([hv_at(log, fr, grid)[view] for log in ls])
            mu = curves.mean(axis=0)
            se = curves.std(axis=0, ddof=1) / math.sqrt(len(ls)) if len(ls) > 1 else 0 * mu
            (line,) = ax.plot(grid, mu, label=f"{m} ({len(ls)} seeds)")
            ax.fill_between(grid, mu - se, mu + se, color=line.get_color(), alpha=0.2)
        for s in (0.1, 0.25, 0.5):
            ax.axvline(s, color="grey", lw=0.6, ls=":")
        ax.set_xlim(0, 0.52)
        ax.set_ylim(bottom=0.5 if view == "platform" else 0.0, top=1.01)
        ax.set_xlabel("compute: share of the full grid's recorded epoch seconds")
        ax.set_ylabel(f"normalised hypervolume ({view} view)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
