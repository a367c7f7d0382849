"""Checkpoint selection on the validation split: which metric validation can score, and its value.

Selection reads the validation split only, in every case, and never falls back to the test items
(see docs/method.md, section protocol). Functions of an `Evaluator` (its first argument, `self`).
"""

from __future__ import annotations

import numpy as np

from .metric_registry import metric_of, parse_metric


def _largest_recall(metric_names) -> str | None:
    """The 'recall@K' name with the largest K among `metric_names`, or None."""
    recalls = [name for name in metric_names if name.startswith("recall@")]
    return max(recalls, key=lambda name: int(name.split("@")[1])) if recalls else None


def split_option_hint(self) -> str:
    """How a user gives the validation split items, in this data set's own option names."""
    ds = self.dataset
    if ds.cross_view_items is not None:
        return "this data set splits its queries, not its items: select on the query task"
    names = [k for k in ("item_fractions", "item_val_fraction") if k in ds.config]
    if not names and ds.name == "synthetic":
        names = ["item_fractions"]
    return f"give validation items a share (dataset.{names[0]})" if names else "give validation items a share"


def resolve_select_metric(self, select_metric: str) -> str:
    """The selection metric as validation can score it, or a ValueError saying why not.

    Selection reads the validation split only, in every case: the query task scores the
    validation queries (the catalog, shared by every split, is their gallery) and the cross-view
    tasks score the validation items. `auto` picks the query task when validation has queries,
    else the cross-view tasks when it has at least 2 items, else stops. An explicit metric that
    validation cannot score stops the run before training, naming the option and what validation
    lacks: it never falls back to the test items (grocery-store, for one, has no validation
    items: its split is over photos, and its test cross-view tasks run on every product).
    """
    ds = self.dataset
    n_val_queries = len(ds.queries.indices("val")) if ds.queries is not None else 0
    n_val_items = len(ds.items("val"))
    query_metric = f"{ds.query_task}/recall@100"
    if select_metric == "auto":
        if n_val_queries:
            return query_metric
        if n_val_items >= 2:
            return "cross-view/mean recall@10"
        raise ValueError(
            f"train option 'select_metric' 'auto': the validation split of data set {ds.name!r} has no "
            f"queries and {n_val_items} item(s), so no validation task can select a checkpoint (cross-view "
            f"selection needs at least 2 validation items; test items are never used): "
            f"{split_option_hint(self)}"
            + (", or give validation queries a share" if ds.queries is not None else "")
            + ", or set train.select_metric=last to keep the final state without selection"
        )
    task, metric = select_metric.split("/", 1)
    family = parse_metric(metric.removeprefix("mean "))[0].name
    if family not in self.config.metrics:
        raise ValueError(
            f"train option 'select_metric' {select_metric!r}: eval option 'metrics' computes "
            f"{', '.join(self.config.metrics)}, not {family}; add it to eval.metrics or select on one of those"
        )
    if task not in ("cross-view", ds.query_task) or (task == ds.query_task and ds.queries is None):
        poses = f"'{query_metric}', " if ds.queries is not None else ""
        raise ValueError(
            f"train option 'select_metric' {select_metric!r}: data set {ds.name!r} has no task {task!r}; "
            f"use {poses}'cross-view/mean recall@10' or 'auto'"
        )
    if task == "cross-view" and n_val_items < 2:
        instead = f"use '{query_metric}' (validation has {n_val_queries} queries) or 'auto'; " if n_val_queries else ""
        raise ValueError(
            f"train option 'select_metric' {select_metric!r}: the validation split of data set {ds.name!r} "
            f"has {n_val_items} item(s); cross-view selection needs at least 2 validation items and never "
            f"falls back to the test items; {instead}{split_option_hint(self)}, or set "
            "train.select_metric=last (no selection)"
        )
    if task == ds.query_task and not n_val_queries:
        instead = "use 'cross-view/mean recall@10' or 'auto', or " if n_val_items >= 2 else ""
        raise ValueError(
            f"train option 'select_metric' {select_metric!r}: data set {ds.name!r} has no validation queries; "
            f"{instead}give validation queries a share of the query split"
        )
    return select_metric


def validation_score(self, select_metric: str, gallery_size: int, seed: int) -> tuple[str, float]:
    """The checkpoint-selection score on the validation split only (see `resolve_select_metric`)."""
    ds = self.dataset
    select_metric = resolve_select_metric(self, select_metric)
    task, metric = select_metric.split("/", 1)
    if task == ds.query_task:
        q = ds.queries
        vidx = q.indices("val")
        rel = np.unique(np.concatenate([q.relevant(i) for i in vidx])) if len(vidx) else np.empty(0, np.int64)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
        n = ds.catalog.num_items
        if n <= gallery_size:
            gallery = np.arange(n)
        else:
            extra = rng.choice(n, min(gallery_size, n), replace=False)
            gallery = np.union1d(rel, extra)[: max(gallery_size, len(rel))]
            gallery = np.union1d(rel, gallery)
        # a metric at one of the ks (recall@K, ..., mrr@K: every registry metric is a function of
        # the top K) needs only the top K: the same value from a shallower search; any other (a K
        # at or above the gallery) the full run
        found = metric_of(metric)
        depth = found[1] if found else None
        if depth is not None and not (depth in self.config.ks and depth < len(gallery)):
            depth = None
        m, _, _ = self.query_task("val", gallery=gallery, depth=depth)
        k_metric: str | None = metric
        values = m.get(task, {})
        if k_metric not in values:  # K too large for the gallery: fall back to the largest K
            k_metric = _largest_recall(values)
            if k_metric is None:
                return select_metric, 0.0
        return f"{task}/{k_metric}", float(values[k_metric])
    items = ds.items("val")  # at least 2 (resolve_select_metric); never the test items
    if len(items) > 2000:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A2]))
        items = np.sort(rng.choice(items, 2000, replace=False))
    m, _ = self.cross_view(items)
    key = metric.replace("mean ", "")
    vals = [v[key] for t, v in m.items() if key in v]
    if not vals and key.startswith("recall@"):
        # K at or above the validation gallery: fall back to the largest K every task has, and
        # say so in the name (as the query task does), rather than scoring every checkpoint 0
        common = _largest_recall(set.intersection(*[set(v) for v in m.values()])) if m else None
        if common is not None:
            key = common
            vals = [v[key] for v in m.values()]
            select_metric = f"{task}/mean {key}"
    if not vals:
        # nothing to select on (e.g. a handful of validation items): every checkpoint scores 0
        # and the first is kept - said in the recorded metric name, not hidden
        return (f"{select_metric} (not scorable on {len(items)} validation items: constant 0, first checkpoint kept)"), 0.0
    return select_metric, float(np.mean(vals))
