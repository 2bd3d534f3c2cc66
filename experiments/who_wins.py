"""Who wins where: per band of parameter counts (edges at 1-2-5 x 10^k), the family and
architecture of a search with the best accuracy-like objective, and the best of another family.

Only completed trials with a finite positive `params` metric take part; `who_wins_records` is the
flat form the CSV and the `launch.py pareto --json` output use (`experiments.front_tables`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from experiments.front import TrialRow, family_order, has_metrics
from experiments.tracking import COMPLETED
from lrunet import metrics as M

BAND_STEPS = (1, 2, 5)  # params band edges at 1-2-5 x 10^k


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
