"""The Pareto front of a search, computed from MLflow and written back to it.

Only trials that reached the full epoch budget (`status=completed`) enter the front: an early-
stopped trial's low-budget accuracy is never compared with full-budget ones. Front members get the
tags `pareto=true` and `pareto_rank=1` (other completed trials `pareto=false` and their non-
dominated sorting layer), so `tags.pareto = 'true'` in the MLflow UI shows exactly the front. The
parent run gets `pareto_front.csv`, the same table as an MLflow table (`pareto_front.json`),
`pareto.png` (all trials, early-stopped ones marked, the front highlighted and labelled), the
`hypervolume` metric against the space's reference point and `hypervolume_over_time.png`.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import pareto
from experiments.tracking import (
    COMPLETED,
    FAILED,
    INFEASIBLE,
    STATUS_TAG,
    STOPPED_EARLY,
    find_experiment,
    latest_parent_run,
    trial_runs,
)
from lrunet import metrics as M


@dataclass
class TrialRow:
    run_id: str
    arch: str
    status: str
    metrics: dict[str, float]
    end_time: int
    stopped_at_epoch: int | None = None


@dataclass
class Front:
    metrics: list[str]
    modes: list[str]
    reference_point: list[float]
    rows: list[TrialRow]  # every trial of the search
    members: list[TrialRow] = field(default_factory=list)  # the front, best first objective first
    ranks: dict[str, int] = field(default_factory=dict)  # run_id -> layer, completed trials
    hypervolume: float = 0.0
    hv_over_time: list[tuple[int, float]] = field(default_factory=list)

    @property
    def completed(self) -> list[TrialRow]:
        return [r for r in self.rows if r.status == COMPLETED and _has(r, self.metrics)]

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "arch": r.arch,
                **{m: r.metrics[m] for m in self.metrics},
                "pareto_rank": self.ranks.get(r.run_id),
                "run_id": r.run_id,
            }
            for r in self.members
        ]


def _has(row: TrialRow, metrics: list[str]) -> bool:
    return all(m in row.metrics and math.isfinite(row.metrics[m]) for m in metrics)


def rows_from_runs(runs) -> list[TrialRow]:
    out = []
    for run in runs:
        tags = run.data.tags
        stop = tags.get("stopped_at_epoch")
        out.append(
            TrialRow(
                run.info.run_id,
                tags.get("arch", run.info.run_name or "?"),
                tags.get(STATUS_TAG, "unknown"),
                dict(run.data.metrics),
                run.info.end_time or run.info.start_time or 0,
                int(stop) if stop and stop.isdigit() else None,
            )
        )
    return out


def compute_front(
    rows: list[TrialRow], metrics: list[str], modes: list[str], reference_point: list[float]
) -> Front:
    front = Front(list(metrics), list(modes), list(reference_point), rows)
    done = front.completed
    if not done:
        return front
    points = [[r.metrics[m] for m in metrics] for r in done]
    ranks = pareto.pareto_ranks(points, modes)
    front.ranks = {r.run_id: int(k) for r, k in zip(done, ranks)}
    members = [r for r, k in zip(done, ranks) if k == 1]
    first = metrics[0]
    members.sort(key=lambda r: r.metrics[first], reverse=modes[0] == "max")
    front.members = members
    front.hypervolume = pareto.hypervolume(points, modes, reference_point)
    order = sorted(range(len(done)), key=lambda i: done[i].end_time)
    hv = pareto.hypervolume_over_time([points[i] for i in order], modes, reference_point)
    front.hv_over_time = [(done[i].end_time, v) for i, v in zip(order, hv)]
    return front


def load_front(
    client,
    experiment_name: str,
    spec_objectives: tuple[list[str], list[str], list[float]] | None = None,
    parent_run_id: str | None = None,
) -> tuple[Front, Any]:
    """The front of an experiment's newest search (or of `parent_run_id`), from MLflow.

    Objectives and reference point come from `spec_objectives` or from the parent run's params.
    """
    exp = find_experiment(client, experiment_name)
    parent = (
        client.get_run(parent_run_id)
        if parent_run_id
        else latest_parent_run(client, exp.experiment_id)
    )
    if parent is None:
        raise ValueError(
            f"MLflow experiment {experiment_name!r} has no search run; start one with "
            "'python launch.py --space NAME'"
        )
    if spec_objectives is None:
        p = parent.data.params
        try:
            spec_objectives = (
                p["objectives"].split(","),
                p["modes"].split(","),
                [float(x) for x in p["reference_point"].split(",")],
            )
        except KeyError as e:
            raise ValueError(
                f"parent run {parent.info.run_id} lacks param {e}; it was not made by launch.py"
            ) from None
    rows = rows_from_runs(trial_runs(client, parent.info.run_id, exp.experiment_id))
    return compute_front(rows, *spec_objectives), parent


def log_front(client, parent_run_id: str, front: Front) -> None:
    """Tag the trial runs and attach the front's table, plots and hypervolume to the parent."""
    for r in front.completed:
        rank = front.ranks.get(r.run_id)
        client.set_tag(r.run_id, "pareto", "true" if rank == 1 else "false")
        client.set_tag(r.run_id, "pareto_rank", str(rank))
    client.log_metric(parent_run_id, "hypervolume", front.hypervolume)
    client.log_metric(parent_run_id, "front_size", len(front.members))
    client.log_metric(parent_run_id, "trials_completed", len(front.completed))
    for status in (STOPPED_EARLY, INFEASIBLE, FAILED):
        client.log_metric(
            parent_run_id, f"trials_{status}", sum(r.status == status for r in front.rows)
        )
    records = front.to_records()
    client.log_text(parent_run_id, front_csv(front), "pareto_front.csv")
    if records:
        import pandas as pd

        client.log_table(parent_run_id, pd.DataFrame(records), "pareto_front.json")
    with tempfile.TemporaryDirectory() as d:
        plot_front(front, Path(d) / "pareto.png")
        client.log_artifact(parent_run_id, str(Path(d) / "pareto.png"))
        plot_hv(front, Path(d) / "hypervolume_over_time.png")
        client.log_artifact(parent_run_id, str(Path(d) / "hypervolume_over_time.png"))


