"""Cells, intervals and Markdown tables of the report: the mean over seeds with its 95% Student-t
interval per (objective, views) cell, and the paired difference against the baseline
(`ftbench.report.intervals`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..eval.metric_registry import metric_bounds as registry_bounds
from ..schema import QUERY_TASK
from .intervals import Interval, PairedDifference, paired_difference, t_interval
from .load import BASELINE, MISSING, QUERY_METRICS, objective_rank


# ----------------------------------------------------------------------------------------------
# statistics on the frame
# ----------------------------------------------------------------------------------------------
def cell_values(frame: pd.DataFrame, column: str, group: str, objective_label: str, views: int) -> dict[int, float]:
    """seed -> value of `column` for one cell; runs without the metric are left out."""
    if column not in frame.columns:
        return {}
    rows = frame[(frame["group"] == group) & (frame["objective_label"] == objective_label) & (frame["views"] == views)]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if pd.notna(v)}


def metric_bounds(column: str) -> tuple[float, float] | None:
    """The range of a `task/metric` column's metric (its registry entry: (0, 1) for every metric
    ftbench computes), at which its seed intervals are cut; None for a column that is no metric."""
    return registry_bounds(column)


def cell_interval(values: dict[int, float], bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval | None:
    """The seed t-interval of a cell, cut at the metric's range (`bounds`; every cell the report
    builds this way holds a metric in [0, 1])."""
    return t_interval(list(values.values()), bounds=bounds) if values else None


def summary_table(
    frame: pd.DataFrame, metrics: Iterable[str] = QUERY_METRICS, task: str = QUERY_TASK, group: str | None = None
) -> pd.DataFrame:
    """Mean, 95% half-width and n per (group, objective, views) and metric, as numbers.

    Columns: for each metric `<metric>` (mean), `<metric>_hw` (half-width, NaN if n=1) and
    `<metric>_n`; plus `seeds` (the runs behind the row). Missing cells are absent rows.
    """
    data = frame if group is None else frame[frame["group"] == group]
    out = []
    for (g, label, v), rows in data.groupby(["group", "objective_label", "views"], sort=False):
        entry: dict[str, Any] = {"group": g, "objective": label, "views": int(v), "seeds": len(rows)}
        for metric in metrics:
            col = f"{task}/{metric}"
            iv = cell_interval(cell_values(frame, col, g, label, int(v)))
            entry[metric] = iv.mean if iv else np.nan
            entry[f"{metric}_hw"] = iv.half_width if iv and iv.half_width is not None else np.nan
            entry[f"{metric}_n"] = iv.n if iv else 0
        out.append(entry)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["_rank"] = table["objective"].map(objective_rank)
    return table.sort_values(["group", "_rank", "views"]).drop(columns="_rank").set_index(["group", "objective", "views"])


def baseline_label(frame: pd.DataFrame, group: str) -> str | None:
    """The `clip` row of a group: the only clip config, else the one with most runs (hash order)."""
    rows = frame[(frame["group"] == group) & (frame["objective"] == BASELINE)]
    if rows.empty:
        return None
    counts = rows.groupby("objective_label").size()
    return sorted(counts.index, key=lambda label: (-counts[label], label))[0]


def paired_against_baseline(
    frame: pd.DataFrame, column: str, group: str, objective_label: str, views: int
) -> PairedDifference | None:
    """Paired difference of `objective_label` against the group's clip row, same views and seed."""
    base = baseline_label(frame, group)
    if base is None:
        return None
    return paired_difference(
        cell_values(frame, column, group, objective_label, views), cell_values(frame, column, group, base, views)
    )


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------
def fmt_interval(iv: Interval | None, digits: int = 4, show_n: bool = True) -> str:
    """`0.4123 ± 0.0120 (n=3)`; `0.4123 (n=1)`; "—" for a missing cell."""
    if iv is None:
        return MISSING
    if iv.half_width is None:
        return f"{iv.mean:.{digits}f} (n=1)"
    if iv.clipped:
        text = f"{iv.mean:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"
        return f"{text} (n={iv.n})" if show_n else text
    text = f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}"
    return f"{text} (n={iv.n})" if show_n else text


def fmt_difference(diff: PairedDifference | None, digits: int = 4) -> str:
    """`+0.0123 ± 0.0040 (+3.1% ± 1.0%), n=3`; n=1 without intervals; "—" without pairs."""
    if diff is None:
        return MISSING
    a = diff.absolute
    text = f"{a.mean:+.{digits}f}" + ("" if a.half_width is None else f" ± {a.half_width:.{digits}f}")
    r = diff.relative
    if r is not None:
        text += f" ({r.mean:+.1f}%" + ("" if r.half_width is None else f" ± {r.half_width:.1f}%") + ")"
    return f"{text}, n={a.n}"


def md_table(header: list[str], rows: list[list[str]], align_first: int = 1) -> str:
    """A GitHub-flavoured markdown table; the first `align_first` columns left, the rest right."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":---" if i < align_first else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _groups_in_order(frame: pd.DataFrame) -> list[str]:
    """Paper-scale groups first, then the default synthetic data, then the rest (by label)."""
    firsts = frame.groupby("group").first()
    return sorted(
        firsts.index,
        key=lambda g: (not firsts.loc[g, "paper_scale"], not firsts.loc[g, "default_data"], firsts.loc[g, "group_label"]),
    )


def _group_tag(first: pd.Series) -> str:
    """ "paper scale", "default data", or "" for any other data (described by `headline.group_descriptions`)."""
    if first["paper_scale"]:
        return "paper scale"
    if first["default_data"]:
        return "default data"
    return ""


def _fmt_count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return MISSING
