"""The report's PNG plots (matplotlib, Agg backend): a metric against the number of views, and the
trade-off of a metric against the training-step time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_bytes
from .headline import metric_label
from .load import objective_rank
from .tables import cell_interval, cell_values


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt  # heavy: matplotlib, for the plots only

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _wrap(title: str, width: int = 78) -> str:
    """A title on as many lines as it needs: long group descriptions are never cut off."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width))


def _pyplot():
    import matplotlib  # heavy: matplotlib, for the plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib, for the plots only

    return plt


def plot_metric_vs_views(frame: pd.DataFrame, group: str, column: str, path: Path, title: str) -> Path:
    """Mean of `column` against V per objective, error bars = 95% half-width (none for n=1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    data = frame[frame["group"] == group]
    for label in sorted(data["objective_label"].unique(), key=objective_rank):
        xs, ys, es = [], [], []
        for v in sorted(data["views"].unique()):
            iv = cell_interval(cell_values(frame, column, group, label, int(v)))
            if iv is None:
                continue
            xs.append(int(v))
            ys.append(iv.mean)
            es.append(iv.half_width or 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ticks = sorted(int(v) for v in data["views"].unique())
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("views per item, V")
    ax.set_ylabel(metric_label(column))
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def _merge_close(
    xs: list[float], ys: list[float], vs: list[int], rel_x: float = 0.08, abs_y: float = 0.004
) -> list[tuple[float, float, list[int]]]:
    """Group consecutive points closer than `rel_x` (relative, log axis) and `abs_y`."""
    groups: list[tuple[float, float, list[int]]] = []
    for x, y, v in zip(xs, ys, vs):
        for _i, (gx, gy, names) in enumerate(groups):
            if abs(np.log(x / gx)) < rel_x and abs(y - gy) < abs_y:
                names.append(v)
                break
        else:
            groups.append((x, y, [v]))
    return groups


def tradeoff_figure(frame: pd.DataFrame, group: str, column: str, title: str, step_ms: dict[tuple[str, int], float]):
    """(figure, V labels) of the trade-off plot; (None, []) if no cell has both a score and a step
    time. See `plot_tradeoff`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    data = frame[frame["group"] == group]
    labels, points = [], []  # the V labels; every marker, which the labels keep off
    for label in sorted(data["objective_label"].unique(), key=objective_rank):
        base = label.split("[", 1)[0]
        xs, ys, vs = [], [], []
        for v in sorted(int(v) for v in data["views"].unique()):
            quality = cell_values(frame, column, group, label, v)
            if not quality or (base, v) not in step_ms:
                continue
            xs.append(step_ms[(base, v)])
            ys.append(float(np.mean(list(quality.values()))))
            vs.append(v)
        if xs:
            (line,) = ax.plot(xs, ys, marker="o", label=label)
            points += list(zip(xs, ys))
            # points that (nearly) coincide share one label ("V=2,4,8")
            for x, y, names in _merge_close(xs, ys, vs):
                labels.append(ax.text(x, y, "V=" + ",".join(map(str, names)), fontsize=7, color=line.get_color()))
    if not labels:
        plt.close(fig)
        return None, []
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # heavy: matplotlib, for the plots only

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training step time, ms (cost benchmark, median of repeats)")
    ax.set_ylabel(metric_label(column))
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(0.08)  # room for labels moved off the outermost points
    # the legend beside the axes, where no V label can run under it
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    _separate_labels(ax, labels, points)
    return fig, labels


def _separate_labels(ax, labels: list, points: list[tuple[float, float]]) -> None:
    """Move the V labels apart with adjustText (repelled from each other, from every marker and from
    the lines between them), a thin leader line from a moved label to its point."""
    from adjustText import adjust_text  # heavy: loads matplotlib, for the plots only

    xs, ys = [p[0] for p in points], [p[1] for p in points]
    for line in ax.get_lines():  # points along each segment (log-spaced in x, as drawn)
        lx, ly = (np.asarray(a, dtype=float) for a in line.get_data())
        for (x0, y0), (x1, y1) in zip(zip(lx[:-1], ly[:-1]), zip(lx[1:], ly[1:])):
            t = np.linspace(0.1, 0.9, 9)
            xs += list(np.exp(np.log(x0) + t * (np.log(x1) - np.log(x0))))
            ys += list(y0 + t * (y1 - y0))
    adjust_text(
        labels,
        x=xs,
        y=ys,
        ax=ax,
        expand=(1.3, 1.6),
        force_text=(0.4, 0.6),
        max_move=None,
        ensure_inside_axes=True,
        arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5},
    )


def plot_tradeoff(
    frame: pd.DataFrame, group: str, column: str, path: Path, title: str, step_ms: dict[tuple[str, int], float]
) -> Path | None:
    """Mean of `column` (over seeds) against the training-step time of the cost benchmark,
    `step_ms[(objective, V)]` (measured on one machine with all cells together, unlike the run
    files' own times); one line per objective, points labelled with V, the labels moved apart so
    that none covers another. None if nothing matches."""
    fig, _ = tradeoff_figure(frame, group, column, title, step_ms)
    return None if fig is None else _save_figure(fig, path)
