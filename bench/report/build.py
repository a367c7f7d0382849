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

from .. import __version__
from ..run.results import atomic_write_text
from ..schema import QUERY_TASK
from .claims import paper_claims_section
from .cost_section import cost_section, load_cost_results
from .curves import plot_training_curves
from .headline import RULE, choose_headline, group_titles, metric_label
from .load import (
    ALL_QUERY_METRICS,
    BASELINE,
    CROSS_VIEW_TABLE,
    MISSING,
    QUERY_METRICS,
    TOP_METRIC,
    data_identity_text,
    load_run_results,
    objective_rank,
    opt_in_metrics,
    results_frame,
)
from .plots import plot_metric_vs_views, plot_tradeoff
from .regime import regime_map_sections
from .sensitivity import sensitivity_section
from .significance import significance_section
from .tables import (
    _fmt_count,
    _groups_in_order,
    _slug,
    baseline_label,
    cell_interval,
    cell_values,
    fmt_difference,
    fmt_interval,
    md_table,
    paired_against_baseline,
)
from .tuning import tuning_section
from .winner import WINNER_RULE, format_verdict, group_verdict


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


def cost_step_times(costs: list[tuple[Path, dict]], batch_size) -> tuple[dict[tuple[str, int], float], Path | None]:
    """(objective, V) -> whole-step median ms from the cost file of the same batch size if there is
    one, else the first cost file; and that file."""
    if not costs:
        return {}, None
    chosen = next(((p, c) for p, c in costs if (c.get("spec") or {}).get("batch_size") == batch_size), costs[0])
    times = {
        (r["objective"], int(r["views"])): float(r["step_ms_median"])
        for r in chosen[1]["rows"]
        if r.get("status") == "ok" and r.get("step_ms_median")
    }
    return times, chosen[0]


