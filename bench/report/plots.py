"""The report's PNG plots (matplotlib, Agg backend): a metric against the number of views, and the
trade-off of a metric against the training-step time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..run.results import atomic_write_bytes
from .headline import metric_label
from .load import objective_rank
from .tables import cell_interval, cell_values


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            xs.append(int(v)), ys.append(iv.mean), es.append(iv.half_width or 0.0)
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


def _merge_close(xs: list[float], ys: list[float], vs: list[int], rel_x: float = 0.08,
                 abs_y: float = 0.004) -> list[tuple[float, float, list[int]]]:
    """Group consecutive points closer than `rel_x` (relative, log axis) and `abs_y`."""
    groups: list[tuple[float, float, list[int]]] = []
    for x, y, v in zip(xs, ys, vs):
        for i, (gx, gy, names) in enumerate(groups):
            if abs(np.log(x / gx)) < rel_x and abs(y - gy) < abs_y:
                names.append(v)
                break
        else:
            groups.append((x, y, [v]))
    return groups


def plot_tradeoff(frame: pd.DataFrame, group: str, column: str, path: Path, title: str,
                  step_ms: dict[tuple[str, int], float]) -> Path | None:
    """Mean of `column` (over seeds) against the training-step time of the cost benchmark,
    `step_ms[(objective, V)]` (measured on one machine with all cells together, unlike the run
    files' own times); one line per objective, points labelled with V. None if nothing matches."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    data = frame[frame["group"] == group]
    drawn = 0
    for index, label in enumerate(sorted(data["objective_label"].unique(), key=objective_rank)):
        base = label.split("[", 1)[0]
        xs, ys, vs = [], [], []
        for v in sorted(int(v) for v in data["views"].unique()):
            quality = cell_values(frame, column, group, label, v)
            if not quality or (base, v) not in step_ms:
                continue
            xs.append(step_ms[(base, v)]), ys.append(float(np.mean(list(quality.values())))), vs.append(v)
        if xs:
            drawn += 1
            line, = ax.plot(xs, ys, marker="o", label=label)
            # points that (nearly) coincide share one label ("V=2,4,8"); offsets differ per objective
            for x, y, names in _merge_close(xs, ys, vs):
                ax.annotate("V=" + ",".join(map(str, names)), (x, y), textcoords="offset points",
                            xytext=(5, 4 - 9 * (index % 3)), fontsize=7, color=line.get_color())
    if not drawn:
        import matplotlib.pyplot as mpl

        mpl.close(fig)
        return None
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training step time, ms (cost benchmark, median of repeats)")
    ax.set_ylabel(metric_label(column))
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)
