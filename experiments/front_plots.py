"""The front's pictures: `pareto.png` (trials by family, each family's front and the overall
front) and `hypervolume_over_time.png`.

Every family always looks the same (`FAMILY_STYLE`, one colour and marker each), so plots of
different searches can be compared at a glance. With two objectives each family's own front is a
step line in its colour and the overall front a bold black one; trials dominated within their
family are faint and early-stopped ones faint and hollow (their low-budget scores are not
comparable). With three or more objectives (accuracy, params, latency) there is one panel per 2-D
projection, accuracy against each other objective first: the overall front's members keep a black
edge and a dashed line is each projection's own front. Axes of objectives declared `log_axis` in
`lrunet.objectives` (the counts) are logarithmic.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from experiments.front import Front, TrialRow, family_order, has_metrics
from experiments.front_tables import si_label
from experiments.tracking import COMPLETED, STOPPED_EARLY
from lrunet import metrics as M
from lrunet.objectives import get_objective, list_objectives

# family -> (colour, marker); a family missing here gets a spare style chosen by its name.
FAMILY_STYLE: dict[str, tuple[str, str]] = {
    "lrunet": ("#1f77b4", "o"),
    "dacnn": ("#ff7f0e", "s"),
    "mobilenet": ("#2ca02c", "^"),
    "mobilenetv2": ("#d62728", "v"),
    "shufflenet": ("#9467bd", "D"),
    "shufflenetv2": ("#8c564b", "P"),
}
_SPARE_STYLES = (("#e377c2", "X"), ("#bcbd22", "*"), ("#17becf", "h"), ("#7f7f7f", "p"))
FAINT = 0.2


def family_style(family: str) -> tuple[str, str]:
    """The (colour, marker) of a family, the same in every plot of every search."""
    if family in FAMILY_STYLE:
        return FAMILY_STYLE[family]
    return _SPARE_STYLES[zlib.crc32(family.encode()) % len(_SPARE_STYLES)]


def plot_axes(front: Front) -> tuple[str, str]:
    """(x, y) metrics: the first two objectives, y the first, except that params goes on x."""
    ms = front.metrics
    if len(ms) == 1:
        return ms[0], ms[0]
    if len(ms) == 2 and ms[0] == M.PARAMS:
        return ms[0], ms[1]
    return ms[1], ms[0]


def projections(front: Front) -> list[tuple[str, str]]:
    """The (x, y) panels of `pareto.png`: one for two objectives (`plot_axes`); with more, every
    2-D projection, the first objective (accuracy) on y against each other one, then the others
    against each other (params vs latency)."""
    ms = front.metrics
    if len(ms) <= 2:
        return [plot_axes(front)]
    pairs = [(m, ms[0]) for m in ms[1:]]
    pairs += [(a, b) for i, a in enumerate(ms[1:]) for b in ms[i + 2 :]]
    return pairs


def _xy(rows: list[TrialRow], x: str, y: str) -> tuple[list[float], list[float]]:
    return [r.metrics[x] for r in rows], [r.metrics[y] for r in rows]


def plot_front(front: Front, path: Path) -> None:
    """Write `pareto.png` (module docstring) to `path`."""
    import matplotlib.pyplot as plt

    fig = front_figure(front)
    fig.savefig(path)
    plt.close(fig)


def front_figure(front: Front):
    """The figure `plot_front` saves; the caller closes it. One panel per projection; the
    legend and the hypervolume are the figure's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = projections(front)
    cols = min(len(pairs), 3)
    rows = -(-len(pairs) // cols)
    size = (10, 6) if len(pairs) == 1 else (5.2 * cols + 2.2, 4.6 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, dpi=110, squeeze=False)
    handles = []
    for ax, (x_m, y_m) in zip(axes.flat, pairs):
        handles = _panel(ax, front, x_m, y_m, single=len(pairs) == 1)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    hvn = "" if front.ideal_point is None else f", normalised {front.hypervolume_normalised:.3f}"
    what = (
        f"{pairs[0][1]} vs {pairs[0][0]}"
        if len(pairs) == 1
        else f"{len(front.metrics)} objectives ({', '.join(front.metrics)}), each projection"
    )
    title = (
        f"{what}: overall front of {len(front.members)} (hypervolume {front.hypervolume:.4g}{hvn})"
    )
    if len(pairs) == 1:
        axes[0, 0].set_title(title, fontsize=10)
    else:
        fig.suptitle(title, fontsize=10)
    axes[0, -1].legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="family",
        title_fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return fig


def _panel(ax, front: Front, x_m: str, y_m: str, single: bool) -> list:
    """Draw one projection; returns the legend handles. With two objectives (`single`) each
    family's front is a step line and the overall front a bold black one. In a projection of
    more objectives the overall front's members keep their black edge (most are not extreme in
    this projection) and a thin dashed black line is the projection's own 2-D front."""
    from matplotlib.lines import Line2D

    x_mode, y_mode = _mode(front, x_m), _mode(front, y_m)
    steps = "steps-post" if x_mode == "min" else "steps-pre"  # the attainment staircase
    shown = [
        r
        for r in front.rows
        if r.status in (COMPLETED, STOPPED_EARLY) and has_metrics(r, [x_m, y_m])
    ]
    on_family_front = {r.run_id for rows in front.by_family().values() for r in rows}
    handles = []
    for fam in family_order(r.family for r in shown):
        color, marker = family_style(fam)
        rows = [r for r in shown if r.family == fam]
        stopped = [r for r in rows if r.status == STOPPED_EARLY]
        done = [r for r in rows if r.status == COMPLETED]
        best = [r for r in done if r.run_id in on_family_front or not single]
        rest = [r for r in done if r.run_id not in {b.run_id for b in best}]
        kw = {"marker": marker, "s": 40, "linewidths": 1.0}
        ax.scatter(*_xy(stopped, x_m, y_m), facecolors="none", edgecolors=color, alpha=0.35, **kw)
        ax.scatter(*_xy(rest, x_m, y_m), color=color, alpha=FAINT, **kw)
        ax.scatter(*_xy(best, x_m, y_m), color=color, alpha=0.9, zorder=3, **kw)
        if single and best:
            ax.plot(
                *_xy(sorted(best, key=lambda r: r.metrics[x_m]), x_m, y_m),
                color=color,
                drawstyle=steps,
                linewidth=1.3,
                alpha=0.9,
                zorder=2,
            )
        n_front = sum(r.run_id in on_family_front for r in done)
        label = f"{fam} ({len(done)} completed, {n_front} on its front)"
        handles.append(
            Line2D([], [], color=color, marker=marker, linewidth=1.3 if single else 0, label=label)
        )
    members = sorted(front.members, key=lambda r: r.metrics[x_m])
    if single and members:
        ax.plot(*_xy(members, x_m, y_m), color="black", linewidth=2.6, zorder=4, drawstyle=steps)
    if not single:
        done = [r for r in shown if r.status == COMPLETED]
        flat = _front_2d(done, x_m, y_m, x_mode, y_mode)
        if flat:
            ax.plot(*_xy(flat, x_m, y_m), color="black", linestyle="--", linewidth=1.0,
                    drawstyle=steps, zorder=4)  # fmt: skip
    for r in members:
        color, marker = family_style(r.family)
        ax.scatter(r.metrics[x_m], r.metrics[y_m], marker=marker, s=70, color=color,
                   edgecolors="black", linewidths=1.6, zorder=5)  # fmt: skip
    grey = {"color": "grey", "marker": "o", "linewidth": 0}
    if single:
        handles.append(Line2D([], [], color="black", linewidth=2.6, label="overall Pareto front"))
        handles.append(Line2D([], [], alpha=0.3, label="dominated in its family (faint)", **grey))
    else:
        handles.append(
            Line2D([], [], color="grey", marker="o", markeredgecolor="black", linewidth=0,
                   markeredgewidth=1.6, label="on the overall front (all objectives)")
        )  # fmt: skip
        handles.append(
            Line2D([], [], color="black", linestyle="--", label="front in this projection")
        )
    handles.append(
        Line2D([], [], markerfacecolor="none", label="stopped early, low budget (hollow)", **grey)
    )
    for axis, m in (("x", x_m), ("y", y_m)):
        vals = [r.metrics[m] for r in shown]
        if _log_axis(m) and vals and min(vals) > 0:
            _log_scale(ax, vals, axis)
    ax.set_xlabel(_axis_label(x_m, ax.get_xscale() == "log"))
    ax.set_ylabel(_axis_label(y_m, ax.get_yscale() == "log"))
    ax.grid(alpha=0.3)
    ax.grid(alpha=0.1, which="minor")
    _label_members(ax, members if single else [], x_m, y_m)
    return handles


def _mode(front: Front, metric: str) -> str:
    return front.modes[front.metrics.index(metric)]


def _front_2d(rows: list[TrialRow], x_m: str, y_m: str, x_mode: str, y_mode: str):
    """The rows not dominated in the (x, y) projection, sorted by x."""
    from experiments import pareto

    if not rows:
        return []
    ranks = pareto.pareto_ranks([[r.metrics[x_m], r.metrics[y_m]] for r in rows], [x_mode, y_mode])
    return sorted((r for r, k in zip(rows, ranks) if k == 1), key=lambda r: r.metrics[x_m])


def _log_axis(metric: str) -> bool:
    return metric in list_objectives() and get_objective(metric).log_axis


def _axis_label(metric: str, log: bool) -> str:
    unit = get_objective(metric).unit if metric in list_objectives() else ""
    label = f"{metric} ({unit})" if unit and unit != "%" and not metric.endswith(unit) else metric
    return f"{label} (log scale)" if log else label


def _label_members(ax, members: list[TrialRow], x_m: str, y_m: str, size: float = 7) -> None:
    """Name the front's members just above-left of each point (for a max-y, min-x front the
    region there is empty: nothing beats a member with fewer resources; right of it where the
    axes end); a label that would overlap an earlier one moves up a line."""
    ax.autoscale_view()
    dpi = ax.figure.dpi
    line, placed = size * dpi / 72 * 1.15, []  # label boxes in pixels: (x0, x1, y0)
    for r in members:
        px, py = ax.transData.transform((r.metrics[x_m], r.metrics[y_m]))
        width = len(r.arch) * size * 0.62 * dpi / 72
        gap = 6 * dpi / 72
        right = px - gap - width < ax.bbox.x0  # no room on the left: label to the right
        x0, x1 = (px + gap, px + gap + width) if right else (px - gap - width, px - gap)
        y0 = py + 3 * dpi / 72
        while any(a < x1 and x0 < b and abs(y0 - c) < line for a, b, c in placed):
            y0 += line
        placed.append((x0, x1, y0))
        ax.annotate(r.arch, (r.metrics[x_m], r.metrics[y_m]), fontsize=size,
                    ha="left" if right else "right", va="bottom", textcoords="offset points",
                    xytext=(6 if right else -6, (y0 - py) * 72 / dpi), zorder=6)  # fmt: skip


def _log_scale(ax, values: list[float], axis: str = "x") -> None:
    """A log axis ticked at 1-2-5 x 10^k with SI labels (100k, 200k, 500k, 1M)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    which = ax.xaxis if axis == "x" else ax.yaxis
    decades = max(values) / min(values)
    which.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 1e4 else (1.0,)))
    which.set_major_formatter(FuncFormatter(lambda v, _: si_label(v)))
    which.set_minor_formatter(NullFormatter())


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
