"""Which metric heads a comparison group, and readable names for metrics and groups.

A metric at which every objective scores above 0.99 cannot tell objectives apart (recall@500 on a
20,000-item catalog is 0.986-1.000 for all of them). Each group's headline metric is chosen by
this rule, stated in the report:

    candidates, in order: recall@500, recall@100, recall@50, recall@10, ndcg@10 (query task);
    the first whose best cell (objective x V, mean over seeds) is below SATURATION = 0.95;
    if every candidate saturates, the one with the lowest best cell.

Recall@500 comes first because it is the metric of the paper's claim; smaller cut-offs take over
when the catalog is small enough for it to saturate.
"""

from __future__ import annotations

import pandas as pd

from ..eval.metric_registry import metric_label as registry_label
from ..schema import QUERY_TASK

CANDIDATES = ("recall@500", "recall@100", "recall@50", "recall@10", "ndcg@10")
SATURATION = 0.95
RULE = (
    f"the first of {', '.join(CANDIDATES)} at which no objective's mean (over seeds, at any V) reaches "
    f"{SATURATION:.2f}; if all reach it, the one with the lowest best mean"
)


def choose_headline(
    data: pd.DataFrame, task: str = QUERY_TASK, candidates: tuple[str, ...] = CANDIDATES
) -> tuple[str | None, str]:
    """(metric, why) for one group's rows of the results frame by the rule above, over `task`'s
    `candidates` (default: the query task's); (None, why) where the group scores none of them."""
    best: dict[str, float] = {}
    for metric in candidates:
        column = f"{task}/{metric}"
        if column in data.columns and data[column].notna().any():
            best[metric] = float(data.groupby(["objective_label", "views"])[column].mean().max())
    if not best:
        return None, f"no {'query-task' if task == QUERY_TASK else task} metric in this group"
    for metric, value in best.items():
        if value < SATURATION:
            skipped = [
                f"{m} (best {v:.3f})" for m, v in best.items() if m != metric and candidates.index(m) < candidates.index(metric)
            ]
            why = f"best mean {value:.3f}" + (f"; saturated: {', '.join(skipped)}" if skipped else "")
            return metric, why
    metric = min(best, key=best.__getitem__)
    return metric, f"every candidate is at or above {SATURATION:.2f}; {metric} has the lowest best mean ({best[metric]:.3f})"


_TASK_NAMES = {
    "query->item": "query → item",
    "title->image": "title → image",
    "image->title": "image → title",
    "aux->item": "auxiliary view → item",
    "image->item": "image → item",
    "text->item": "text → item",
}


def metric_label(column_or_metric: str, task: str | None = None) -> str:
    """`query->item/recall@100` -> `Recall@100, query → item`; `ndcg@10` -> `NDCG@10`."""
    if "/" in column_or_metric:
        task, metric = column_or_metric.split("/", 1)
    else:
        metric = column_or_metric
    text = registry_label(metric)
    return f"{text}, {_TASK_NAMES.get(task, task)}" if task else text


def split_changes(changes: str) -> list[str]:
    """`a=1, b=(2, 3)` -> [`a=1`, `b=(2, 3)`]: the `group_changes` text back into its changes (a
    list value is written in brackets with its own commas)."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(changes):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and changes.startswith(", ", i):
            out.append(changes[start:i])
            start = i + 2
    tail = changes[start:]
    return [c for c in out + [tail] if c]


#: the paper-scale preset's own changes: said as "paper scale" in a group's title
PAPER_SCALE_CHANGES = ("dataset.items=", "dataset.interactions=")


def group_descriptions(frame: pd.DataFrame) -> dict[str, str]:
    """group -> what sets it apart from the other groups of its data set, in a few words.

    From the group's changes off the default configs: the paper-scale preset's items and
    interactions are said as "paper scale", a synthetic group with the default data says "default
    data", changes that every group of the data set shares are left out (the group's section lists
    all of them), and data-set fields lose their `dataset.` prefix. A group with no change is the
    "default config"."""
    firsts = frame.groupby("group", sort=True).first()
    changes = {g: split_changes(str(firsts.loc[g, "group_changes"] or "")) for g in firsts.index}
    shared: dict[str, set[str]] = {}
    for dataset, rows in firsts.groupby("dataset"):
        sets = [set(changes[g]) for g in rows.index]
        shared[dataset] = set.intersection(*sets) if len(sets) > 1 else set()
    out = {}
    for g in firsts.index:
        first = firsts.loc[g]
        own = [c for c in changes[g] if c not in shared[first["dataset"]]] or changes[g]
        words = []
        if first.get("paper_scale"):
            words.append("paper scale")
            own = [c for c in own if not c.startswith(PAPER_SCALE_CHANGES)]
        elif first.get("default_data") and own:
            words.append("default data")
        words += [c.removeprefix("dataset.") for c in own]
        out[g] = ", ".join(words) if words else "default config"
    return out


def group_titles(frame: pd.DataFrame) -> dict[str, str]:
    """group -> `synthetic, 20,000 items: aux_informativeness=0.0`: the data set, its size and
    what sets the group apart (`group_descriptions`)."""
    firsts = frame.groupby("group", sort=True).first()
    descriptions = group_descriptions(frame)
    out = {}
    for g in firsts.index:
        items = firsts.loc[g, "items"]
        size = f", {int(items):,} items" if items is not None and pd.notna(items) else ""
        out[g] = f"{firsts.loc[g, 'dataset']}{size}: {descriptions[g]}"
    return out
