"""The comparison `launch.py reproduce TABLE` prints and logs: the publication's column beside
the measured one for every count and accuracy the table prints, with the difference, and a plot of
both (accuracy against parameters).

Counts are the platform's analytic ones for the architectures the table's grids train
(`experiments.paper_tables.grid_counts`); a count matches when, printed at the publication's
precision, it prints the same ("131k" for 131,402), and the `exact` column says whether it also
equals the reference code's measured count. Accuracies are the test scores of
`experiments.reproduce_eval` (validation-selected and last checkpoints, the authors' released
checkpoints). Which measured accuracy compares with the paper's is stated under the table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.paper_tables import (
    ACC,
    COUNT_COLUMNS,
    SELECTIONS,
    Row,
    Table,
    count_check,
    measured_count,
)
from experiments.reproduce_eval import ReferenceScore, TrialScore
from lrunet.counting import Counts

COLUMN_TITLES = {"params": "params", "conv_params": "conv params", "mflops": "MFLOPs", ACC: "acc"}


@dataclass
class ReportRow:
    row: Row
    counts: Counts
    trial: TrialScore | None = None
    reference: ReferenceScore | None = None
    notes: list[str] = field(default_factory=list)

    def exact(self, table: Table) -> bool:
        """Every count holds (`experiments.paper_tables.count_check`)."""
        return all(
            count_check(table, self.row, self.counts, c) is not False for c in COUNT_COLUMNS
        )


def _fmt_count(col: str, v: float) -> str:
    return f"{v:.3f}" if col == "mflops" else f"{int(v):,}"


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _signed(v: float, decimals: int = 2) -> str:
    return f"{v:+.{decimals}f}"


def _count_cells(table: Table, r: ReportRow, col: str) -> list[str]:
    got = measured_count(r.counts, col)
    paper = r.row.paper.get(col)
    if paper is None:
        return ["-", _fmt_count(col, got), "-"]
    if table.figure:  # read off a plot: the difference in the plot's unit
        diff = paper.format(got - paper.value)
        return [paper.text, _fmt_count(col, got), diff if diff.startswith("-") else "+" + diff]
    diff = paper.rounded(got) - paper.value
    delta = paper.format(abs(diff))
    return [paper.text, _fmt_count(col, got), ("-" if diff < 0 else "+") + delta]


def comparison_rows(table: Table, rows: list[ReportRow]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the comparison (one list of cells per row)."""
    several = len(table.datasets) > 1
    head = ["row", "dataset"] if several else ["row"]
    counts = [c for c in table.columns if c in COUNT_COLUMNS]
    for c in counts:
        t = COLUMN_TITLES[c]
        head += [f"{t} paper", "ours", "diff"]
    head += ["counts"]
    if ACC in table.columns:
        head += ["acc paper", "test@best-val", "test@last", "diff", "val", "epoch", "ref ckpt"]
    body = []
    for r in rows:
        cells = [r.row.label, r.row.dataset] if several else [r.row.label]
        for c in counts:
            cells += _count_cells(table, r, c)
        cells.append(
            ("exact*" if r.row.paper_differs else "exact") if r.exact(table) else "DIFFERS"
        )
        if ACC in table.columns:
            t, paper = r.trial, r.row.paper.get(ACC)
            best = t.test_best_val if t else None
            diff = "-" if best is None or paper is None else _signed(best - paper.value)
            epoch = "-"
            if t and t.best_epoch is not None:
                epoch = f"{t.best_epoch}/{t.last_epoch}" if t.last_epoch else str(t.best_epoch)
            ref = "-"
            if r.reference is not None:
                ref = _acc(r.reference.test_acc) if r.reference.test_acc is not None else "n/a"
            cells += [
                paper.text if paper else "-",
                _acc(best),
                _acc(t.test_last if t else None),
                diff,
                _acc(t.val_acc if t else None),
                epoch,
                ref,
            ]
        body.append(cells)
    return head, body


