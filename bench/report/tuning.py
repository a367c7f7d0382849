"""The "default vs tuned" section of REPORT.md, from the result files of `ftbench tune`.

A tuned run carries a `tuning` block naming the comparison group of its untuned configuration
(`base_group`) and the default objective config's hash. For each such group the section shows,
per objective, the default runs (that group, default objective config, no tuning block) beside
the tuned runs (mean ± 95% t-interval over seeds) on the group's informative metric of each of
three tasks it scores — the query task (the headline rule of `headline.choose_headline`: the first
of recall@500, @100, @50, @10, ndcg@10 that no objective saturates; named by the data set's own
query task, e.g. photo->product), aux->item (recall@10, else recall@1 where recall@10 saturates)
and title->image recall@1 — the best parameters and the trial counts, and the ranking of the
objectives before and after tuning on the query task's metric. On a 12-product catalog
recall@10 is near 1.0 for every objective, so a fixed recall@10 column could not rank anything. Tuned runs are left out of the ordinary group sections (each
tuned configuration would otherwise be a group of its own).
"""

from __future__ import annotations

import pandas as pd

from ..schema import QUERY_TASK
from .headline import CANDIDATES, choose_headline
from .load import objective_rank
from .tables import cell_interval, fmt_interval, md_table
from .winner import Verdict, decide_winner, format_verdict

#: per task, the candidate metrics in order of preference (the query task's come from the headline rule)
CROSS_VIEW_CANDIDATES = (("aux->item", ("recall@10", "recall@1")), ("title->image", ("recall@1",)))


def informative_metrics(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, metric) columns that can tell the objectives of `rows` (one group's default and
    tuned runs) apart: per task, `headline.choose_headline` over its candidates (the first whose
    best mean over seeds is below `headline.SATURATION`, else the lowest); tasks not scored are left out."""
    out = []
    for task, candidates in ((QUERY_TASK, CANDIDATES), *CROSS_VIEW_CANDIDATES):
        metric, _ = choose_headline(rows, task, candidates)
        if metric is not None:
            out.append((task, metric))
    return out


def _values(rows: pd.DataFrame, column: str) -> dict[int, float]:
    if column not in rows.columns:
        return {}
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if pd.notna(v)}


def _ranking(scores: dict[str, float]) -> list[str]:
    return [name for name, _ in sorted(scores.items(), key=lambda kv: (-kv[1], objective_rank(kv[0])))]


def _means(cells: dict[str, dict[int, float]]) -> dict[str, float]:
    return {label: sum(values.values()) / len(values) for label, values in cells.items() if values}


def winner_change_lines(before: Verdict | None, after: Verdict | None) -> list[str]:
    """Whether tuning changes the winner, said only where both rankings name one (`ftbench.report.winner`)."""
    if before is None or after is None:
        return []
    if before.winner is not None and after.winner is not None:
        same = before.winner == after.winner
        return [
            f"The winner {'does not change' if same else 'changes'} with tuning "
            f"({before.winner} by default, {after.winner} tuned; each with a paired 95% interval over seeds "
            "that excludes 0 against every other objective)."
        ]
    return [
        f"Whether tuning changes the winner cannot be said: default: {format_verdict(before)}; tuned: {format_verdict(after)}."
    ]


def tuning_section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section (none when no run was tuned)."""
    if frame.empty or "tuned" not in frame.columns or not frame["tuned"].any():
        return []
    tuned = frame[frame["tuned"]]
    lines = [
        "## Default vs tuned (equal-budget tuning)",
        "",
        "Each objective tuned with the same number of trials (`ftbench tune`: TPE, median pruning on "
        "validation scores, validation data only), then its default and best configurations re-run with the "
        "same seeds and evaluated on test once. Cells: mean ± half-width of the 95% t-interval over seeds.",
        "",
    ]
    for base_group in sorted(tuned["tuning_base_group"].dropna().unique()):
        group_tuned = tuned[tuned["tuning_base_group"] == base_group]
        defaults = frame[(frame["group"] == base_group) & ~frame["tuned"]]
        objectives = sorted(group_tuned["objective"].unique(), key=objective_rank)
        views = sorted(int(v) for v in group_tuned["views"].unique())
        dataset = group_tuned.iloc[0]["dataset"]
        metrics = informative_metrics(pd.concat([defaults, group_tuned]))
        qtasks = group_tuned["query_task"].dropna() if "query_task" in group_tuned.columns else pd.Series([], dtype=object)
        qname = str(qtasks.iloc[0]) if len(qtasks) else QUERY_TASK

        def task_name(t: str) -> str:
            return qname if t == QUERY_TASK else t  # noqa: B023 - called only in this iteration

        lines += [f"### {dataset}: default vs tuned [group {base_group}]", ""]
        header = (
            ["objective", "V"]
            + [f"{task_name(t)} {m} {kind}" for t, m in metrics for kind in ("default", "tuned")]
            + ["trials", "best parameters"]
        )
        rows = []
        before: dict[str, dict[int, float]] = {}  # label -> seed -> value on the first metric
        after: dict[str, dict[int, float]] = {}
        for objective in objectives:
            for v in views:
                t_rows = group_tuned[(group_tuned["objective"] == objective) & (group_tuned["views"] == v)]
                default_hash = t_rows["tuning_default_objective_config"].dropna()
                d_rows = defaults[(defaults["objective"] == objective) & (defaults["views"] == v)]
                if len(default_hash):
                    d_rows = d_rows[d_rows["objective_config"] == default_hash.iloc[0]]
                cells = []
                for i, (t, m) in enumerate(metrics):
                    column = f"{t}/{m}"
                    d_values, t_values = _values(d_rows, column), _values(t_rows, column)
                    cells += [fmt_interval(cell_interval(d_values)), fmt_interval(cell_interval(t_values))]
                    if i == 0:
                        label = objective if len(views) == 1 else f"{objective} V={v}"
                        before[label], after[label] = d_values, t_values
                first = t_rows.iloc[0] if len(t_rows) else None
                rows.append(
                    [objective, str(v)]
                    + cells
                    + [
                        str(first["tuning_trials"]) if first is not None else "—",
                        str(first["tuning_best_params"]) if first is not None else "—",
                    ]
                )
        lines += [md_table(header, rows, align_first=2), ""]
        if metrics:
            t, m = metrics[0]
            rank_before, rank_after = _ranking(_means(before)), _ranking(_means(after))
            lines.append(
                f"Columns: each task's informative metric (the first of its candidates that no objective "
                f"saturates). Ranking on {task_name(t)} {m} (mean over seeds), default: "
                + (" > ".join(rank_before) or "no default runs")
                + "; tuned: "
                + (" > ".join(rank_after) or "—")
                + "."
            )
            lines += winner_change_lines(decide_winner(before), decide_winner(after))
            lines.append("")
    return lines
