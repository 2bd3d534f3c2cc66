"""The Pareto front of a search, computed from MLflow and written back to it.

Only trials that reached the full epoch budget (`status=completed`) enter the front: an early-
stopped trial's low-budget accuracy is never compared with full-budget ones. Front members get the
tags `pareto=true` and `pareto_rank=1` (other completed trials `pareto=false` and their non-
dominated sorting layer), so `tags.pareto = 'true'` in the MLflow UI shows exactly the front.

A search may mix architecture families (each trial run's `family` tag; runs of older searches
lack it and are LruNets). Besides the overall front, each family has its own front (the non-
dominated set among its own completed trials) and "who wins where" names, per band of parameter
counts, the family and architecture with the best accuracy-like objective (`who_wins`).

The parent run gets `pareto_front.csv`, the same table as an MLflow table (`pareto_front.json`),
`front_by_family.csv`, `who_wins.csv` and `who_wins.md`, `pareto.png` and
`hypervolume_over_time.png` (`experiments.front_plots`), and the metrics `hypervolume` (against
the space's reference point) and `hypervolume_normalised` (the same, in the reference box scaled
to the unit cube: reference point 0, ideal corner 1; `experiments.pareto`).
"""

from __future__ import annotations

import csv
import io
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
from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY

# The best value a maximised objective can take (accuracies are in percent); a minimised one's
# ideal is 0. Together they are the far corner of the normalised hypervolume's box.
IDEAL_MAX = {M.VAL_ACC: 100.0, M.TEST_ACC: 100.0, M.TRAIN_ACC: 100.0}
BAND_STEPS = (1, 2, 5)  # params band edges at 1-2-5 x 10^k


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
    """The ideal corner of the objectives (100 % accuracy, 0 for a minimised count)."""
    out = []
    for m, mode in zip(metrics, modes):
        if mode == "min":
            out.append(0.0)
        elif m in IDEAL_MAX:
            out.append(IDEAL_MAX[m])
        else:
            return None
    return out


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


# --- who wins where ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """The completed trials whose params lie in [low, high): the best one and the best of
    another family (`runner_up`, None when the band holds one family)."""

    low: float
    high: float
    metric: str
    mode: str
    trials: int
    families: tuple[str, ...]
    winner: TrialRow
    runner_up: TrialRow | None

    @property
    def margin(self) -> float | None:
        """How much better the winner is than the runner-up, in the metric's units (>= 0)."""
        if self.runner_up is None:
            return None
        w, r = self.winner.metrics[self.metric], self.runner_up.metrics[self.metric]
        return w - r if self.mode == "max" else r - w


def winner_objective(metrics: list[str], modes: list[str]) -> tuple[str, str]:
    """The objective that decides a band: the first maximised one (accuracy), else the first."""
    for m, mode in zip(metrics, modes):
        if mode == "max":
            return m, mode
    return metrics[0], modes[0]


def params_band(params: float) -> tuple[float, float]:
    """The band [low, high) holding `params`, edges at 1-2-5 x 10^k (e.g. 200k <= p < 500k)."""
    if not (params > 0 and math.isfinite(params)):
        raise ValueError(f"params must be a positive number to fall in a band; got {params!r}")
    k = math.floor(math.log10(params))
    k += (10.0 ** (k + 1) <= params) - (10.0**k > params)  # log10's rounding near 10^k

    def edge(step: int) -> float:
        return float(step * 10**k) if k >= 0 else step / 10**-k

    edges = [edge(s) for s in BAND_STEPS] + [edge(10)]
    i = max(j for j in range(len(BAND_STEPS)) if edges[j] <= params)
    return edges[i], edges[i + 1]