def group_section(
    frame: pd.DataFrame, group: str, report_dir: Path, costs: list[tuple[Path, dict]] | None = None
) -> tuple[list[str], list[Path]]:
    data = frame[frame["group"] == group]
    first = data.iloc[0]
    labels = sorted(data["objective_label"].unique(), key=objective_rank)
    views = sorted(int(v) for v in data["views"].unique())
    qnames = sorted({str(t) for t in data["query_task"].dropna().unique()})
    qname = qnames[0] if qnames else QUERY_TASK
    n_runs = len(data)
    seeds = sorted(int(s) for s in data["seed"].unique())
    headline, why = choose_headline(data)
    title = group_titles(frame)[group]
    lines = [
        f"## {title}",
        "",
        f"Comparison group `{group}`. {data_identity_text(data)}".rstrip(),
        f"Config off the defaults: {first['group_changes'] or 'none'}. "
        f"Items {_fmt_count(first['items'])}, interactions {_fmt_count(first['interactions'])}, "
        f"{n_runs} runs, seeds {', '.join(map(str, seeds))}. "
        "Cells: mean ± half-width of the 95% t-interval over seeds (n = seeds behind the cell; "
        "an interval that would leave [0, 1] is cut there and shown as mean [low, high]); "
        f"{MISSING} = no run.",
        "",
    ]
    if "reference" in data.columns and data["reference"].any():
        lines += [
            'Rows marked "untrained reference" score the frozen backbone features with no towers and no '
            "training (`ftbench reference`): frozen-primary = the item's primary view of the query's modality, "
            "frozen-mean = the normalised mean of its views of that modality within V. A trained row below "
            "them has not learned what the features already give.",
            "",
        ]
    plots: list[Path] = []

    def pivot(metric: str) -> list[str]:
        """objectives x views table of query-task `metric` (mean ± interval over seeds)."""
        column = f"{QUERY_TASK}/{metric}"
        rows = [
            [label] + [fmt_interval(cell_interval(cell_values(frame, column, group, label, v))) for v in views]
            for label in labels
        ]
        return [f"### {qname}: {metric} (objectives x views)", "", md_table(["objective"] + [f"V={v}" for v in views], rows), ""]

    # the headline: a metric that separates the objectives in this group (rule in ftbench.report.headline)
    head_col = f"{QUERY_TASK}/{headline}" if headline else None
    if headline:
        lines += [f'Headline metric: **{headline}** ({why}; the rule is under "Your comparisons").', ""]
        lines += pivot(headline)
        largest = views[-1]
        assert head_col is not None  # set whenever headline is
        lines += [f"Winner at V={largest} on {headline}: {format_verdict(group_verdict(frame, group, head_col, largest))}.", ""]
    top_col = f"{QUERY_TASK}/{TOP_METRIC}"
    if headline != TOP_METRIC and top_col in frame.columns and data[top_col].notna().any():
        lines += pivot(TOP_METRIC)

    # full table
    lines += [
        f"### {qname}: all metrics",
        "",
        "`seeds` = runs in the cell; a metric with fewer values (not applicable in some runs) says its own n.",
        "",
    ]
    rows = []
    # opt-in metrics (eval.metrics, e.g. map@K) where a run of the group computed them; — elsewhere
    all_metrics = list(ALL_QUERY_METRICS) + opt_in_metrics(data, QUERY_TASK)
    for label in labels:
        for v in views:
            count = len(data[(data["objective_label"] == label) & (data["views"] == v)])
            cells = []
            for metric in all_metrics:
                iv = cell_interval(cell_values(frame, f"{QUERY_TASK}/{metric}", group, label, v))
                cells.append(fmt_interval(iv, show_n=iv is not None and (iv.n != count or iv.n == 1)))
            rows.append([label, str(v), str(count)] + cells)
    lines += [md_table(["objective", "V", "seeds"] + all_metrics, rows, align_first=2), ""]

    # paired differences against clip
    base = baseline_label(frame, group)
    lines += [f"### {qname}: paired difference against `{BASELINE}`", ""]
    if base is None:
        lines += [f"No `{BASELINE}` runs in this group: no paired differences.", ""]
    else:
        lines += [
            f"Each objective minus `{base}` on the same data, views and seed: absolute difference ± 95% "
            "interval, and in brackets the relative change (percent of clip, per-seed ratios) ± its interval; "
            f"n = matched seeds. {MISSING} = no matched seed.",
            "",
        ]
        rows = []
        for label in labels:
            if label == base:
                continue
            for v in views:
                rows.append(
                    [label, str(v)]
                    + [
                        fmt_difference(paired_against_baseline(frame, f"{QUERY_TASK}/{m}", group, label, v))
                        for m in QUERY_METRICS
                    ]
                )
        lines += [
            md_table(["objective", "V"] + list(QUERY_METRICS), rows, align_first=2) if rows else "Only clip in this group.",
            "",
        ]

    # cross-view
    present = [
        (task, ms)
        for task, ms in CROSS_VIEW_TABLE
        if any(f"{task}/{m}" in frame.columns and data[f"{task}/{m}"].notna().any() for m in ms)
    ]
    absent = [task for task, _ in CROSS_VIEW_TABLE if task not in {t for t, _ in present}]
    lines += ["### Cross-view retrieval (test items)", ""]
    if present:
        header = ["objective", "V"] + [f"{t} {m}" for t, ms in present for m in ms]
        rows = []
        for label in labels:
            for v in views:
                rows.append(
                    [label, str(v)]
                    + [
                        fmt_interval(cell_interval(cell_values(frame, f"{t}/{m}", group, label, v)))
                        for t, ms in present
                        for m in ms
                    ]
                )
        lines += [md_table(header, rows, align_first=2), ""]
    if absent:
        lines += [f"Not scored in this group (not applicable to the data set, or absent from the runs): {', '.join(absent)}.", ""]

    # plots: readable titles (no hashes), axis labels in words, no single-V "against V" plot
    tag = f"{_slug(str(first['dataset']))}-{group}"
    if head_col:
        if len(views) >= 2:
            p1 = plot_metric_vs_views(
                frame,
                group,
                head_col,
                report_dir / f"headline_vs_views__{tag}.png",
                f"{metric_label(head_col)} against views per item: {title}",
            )
            lines += [
                f"![{headline} against V]({p1.name})",
                "",
                f"{qname} {headline} against V per objective; error bars: 95% t-interval over seeds (none for n=1).",
                "",
            ]
            plots.append(p1)
        else:
            lines += [f"(One V in this group ({views[0]}): no plot against V.)", ""]
        step_ms, cost_file = cost_step_times(costs or [], first.get("batch_size"))
        p2 = (
            plot_tradeoff(
                frame,
                group,
                head_col,
                report_dir / f"tradeoff__{tag}.png",
                f"{metric_label(head_col)} against step time: {title}",
                step_ms,
            )
            if step_ms
            else None
        )
        if p2 is not None:
            assert cost_file is not None  # the step times came from it
            lines += [
                f"![{headline} against step time]({p2.name})",
                "",
                f"Trade-off: {headline} (mean over seeds) against the whole training-step time from the cost "
                f"benchmark `{cost_file.name}` (one machine, every cell measured together; the run files' own "
                "step times are not used: they are taken on whatever else the machine was doing).",
                "",
            ]
            plots.append(p2)
        else:
            lines += [
                "(No trade-off plot: no cost-benchmark file with these objectives and V under `cost/`; "
                "`ftbench cost --out RESULTS_DIR/cost` writes one.)",
                "",
            ]
    curves = plot_training_curves(data, report_dir / f"training__{tag}.png", f"Training curves: {title}")
    if curves is not None:
        text = (
            "Training loss (left) and the validation score that selects the checkpoint (right) per objective, "
            "mean over seeds at the largest V"
            + ("" if curves.has_loss else "; these result files predate the recorded training loss, so only validation is drawn")
            + "."
        )
        if curves.single_validation_step is not None:
            text += (
                f" Validation ran once, at the last step ({curves.single_validation_step}: train.eval_every "
                "is 0 or not below train.steps), so the right panel has one score per objective, not a curve, "
                "and the last step is the checkpoint."
            )
        lines += [f"![training curves]({curves.path.name})", "", text, ""]
        plots.append(curves.path)
    return lines, plots


