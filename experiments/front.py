"""The Pareto front of a search: its data model, computed from MLflow and written back to it.

Only trials that reached the full epoch budget (`status=completed`) enter the front: an early-
stopped trial's low-budget accuracy is never compared with full-budget ones. Front members get the
tags `pareto=true` and `pareto_rank=1` (other completed trials `pareto=false` and their non-
dominated sorting layer), so `tags.pareto = 'true'` in the MLflow UI shows exactly the front.

A search may mix architecture families (each trial run's `family` tag; runs of older searches
lack it and are LruNets). Besides the overall front, each family has its own front (the non-
dominated set among its own completed trials, `Front.by_family`). "Who wins where" per band of
parameter counts lives in `experiments.who_wins`; the text, CSV and markdown tables in
`experiments.front_tables`; the pictures in `experiments.front_plots`.

The parent run gets (`log_front`) `pareto_front.csv`, the same table as an MLflow table
(`pareto_front.json`), `front_by_family.csv`, `who_wins.csv` and `who_wins.md`, `pareto.png` and
`hypervolume_over_time.png`, and the metrics `hypervolume` (against the space's reference point)
and `hypervolume_normalised` (the same, in the reference box scaled to the unit cube: reference
point 0, ideal corner 1; `experiments.pareto`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
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
from lrunet.objectives import get_objective, list_objectives
from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY

# Best values of maximised metrics that are not search objectives but may head a front read back
# from old runs; an objective's own ideal is declared in `lrunet.objectives`.
IDEAL_MAX = {M.TEST_ACC: 100.0, M.TRAIN_ACC: 100.0}


@dataclass
class TrialRow:
    run_id: str
    arch: str
    status: str
    metrics: dict[str, float]
    end_time: int
    stopped_at_epoch: int | None = None
    family: str = DEFAULT_FAMILY


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
    ideal_point: list[float] | None = None  # None: some maximised objective has no known ideal
    hypervolume_normalised: float = math.nan

    @property
    def completed(self) -> list[TrialRow]:
        return [r for r in self.rows if r.status == COMPLETED and has_metrics(r, self.metrics)]

    def sort_best_first(self, rows: list[TrialRow]) -> list[TrialRow]:
        first = self.metrics[0]
        return sorted(rows, key=lambda r: r.metrics[first], reverse=self.modes[0] == "max")

    def by_family(self) -> dict[str, list[TrialRow]]:
        """Each family's own front: the non-dominated set among its completed trials (same
        objectives and modes), best first objective first; families in `family_order`."""
        groups: dict[str, list[TrialRow]] = {}
        for r in self.completed:
            groups.setdefault(r.family, []).append(r)
        out = {}
        for fam in family_order(groups):
            rows = groups[fam]
            ranks = pareto.pareto_ranks([_point(r, self.metrics) for r in rows], self.modes)
            out[fam] = self.sort_best_first([r for r, k in zip(rows, ranks) if k == 1])
        return out

    def record(self, r: TrialRow) -> dict[str, Any]:
        return {
            "arch": r.arch,
            FAMILY_KEY: r.family,
            **{m: r.metrics[m] for m in self.metrics},
            "pareto_rank": self.ranks.get(r.run_id),  # the layer in the overall sorting
            "run_id": r.run_id,
        }

    def to_records(self) -> list[dict[str, Any]]:
        return [self.record(r) for r in self.members]

    def by_family_records(self) -> list[dict[str, Any]]:
        return [self.record(r) for rows in self.by_family().values() for r in rows]


def has_metrics(row: TrialRow, metrics: list[str]) -> bool:
    """Whether the row holds a finite value of every metric named."""
    return all(m in row.metrics and math.isfinite(row.metrics[m]) for m in metrics)


def _point(row: TrialRow, metrics: list[str]) -> list[float]:
    return [row.metrics[m] for m in metrics]


def family_order(families: Iterable[str]) -> list[str]:
    """Families as the registry lists them: LruNet first, the rest by name."""
    names = set(families)
    return ([DEFAULT_FAMILY] if DEFAULT_FAMILY in names else []) + sorted(names - {DEFAULT_FAMILY})


def ideal_point(metrics: list[str], modes: list[str]) -> list[float] | None:
    """The ideal corner of the objectives (each objective's `ideal` in `lrunet.objectives`:
    100 % accuracy, 0 for a count or a latency); None when one has no known ideal."""
    out = []
    for m, mode in zip(metrics, modes):
        ideal = objective_ideal(m, mode)
        if ideal is None:
            return None
        out.append(ideal)
    return out


def objective_ideal(metric: str, mode: str) -> float | None:
    if metric in list_objectives():
        return get_objective(metric).ideal
    return 0.0 if mode == "min" else IDEAL_MAX.get(metric)


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
                tags.get(FAMILY_KEY) or run.data.params.get(FAMILY_KEY) or DEFAULT_FAMILY,
            )
        )
    return out


def compute_front(
    rows: list[TrialRow], metrics: list[str], modes: list[str], reference_point: list[float]
) -> Front:
    front = Front(list(metrics), list(modes), list(reference_point), rows)
    front.ideal_point = ideal_point(front.metrics, front.modes)
    done = front.completed
    points = [_point(r, metrics) for r in done]
    if front.ideal_point is not None:
        try:
            front.hypervolume_normalised = pareto.normalised_hypervolume(
                points, modes, reference_point, front.ideal_point
            )
        except ValueError:  # a reference point at or past the ideal: no box to scale to
            front.ideal_point = None
    if not done:
        return front
    ranks = pareto.pareto_ranks(points, modes)
    front.ranks = {r.run_id: int(k) for r, k in zip(done, ranks)}
    front.members = front.sort_best_first([r for r, k in zip(done, ranks) if k == 1])
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


# --- MLflow -------------------------------------------------------------------------------------


def log_front(client, parent_run_id: str, front: Front) -> None:
    """Tag the trial runs and attach the front's tables, plots and hypervolumes to the parent."""
    # imported here: these modules import this one (TrialRow, Front)
    from experiments.front_plots import plot_front, plot_hv
    from experiments.front_tables import (
        front_by_family_csv,
        front_csv,
        who_wins_csv,
        who_wins_markdown,
    )
    from experiments.who_wins import who_wins

    for r in front.completed:
        rank = front.ranks.get(r.run_id)
        client.set_tag(r.run_id, "pareto", "true" if rank == 1 else "false")
        client.set_tag(r.run_id, "pareto_rank", str(rank))
    client.log_metric(parent_run_id, "hypervolume", front.hypervolume)
    if front.ideal_point is not None:
        client.log_metric(parent_run_id, "hypervolume_normalised", front.hypervolume_normalised)
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
    client.log_text(parent_run_id, front_by_family_csv(front), "front_by_family.csv")
    bands = who_wins(front.rows, front.metrics, front.modes)
    if bands:
        client.log_text(parent_run_id, who_wins_csv(bands), "who_wins.csv")
    client.log_text(parent_run_id, who_wins_markdown(front, bands), "who_wins.md")
    with tempfile.TemporaryDirectory() as d:
        for name, plot in (("pareto.png", plot_front), ("hypervolume_over_time.png", plot_hv)):
            plot(front, Path(d) / name)
            client.log_artifact(parent_run_id, str(Path(d) / name))
