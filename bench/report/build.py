"""`ftbench report`: REPORT.md and its plots, built only from result files.

Inputs: every run result `*.json` under the results folder (any depth, except the `cost/` and
`report/` sub-folders), and the cost results `cost/*.json` written by `ftbench cost`. A file that
does not load as a run result (schema v1) is skipped and counted, with its reason, in the report.

Grouping. Runs are compared only within a *comparison group*: same data set, same data-set config,
same training, tower and evaluation configs (the group key is a hash of those five). Within a
group a *cell* is (objective, views); if one objective appears with several objective configs in a
group, each config is its own row, labelled `objective[hash]`. Different configs are never mixed
in one cell, and a cell without runs is shown as "—", never averaged in.

Statistics (`ftbench.report.intervals`): each cell shows the mean over seeds and the half-width of the
two-sided 95% Student-t interval, m ± t_{0.975,n-1} s / sqrt(n); n=1 cells show the mean and
"n=1". The paired difference of an objective against `clip` matches runs of the same group, views
and seed; d_k = a_k - b_k and r_k = 100 d_k / b_k get their own t-intervals.

The query task is the data set's search task (`query->item` on the synthetic marketplace; a
real data set may name it, e.g. `photo->product`); in the frame and the tables it is called
`query->item`, with the data set's own name kept in the `query_task` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..schema import PAPER_CLAIM, QUERY_TASK
from ..run.results import atomic_write_text
from .claims import claim_verdict, paper_claims_section
from .tuning import tuning_section
from .cost_section import cost_section, load_cost_results
from .load import ALL_QUERY_METRICS, BASELINE, CROSS_VIEW_TABLE, HEADLINE_METRIC, LoadedResults, MISSING, QUERY_METRICS, TOP_METRIC, find_result_files, load_results_frame, load_run_results, objective_rank, results_frame
from .plots import plot_metric_vs_views, plot_tradeoff
from .tables import _fmt_count, _group_tag, _groups_in_order, _slug, baseline_label, cell_interval, cell_values, fmt_difference, fmt_interval, md_table, paired_against_baseline, summary_table


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------
@dataclass
class ReportOutcome:
    path: Path
    plots: list[Path]
    runs: int
    unreadable: list[tuple[Path, str]]
    duplicates: list[Path]
    groups: int


def group_section(frame: pd.DataFrame, group: str, report_dir: Path) -> tuple[list[str], list[Path]]:
    data = frame[frame["group"] == group]
    first = data.iloc[0]
    labels = sorted(data["objective_label"].unique(), key=objective_rank)
    views = sorted(int(v) for v in data["views"].unique())
    qnames = sorted({str(t) for t in data["query_task"].dropna().unique()})
    qname = qnames[0] if qnames else QUERY_TASK
    n_runs = len(data)
    seeds = sorted(int(s) for s in data["seed"].unique())
    lines = [f"## {first['dataset']}: {_group_tag(first)} [group {group}]", "",
             f"Config off the defaults: {first['group_changes'] or 'none'}. "
             f"Items {_fmt_count(first['items'])}, interactions {_fmt_count(first['interactions'])}, "
             f"{n_runs} runs, seeds {', '.join(map(str, seeds))}. "
             "Cells: mean ± half-width of the 95% t-interval over seeds (n = seeds behind the cell); "
             f"{MISSING} = no run.", ""]
    plots: list[Path] = []

    def pivot(metric: str) -> list[str]:
        """objectives x views table of query-task `metric` (mean ± interval over seeds)."""
        column = f"{QUERY_TASK}/{metric}"
        rows = [[label] + [fmt_interval(cell_interval(cell_values(frame, column, group, label, v))) for v in views]
                for label in labels]
        return [f"### {qname}: {metric} (objectives x views)", "",
                md_table(["objective"] + [f"V={v}" for v in views], rows), ""]

    # headline pivot, and the top of the list too: on small catalogs recall@500 saturates and
    # recall@10 separates
    head_col = f"{QUERY_TASK}/{HEADLINE_METRIC}"
    lines += pivot(HEADLINE_METRIC)
    top_col = f"{QUERY_TASK}/{TOP_METRIC}"
    if top_col in frame.columns and data[top_col].notna().any():
        lines += pivot(TOP_METRIC)

    # full table
    lines += [f"### {qname}: all metrics", "",
              "`seeds` = runs in the cell; a metric with fewer values (not applicable in some runs) says its own n.", ""]
    rows = []
    for label in labels:
        for v in views:
            count = len(data[(data["objective_label"] == label) & (data["views"] == v)])
            cells = []
            for metric in ALL_QUERY_METRICS:
                iv = cell_interval(cell_values(frame, f"{QUERY_TASK}/{metric}", group, label, v))
                cells.append(fmt_interval(iv, show_n=iv is not None and (iv.n != count or iv.n == 1)))
            rows.append([label, str(v), str(count)] + cells)
    lines += [md_table(["objective", "V", "seeds"] + list(ALL_QUERY_METRICS), rows, align_first=2), ""]

    # paired differences against clip
    base = baseline_label(frame, group)
    lines += [f"### {qname}: paired difference against `{BASELINE}`", ""]
    if base is None:
        lines += [f"No `{BASELINE}` runs in this group: no paired differences.", ""]
    else:
        lines += [f"Each objective minus `{base}` on the same data, views and seed: absolute difference ± 95% "
                  "interval, and in brackets the relative change (percent of clip, per-seed ratios) ± its interval; "
                  f"n = matched seeds. {MISSING} = no matched seed.", ""]
        rows = []
        for label in labels:
            if label == base:
                continue
            for v in views:
                rows.append([label, str(v)] + [fmt_difference(paired_against_baseline(
                    frame, f"{QUERY_TASK}/{m}", group, label, v)) for m in QUERY_METRICS])
        lines += [md_table(["objective", "V"] + list(QUERY_METRICS), rows, align_first=2) if rows
                  else "Only clip in this group.", ""]

    # cross-view
    present = [(task, ms) for task, ms in CROSS_VIEW_TABLE if any(f"{task}/{m}" in frame.columns and
                                                                  data[f"{task}/{m}"].notna().any() for m in ms)]
    absent = [task for task, _ in CROSS_VIEW_TABLE if task not in {t for t, _ in present}]
    lines += ["### Cross-view retrieval (test items)", ""]
    if present:
        header = ["objective", "V"] + [f"{t} {m}" for t, ms in present for m in ms]
        rows = []
        for label in labels:
            for v in views:
                rows.append([label, str(v)] + [fmt_interval(cell_interval(cell_values(frame, f"{t}/{m}", group, label, v)))
                                               for t, ms in present for m in ms])
        lines += [md_table(header, rows, align_first=2), ""]
    if absent:
        lines += [f"Not scored in this group (not applicable to the data set, or absent from the runs): "
                  f"{', '.join(absent)}.", ""]

    # plots
    metric_col = head_col if head_col in frame.columns and data[head_col].notna().any() else None
    if metric_col is None:
        recalls = sorted((c for c in frame.columns if c.startswith(f"{QUERY_TASK}/recall@") and data[c].notna().any()),
                         key=lambda c: int(c.rsplit("@", 1)[1]))
        metric_col = recalls[-1] if recalls else None
        if metric_col:
            lines += [f"({HEADLINE_METRIC} is not available in this group (catalog too small?); the plots use "
                      f"{metric_col.split('/', 1)[1]}.)", ""]
    if metric_col:
        metric = metric_col.split("/", 1)[1]
        tag = f"{_slug(str(first['dataset']))}-{group}"
        p1 = plot_metric_vs_views(frame, group, metric_col, report_dir / f"recall_vs_views__{tag}.png",
                                  f"{qname} {metric} against V ({first['dataset']}, group {group})")
        lines += [f"![{metric} against V]({p1.name})", "",
                  f"{qname} {metric} against V per objective; error bars: 95% t-interval over seeds (none for n=1).", ""]
        plots.append(p1)
        if metric != TOP_METRIC and data.get(top_col) is not None and data[top_col].notna().any():
            p_top = plot_metric_vs_views(frame, group, top_col, report_dir / f"recall10_vs_views__{tag}.png",
                                         f"{qname} {TOP_METRIC} against V ({first['dataset']}, group {group})")
            lines += [f"![{TOP_METRIC} against V]({p_top.name})", "",
                      f"{qname} {TOP_METRIC} against V per objective (95% t-intervals).", ""]
            plots.append(p_top)
        if data["step_ms_median"].notna().any():
            p2 = plot_tradeoff(frame, group, metric_col, report_dir / f"tradeoff__{tag}.png",
                               f"{qname} {metric} against training step time ({first['dataset']}, group {group})")
            lines += [f"![{metric} against step time]({p2.name})", "",
                      f"Trade-off: {metric} (mean over seeds) against the median training-step time of the runs "
                      "(mean over seeds), one point per V.", ""]
            plots.append(p2)
    return lines, plots


def build_report(results_dir: Path | str, report_dir: Path | str | None = None) -> ReportOutcome:
    """Render `<results_dir>/report/REPORT.md` (and its PNG plots) from the result files only."""
    results_dir = Path(results_dir)
    report_dir = Path(report_dir) if report_dir is not None else results_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_run_results(results_dir)
    all_runs = results_frame(loaded.runs)
    # tuned reruns get their own section (default vs tuned); the group sections show the rest
    frame = all_runs[~all_runs["tuned"]].reset_index(drop=True) if not all_runs.empty else all_runs
    costs, bad_costs = load_cost_results(results_dir)

    lines = ["# ftbench report", "",
             f"Built by `ftbench report {results_dir}` from result files only: {len(loaded.runs)} run result(s)"
             f", {len(costs)} cost result(s)."]
    if loaded.unreadable:
        lines[-1] += f" {len(loaded.unreadable)} unreadable file(s) skipped:"
        lines.append("")
        lines += [f"- `{_rel(path, results_dir)}`: {reason}" for path, reason in loaded.unreadable]
    if loaded.duplicates:
        lines.append("")
        lines.append(f"{len(loaded.duplicates)} duplicate file(s) (same config as a newer file) ignored: "
                     + ", ".join(f"`{_rel(p, results_dir)}`" for p in loaded.duplicates) + ".")
    lines.append("")
    plots: list[Path] = []
    group_order: list[str] = []
    if frame.empty:
        lines += ["No readable run results: run `ftbench sweep --preset quick` (or `ftbench run`) first.", ""]
    else:
        group_order = _groups_in_order(frame)
        lines += ["Comparison groups (runs are compared only within a group: same data set and same data, "
                  "training, tower and evaluation configs):", ""]
        for g in group_order:
            first = frame[frame["group"] == g].iloc[0]
            lines.append(f"- [group {g}] {_group_tag(first)}: {first['group_label']}, "
                         f"{int((frame['group'] == g).sum())} runs")
        lines.append("")
    lines += paper_claims_section(frame)
    lines += tuning_section(all_runs)
    for g in group_order:
        section, group_plots = group_section(frame, g, report_dir)
        lines += section
        plots += group_plots
    section, cost_plots = cost_section(costs, bad_costs, report_dir, results_dir)
    lines += section
    plots += cost_plots
    lines += ["## Method", "",
              "Every number above is read from the per-run result files (`ftbench run` / `ftbench sweep`) and the "
              "cost files (`ftbench cost`). Intervals: two-sided 95% Student-t over seeds, "
              "mean ± t(0.975, n-1)·s/√n; paired differences match runs of the same group, views and seed. "
              "Regenerate with `make report`; explore with `notebooks/compare_objectives.ipynb`.", ""]
    path = report_dir / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return ReportOutcome(path, plots, len(loaded.runs), loaded.unreadable, loaded.duplicates, len(group_order))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