@dataclass
class ReportContext:
    """What every section builder gets: the results frame, the group order, the cost files."""

    frame: pd.DataFrame
    groups: list[str]
    costs: list[tuple[Path, dict]]
    bad_costs: list[tuple[Path, str]]
    report_dir: Path
    results_dir: Path
    all_runs: pd.DataFrame | None = None  # tuned reruns included (the default-vs-tuned section)


def lead_section(frame: pd.DataFrame, group_order: list[str]) -> list[str]:
    """The reader's own comparisons first: per group its headline metric, the winner at the group's
    largest V where the seeds name one (`ftbench.report.winner`), and the clip baseline there."""
    lines = [
        "## Your comparisons",
        "",
        "Runs are compared only within a group (same data set and the same data, training, tower and "
        "evaluation configs). Per group: the headline metric (chosen so that it separates the objectives, "
        f"rule: {RULE}), the winner at the group's largest V, and clip there. {WINNER_RULE}",
        "",
    ]
    rows = []
    titles = group_titles(frame)
    for g in group_order:
        data = frame[frame["group"] == g]
        metric, _ = choose_headline(data)
        v = int(data["views"].max())
        winner, base = MISSING, MISSING
        if metric:
            col = f"{QUERY_TASK}/{metric}"
            winner = format_verdict(group_verdict(frame, g, col, v))
            clip = baseline_label(frame, g)
            if clip is not None:
                base = fmt_interval(cell_interval(cell_values(frame, col, g, clip, v)))
        rows.append([titles[g], str(len(data)), metric or MISSING, str(v), winner, base])
    lines += [md_table(["comparison group", "runs", "headline metric", "V", "winner", "clip"], rows, align_first=3), ""]
    return lines