def text_table(head: list[str], body: list[list[str]], left: int = 2) -> str:
    """Aligned columns: the first `left` left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def notes(table: Table, rows: list[ReportRow], trained: str | None) -> list[str]:
    """What the numbers are: sources, which accuracy is comparable, what was not measured."""
    out = [f"paper values: experiments/paper_tables.yaml ({table.title}; each row's source there)"]
    exact = sum(r.exact(table) for r in rows)
    counted = (
        "the figure's values are read off a plot: checked against the release code's counts"
        if table.figure
        else "equal to the paper at its printed precision and to the reference code's counts"
    )
    out.append(f"counts: {exact} of {len(rows)} rows exact ({counted})")
    for r in rows:
        for col, why in r.row.paper_differs.items():
            out.append(f"exact* {r.row.label} ({r.row.dataset}) {col}: {why}")
    if ACC not in table.columns:
        return out
    out.append(f"the paper's accuracy is {SELECTIONS[table.selection]}.")
    if table.selection == "test":
        out.append(
            "comparable: test@best-val, the checkpoint picked by validation accuracy and scored "
            "once on the test set, i.e. the paper's procedure without the test-set leak (expect "
            "it at or a little below the paper's); test@last is the last epoch's. The platform "
            "trains on 90 % of the training set (10 % is its validation split)."
        )
    else:
        out.append(
            "comparable: test@best-val; no recipe was published, so these use the platform's "
            "(LruNet's) recipe and are labelled 'platform recipe', not 'paper'."
        )
    if trained:
        out.append(trained)
    refs = [r.reference for r in rows if r.reference is not None]
    for ref in refs:
        if ref.test_acc is None:
            out.append(f"ref ckpt {ref.file}: {ref.note}")
        else:
            where = f"{ref.images:,} {ref.dataset} test images at the reference's geometry"
            out.append(f"ref ckpt {ref.file}: {ref.test_acc:.2f} (measured here on {where})")
    for r in rows:
        for n in r.notes + ([r.trial.note] if r.trial and r.trial.note else []):
            out.append(f"{r.row.label} ({r.row.dataset}): {n}")
    return out


def report_text(table: Table, rows: list[ReportRow], trained: str | None = None) -> str:
    head, body = comparison_rows(table, rows)
    lines = [table.title, "", text_table(head, body, left=2 if len(table.datasets) > 1 else 1)]
    lines.append("")
    lines += [f"  {n}" for n in notes(table, rows, trained)]
    return "\n".join(lines)


def report_csv(table: Table, rows: list[ReportRow]) -> str:
    head, body = comparison_rows(table, rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", *head, "source"])
    for r, cells in zip(rows, body):
        w.writerow([r.row.arch, *cells, r.row.source])
    return buf.getvalue()


def report_figure(table: Table, rows: list[ReportRow]):
    """Accuracy against parameters: the paper's points, the measured ones, a line between."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles: dict[str, Any] = {}
    for r in rows:
        x = measured_count(r.counts, "params")
        paper = r.row.paper.get(ACC)
        px = r.row.paper["params"].value if "params" in r.row.paper else x
        colour = styles.setdefault(r.row.dataset, f"C{len(styles)}")
        if paper is not None:
            ax.scatter([px], [paper.value], facecolors="none", edgecolors=colour, s=50)
            ax.annotate(r.row.label, (px, paper.value), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")  # fmt: skip
        t = r.trial
        if t and t.test_best_val is not None:
            ax.scatter([x], [t.test_best_val], color=colour, s=30)
            if paper is not None:
                ax.plot([px, x], [paper.value, t.test_best_val], color=colour, lw=0.6, alpha=0.5)
        if t and t.test_last is not None:
            ax.scatter([x], [t.test_last], color=colour, marker="x", s=25)
        if r.reference is not None and r.reference.test_acc is not None:
            ax.scatter([x], [r.reference.test_acc], color=colour, marker="*", s=80)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(table.title, fontsize=9)
    from matplotlib.lines import Line2D

    legend = [
        Line2D([], [], marker="o", ls="", mfc="none", mec="k", label="paper"),
        Line2D([], [], marker="o", ls="", color="k", label="ours, test@best-val"),
        Line2D([], [], marker="x", ls="", color="k", label="ours, test@last"),
        Line2D([], [], marker="*", ls="", color="k", ms=10, label="authors' checkpoint, measured"),
    ]
    legend += (
        [Line2D([], [], color=c, label=d) for d, c in styles.items()] if len(styles) > 1 else []
    )
    ax.legend(handles=legend, fontsize=7, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def log_report(client, parent_id: str, table: Table, rows: list[ReportRow], text: str) -> None:
    """The comparison on the search's parent run: text, CSV and plot under reproduce/."""
    import matplotlib.pyplot as plt

    client.log_text(parent_id, text + "\n", f"reproduce/{table.name}.txt")
    client.log_text(parent_id, report_csv(table, rows), f"reproduce/{table.name}.csv")
    fig = report_figure(table, rows)
    client.log_figure(parent_id, fig, f"reproduce/{table.name}.png")
    plt.close(fig)
    client.set_tag(parent_id, "reproduce_table", table.name)
    exact = sum(r.exact(table) for r in rows)
    client.set_tag(parent_id, "reproduce_counts_exact", f"{exact}/{len(rows)}")


def save_figure(table: Table, rows: list[ReportRow], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = report_figure(table, rows)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
