"""The front as tables: CSV files (`front_csv`, `front_by_family_csv`, `who_wins_csv`), aligned
text for the terminal (`front_table`, `family_fronts_table`, `who_wins_table`) and markdown
(`who_wins_markdown`), plus `si_label`, the SI-suffixed count shared with the plots.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from experiments.front import Front, TrialRow, has_metrics
from experiments.tracking import COMPLETED, FAILED, INFEASIBLE, STOPPED_EARLY
from experiments.who_wins import Band, who_wins_records
from lrunet import metrics as M
from lrunet.objectives import get_objective, list_objectives
from lrunet.registry import FAMILY_KEY


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
    if metric in list_objectives():
        return get_objective(metric).format(v)
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