def _groups_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    lines: list[str] = []
    plots: list[Path] = []
    for g in context.groups:
        section, group_plots = group_section(context.frame, g, context.report_dir, context.costs)
        lines += section
        plots += group_plots
    return lines, plots


def _paper_claims_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    """Only where a paper-scale group exists: a small sweep cannot confirm or refute a 1M-item claim."""
    frame = context.frame
    if frame.empty or "paper_scale" not in frame.columns or not frame["paper_scale"].any():
        return [], []
    return paper_claims_section(frame), []


def _cost_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    return cost_section(context.costs, context.bad_costs, context.report_dir, context.results_dir)


def _method_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    return [
        "## Method",
        "",
        "Every number above is read from the per-run result files (`ftbench run` / `ftbench sweep`) and the "
        "cost files (`ftbench cost`). Intervals: two-sided 95% Student-t over seeds, "
        "mean ± t(0.975, n-1)·s/√n; paired differences match runs of the same group, views and seed. "
        f"Regenerate with `{report_command(context.results_dir, context.report_dir)}`; explore with "
        "`notebooks/compare_objectives.ipynb`.",
        "",
    ], []


def report_command(results_dir: Path, report_dir: Path) -> str:
    """The `ftbench report` command line that rebuilds this report (`--out` only when it is not the
    default RESULTS_DIR/report)."""
    command = f"ftbench report {results_dir}"
    if Path(report_dir) != Path(results_dir) / "report":
        command += f" --out {report_dir}"
    return command


#: The report after its lead, in order: each builder returns (Markdown lines, plots). A new section
#: is one function added here (its position says where it appears).
def _significance_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    return significance_section(context.frame), []


def _tuning_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    runs = context.all_runs if context.all_runs is not None else context.frame
    return tuning_section(runs), []


def _sensitivity_builder(context: ReportContext) -> tuple[list[str], list[Path]]:
    return sensitivity_section(context.frame, context.report_dir)


SECTION_BUILDERS: list = [
    _groups_builder,
    _paper_claims_builder,
    _sensitivity_builder,
    _tuning_builder,
    _significance_builder,
    _cost_builder,
    _method_builder,
]


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

    lines = [
        "# ftbench report",
        "",
        f"Built by `{report_command(results_dir, report_dir)}` from result files only: {len(loaded.runs)} run result(s)"
        f", {len(costs)} cost result(s).",
    ]
    if loaded.unreadable:
        lines[-1] += f" {len(loaded.unreadable)} unreadable file(s) skipped:"
        lines.append("")
        lines += [f"- `{_rel(path, results_dir)}`: {reason}" for path, reason in loaded.unreadable]
    if loaded.duplicates:
        lines.append("")
        lines.append(
            f"{len(loaded.duplicates)} duplicate file(s) (same config as a newer file) ignored: "
            + ", ".join(f"`{_rel(p, results_dir)}`" for p in loaded.duplicates)
            + "."
        )
    lines += [
        "",
        f"Objectives as of ftbench {__version__}; what each release changed in them, with the numbers "
        "before and after (0.3.0: mover's sign-aware fixed-size volume score, oat's zero residual start, "
        "duplicated views masked in the in-batch negatives): CHANGELOG.md.",
        "",
    ]
    # the regime map opens the report: which objective for which catalog, before any one comparison
    plots: list[Path] = []
    map_lines, map_plots = regime_map_sections(results_dir, report_dir)
    lines += map_lines
    plots += map_plots
    group_order: list[str] = []
    if frame.empty:
        lines += ["No readable run results: run `ftbench sweep --preset quick` (or `ftbench run`) first.", ""]
    else:
        group_order = _groups_in_order(frame)
        lines += lead_section(frame, group_order)
    context = ReportContext(frame, group_order, costs, bad_costs, report_dir, results_dir, all_runs)
    for builder in SECTION_BUILDERS:
        section, section_plots = builder(context)
        lines += section
        plots += section_plots
    path = report_dir / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return ReportOutcome(path, plots, len(loaded.runs), loaded.unreadable, loaded.duplicates, len(group_order))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