def who_wins(rows: list[TrialRow], metrics: list[str], modes: list[str]) -> list[Band]:
    """Per params band (only bands holding a completed trial), the family and architecture with
    the best `winner_objective`, and the best trial of any other family. Ties on that objective
    go to the better value of the other objectives in order (fewer params first when params is
    one), then to the family, architecture and run id by name, so the result never depends on
    the order of `rows`. Trials without a finite positive `params` metric are left out."""
    metric, mode = winner_objective(metrics, modes)
    pool = [
        r
        for r in rows
        if r.status == COMPLETED
        and has_metrics(r, [*metrics, M.PARAMS])
        and r.metrics[M.PARAMS] > 0
    ]

    def key(r: TrialRow) -> tuple:
        signed = [-r.metrics[m] if md == "max" else r.metrics[m] for m, md in zip(metrics, modes)]
        first = -r.metrics[metric] if mode == "max" else r.metrics[metric]
        return (first, *signed, r.family, r.arch, r.run_id)

    groups: dict[tuple[float, float], list[TrialRow]] = {}
    for r in pool:
        groups.setdefault(params_band(r.metrics[M.PARAMS]), []).append(r)
    out = []
    for (low, high), members in sorted(groups.items()):
        ranked = sorted(members, key=key)
        winner = ranked[0]
        runner_up = next((r for r in ranked if r.family != winner.family), None)
        families = tuple(family_order(r.family for r in members))
        out.append(Band(low, high, metric, mode, len(members), families, winner, runner_up))
    return out


def who_wins_records(bands: list[Band]) -> list[dict[str, Any]]:
    out = []
    for b in bands:
        rec: dict[str, Any] = {
            "params_low": _num(b.low),
            "params_high": _num(b.high),
            "trials": b.trials,
            "families": ";".join(b.families),
        }
        for who, r in (("winner", b.winner), ("runner_up", b.runner_up)):
            rec[f"{who}_family"] = r.family if r else None
            rec[f"{who}_arch"] = r.arch if r else None
            rec[f"{who}_{b.metric}"] = r.metrics[b.metric] if r else None
            rec[f"{who}_params"] = _num(r.metrics[M.PARAMS]) if r else None
            rec[f"{who}_run_id"] = r.run_id if r else None
        rec["margin"] = b.margin
        out.append(rec)
    return out


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


# --- tables -------------------------------------------------------------------------------------


