"""The front's pictures: `pareto.png` (trials by family, each family's front and the overall
front) and `hypervolume_over_time.png`.

Every family always looks the same (`FAMILY_STYLE`, one colour and marker each), so plots of
different searches can be compared at a glance. With two objectives each family's own front is a
step line in its colour and the overall front a bold black one; trials dominated within their
family are faint and early-stopped ones faint and hollow (their low-budget scores are not
comparable). With three or more objectives the plot is the projection on the first two, as
before, with the same colours. A parameter-count axis is logarithmic.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from experiments.front import Front, TrialRow, family_order, has_metrics
from experiments.front_tables import si_label
from experiments.tracking import COMPLETED, STOPPED_EARLY
from lrunet import metrics as M

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
LOG_AXES = (M.PARAMS, M.CONV_PARAMS, M.MACS, M.MFLOPS)  # counts spanning decades
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


def _xy(rows: list[TrialRow], x: str, y: str) -> tuple[list[float], list[float]]:
    return [r.metrics[x] for r in rows], [r.metrics[y] for r in rows]


def plot_front(front: Front, path: Path) -> None:
    """Write `pareto.png` (module docstring) to `path`."""
    import matplotlib.pyplot as plt

    fig = front_figure(front)
    fig.savefig(path)
    plt.close(fig)


def front_figure(front: Front):
    """The figure `plot_front` saves; the caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    x_m, y_m = plot_axes(front)
    two_d = len(front.metrics) == 2
    x_mode = front.modes[front.metrics.index(x_m)]
    steps = "steps-post" if x_mode == "min" else "steps-pre"
    shown = [
        r
        for r in front.rows
        if r.status in (COMPLETED, STOPPED_EARLY) and has_metrics(r, [x_m, y_m])
    ]
    on_family_front = {r.run_id for rows in front.by_family().values() for r in rows}

    fig, ax = plt.subplots(figsize=(10, 6), dpi=110)
    handles = []
    for fam in family_order(r.family for r in shown):
        color, marker = family_style(fam)
        rows = [r for r in shown if r.family == fam]
        stopped = [r for r in rows if r.status == STOPPED_EARLY]
        done = [r for r in rows if r.status == COMPLETED]
        best = [r for r in done if r.run_id in on_family_front or not two_d]
        rest = [r for r in done if r.run_id not in {b.run_id for b in best}]
        kw = {"marker": marker, "s": 40, "linewidths": 1.0}
        ax.scatter(*_xy(stopped, x_m, y_m), facecolors="none", edgecolors=color, alpha=0.35, **kw)
        ax.scatter(*_xy(rest, x_m, y_m), color=color, alpha=FAINT, **kw)
        ax.scatter(*_xy(best, x_m, y_m), color=color, alpha=0.9, zorder=3, **kw)
        if two_d and best:
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
            Line2D([], [], color=color, marker=marker, linewidth=1.3 if two_d else 0, label=label)
        )
    members = sorted(front.members, key=lambda r: r.metrics[x_m])
    if members:
        ax.plot(
            *_xy(members, x_m, y_m),
            color="black",
            linewidth=2.6,
            zorder=4,
            drawstyle=steps if two_d else "default",
        )
        for r in members:
            color, marker = family_style(r.family)
            ax.scatter(
                r.metrics[x_m],
                r.metrics[y_m],
                marker=marker,
                s=70,
                color=color,
                edgecolors="black",
                linewidths=1.6,
                zorder=5,
            )
    grey = {"color": "grey", "marker": "o", "linewidth": 0}
    handles.append(Line2D([], [], color="black", linewidth=2.6, label="overall Pareto front"))
    if two_d:
        handles.append(Line2D([], [], alpha=0.3, label="dominated in its family (faint)", **grey))
    handles.append(
        Line2D([], [], markerfacecolor="none", label="stopped early, low budget (hollow)", **grey)
    )
    if x_m in LOG_AXES and shown and min(r.metrics[x_m] for r in shown) > 0:
        _log_x(ax, [r.metrics[x_m] for r in shown])
    ax.set_xlabel(f"{x_m} (log scale)" if ax.get_xscale() == "log" else x_m)
    ax.set_ylabel(y_m)
    hvn = "" if front.ideal_point is None else f", normalised {front.hypervolume_normalised:.3f}"
    ax.set_title(
        f"{y_m} vs {x_m}: overall front of {len(front.members)} "
        f"(hypervolume {front.hypervolume:.4g}{hvn})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.grid(alpha=0.1, which="minor")
    _label_members(ax, members, x_m, y_m)
    ax.legend(
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


def _log_x(ax, xs: list[float]) -> None:
    """A log x axis ticked at 1-2-5 x 10^k with SI labels (100k, 200k, 500k, 1M)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    decades = max(xs) / min(xs)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 1e4 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si_label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


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