def front_csv(front: Front) -> str:
    buf = io.StringIO()
    cols = ["arch", *front.metrics, "pareto_rank", "run_id"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(front.to_records())
    return buf.getvalue()


def _fmt(metric: str, v: float) -> str:
    if metric in (M.PARAMS, M.CONV_PARAMS, M.MACS):
        return f"{int(v):,}"
    return f"{v:.2f}"


def front_table(front: Front) -> str:
    """The front as an aligned text table for the terminal."""
    head = ["architecture", *front.metrics]
    body = [[r.arch, *(_fmt(m, r.metrics[m]) for m in front.metrics)] for r in front.members]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    out = [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    counts = {
        s: sum(r.status == s for r in front.rows)
        for s in (COMPLETED, STOPPED_EARLY, INFEASIBLE, FAILED)
    }
    out.append(
        f"front: {len(front.members)} of {counts[COMPLETED]} completed trials "
        f"({counts[STOPPED_EARLY]} stopped early, {counts[INFEASIBLE]} infeasible, "
        f"{counts[FAILED]} failed); hypervolume {front.hypervolume:.6g} "
        f"(reference point {front.reference_point})"
    )
    return "\n".join(out)


def plot_front(front: Front, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_m, y_m = (
        (front.metrics[1], front.metrics[0])
        if len(front.metrics) > 1
        else (front.metrics[0], front.metrics[0])
    )
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    groups = [
        (COMPLETED, "completed", "o", "tab:blue"),
        (STOPPED_EARLY, "stopped early (low budget)", "x", "tab:gray"),
    ]
    for status, label, marker, color in groups:
        rows = [r for r in front.rows if r.status == status and _has(r, [x_m, y_m])]
        if rows:
            ax.scatter(
                [r.metrics[x_m] for r in rows],
                [r.metrics[y_m] for r in rows],
                marker=marker,
                color=color,
                label=label,
                alpha=0.7,
            )
    members = sorted(front.members, key=lambda r: r.metrics[x_m])
    if members:
        ax.plot(
            [r.metrics[x_m] for r in members],
            [r.metrics[y_m] for r in members],
            "-o",
            color="tab:red",
            label="Pareto front",
            drawstyle="steps-post" if len(front.metrics) == 2 else "default",
            zorder=3,
        )
        for r in members:
            ax.annotate(
                r.arch,
                (r.metrics[x_m], r.metrics[y_m]),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    ax.set_xlabel(x_m)
    ax.set_ylabel(y_m)
    ax.set_title(
        f"{y_m} vs {x_m}: front of {len(front.members)}, hypervolume {front.hypervolume:.4g}"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_hv(front: Front, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if front.hv_over_time:
        t0 = min(t for t, _ in front.hv_over_time)
        ax.step(
            [(t - t0) / 60000 for t, _ in front.hv_over_time],
            [v for _, v in front.hv_over_time],
            where="post",
            marker="o",
        )
    ax.set_xlabel("minutes since the first completed trial")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the completed trials over time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