def _csv(records: list[dict[str, Any]], cols: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    return buf.getvalue()


def front_csv(front: Front) -> str:
    return _csv(front.to_records(), ["arch", FAMILY_KEY, *front.metrics, "pareto_rank", "run_id"])


def front_by_family_csv(front: Front) -> str:
    """Every family's own front; `pareto_rank` is the layer in the overall sorting (1: the
    member is on the overall front too)."""
    cols = [FAMILY_KEY, "arch", *front.metrics, "pareto_rank", "run_id"]
    return _csv(front.by_family_records(), cols)


def who_wins_csv(bands: list[Band]) -> str:
    records = who_wins_records(bands)
    return _csv(records, list(records[0])) if records else ""


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric in (M.PARAMS, M.CONV_PARAMS, M.MACS):
        return f"{int(v):,}"
    return f"{v:.2f}"


def si_label(v: float) -> str:
    """A count with an SI suffix: 200000 -> '200k', 1e6 -> '1M'."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}"


def _text_table(head: list[str], body: list[list[str]], left: Iterable[int] = (0,)) -> list[str]:
    """An aligned table: the columns in `left` flush left, the others (numbers) flush right."""
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    left = set(left)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]


def _members_table(front: Front, rows: list[TrialRow]) -> list[str]:
    head = ["architecture", FAMILY_KEY, *front.metrics]
    body = [[r.arch, r.family, *(_fmt(m, r.metrics[m]) for m in front.metrics)] for r in rows]
    return _text_table(head, body, left=(0, 1))


def hypervolume_line(front: Front) -> str:
    raw = f"hypervolume {front.hypervolume:.6g} (reference point {front.reference_point})"
    if front.ideal_point is None:
        return f"{raw}; normalised: n/a (no ideal corner beyond the reference point known)"
    return (
        f"{raw}; normalised {front.hypervolume_normalised:.4f} "
        f"(reference point -> 0, ideal {front.ideal_point} -> 1)"
    )


def front_table(front: Front, hypervolume: bool = True) -> str:
    """The front as an aligned text table for the terminal, with the trial counts (and the
    hypervolumes unless `hypervolume` is False)."""
    counts = {
        s: sum(r.status == s for r in front.rows)
        for s in (COMPLETED, STOPPED_EARLY, INFEASIBLE, FAILED)
    }
    summary = (
        f"front: {len(front.members)} of {counts[COMPLETED]} completed trials "
        f"({counts[STOPPED_EARLY]} stopped early, {counts[INFEASIBLE]} infeasible, "
        f"{counts[FAILED]} failed)"
    )
    if hypervolume:
        summary += f"; {hypervolume_line(front)}"
    return "\n".join([*_members_table(front, front.members), summary])


def family_fronts_table(front: Front) -> str:
    """Each family's own front, one block per family."""
    done: dict[str, int] = {}
    for r in front.completed:
        done[r.family] = done.get(r.family, 0) + 1
    out: list[str] = []
    for fam, rows in front.by_family().items():
        out += ["", f"{fam}: front of {len(rows)} of its {done[fam]} completed trials"]
        out += _members_table(front, rows)
    return "\n".join(out[1:]) if out else "no completed trials: no family fronts"


WHO_WINS_HEAD = ["params", "trials", "winner", "architecture", "", "runner-up", "architecture", ""]


def _who_wins_body(bands: list[Band]) -> tuple[list[str], list[list[str]]]:
    metric = bands[0].metric
    head = [*WHO_WINS_HEAD, "margin"]
    head[4] = head[7] = metric
    body = []
    for b in bands:
        r = b.runner_up
        body.append(
            [
                f"{si_label(b.low)}-{si_label(b.high)}",
                str(b.trials),
                b.winner.family,
                b.winner.arch,
                _fmt(metric, b.winner.metrics[metric]),
                r.family if r else f"(only {b.winner.family})",
                r.arch if r else "-",
                _fmt(metric, r.metrics[metric] if r else None),
                "tie" if b.margin == 0 else _fmt(metric, b.margin),
            ]
        )
    return head, body


def who_wins_note(front: Front, bands: list[Band]) -> str:
    if bands:
        metric, mode = bands[0].metric, bands[0].mode
        return (
            f"who wins where: best {metric} ({mode}) per params band [low, high), completed "
            f"trials only; margin = winner minus the best of another family"
        )
    if not any(has_metrics(r, [M.PARAMS]) for r in front.completed):
        return "who wins where: skipped, no completed trial reported params"
    return "who wins where: skipped, no completed trial has every objective and params"


def who_wins_table(front: Front, bands: list[Band]) -> str:
    """`who_wins` as an aligned text table, headed by what it shows (or why it is empty)."""
    if not bands:
        return who_wins_note(front, bands)
    head, body = _who_wins_body(bands)
    return "\n".join([who_wins_note(front, bands), *_text_table(head, body, (0, 2, 3, 5, 6))])


def who_wins_markdown(front: Front, bands: list[Band]) -> str:
    if not bands:
        return who_wins_note(front, bands) + "\n"
    head, body = _who_wins_body(bands)
    rows = [head, ["---"] * len(head), *body]
    return (
        "\n".join([who_wins_note(front, bands), "", *("| " + " | ".join(r) + " |" for r in rows)])
        + "\n"
    )


# --- MLflow -------------------------------------------------------------------------------------


def log_front(client, parent_run_id: str, front: Front) -> None:
    """Tag the trial runs and attach the front's tables, plots and hypervolumes to the parent."""
    from experiments.front_plots import plot_front, plot_hv

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
