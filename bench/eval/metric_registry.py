"""Every retrieval metric ftbench reports, defined once: its name, how it is computed from the
shared per-position statistics of a ranked list (or from a single target's rank), its label,
its range, its direction and whether it is named with a cut-off K.

Evaluation (`ftbench.eval.metrics`), checkpoint selection (`train.select_metric`), the report
(bounds of intervals, labels), the printed table and the export read this table; adding a
metric is one `Metric` entry here (and its test).

Torch-free (numpy only): the report and the command line read the labels and bounds without
importing torch.

Names: a metric computed at each cut-off K is written `name@K` (`recall@10`); a metric computed
once, at the ranked list's cut-off C, is written `name@C` (`mrr@500`), or `name` without a
cut-off where it runs over the full ranking (the cross-view tasks' `mrr` of schema version 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np


class RankedLists:
    """The statistics a chunk of ranked lists shares among the metrics, each computed once.

    found:        bool [Q, Kmax], position p of query q holds one of q's relevant items
    gain:         float [Q, Kmax], that item's grade (0 where not relevant)
    num_relevant: float [Q], |R| (at least 1: queries without a relevant item are left out later)
    ideal_dcg:    K -> float [Q], IDCG@K over all of R's grades
    discounts:    float [Kmax], 1 / log2(p + 1) for p = 1..Kmax
    """

    def __init__(
        self,
        found: np.ndarray,
        gain: np.ndarray,
        num_relevant: np.ndarray,
        ideal_dcg: Callable[[int], np.ndarray],
        discounts: np.ndarray,
    ) -> None:
        self.found = found
        self.gain = gain
        self.num_relevant = num_relevant
        self.ideal_dcg = ideal_dcg
        self.discounts = discounts

    @cached_property
    def cum_hits(self) -> np.ndarray:
        """[Q, Kmax]: hits@p, relevant items within the top p."""
        return np.cumsum(self.found, axis=1)

    @cached_property
    def cum_dcg(self) -> np.ndarray:
        """[Q, Kmax]: DCG@p."""
        return np.cumsum(self.gain * self.discounts[None, : self.found.shape[1]], axis=1)

    @cached_property
    def cum_precision_at_hits(self) -> np.ndarray:
        """[Q, Kmax]: sum over positions i <= p holding a relevant item of precision@i = hits@i / i."""
        positions = np.arange(1, self.found.shape[1] + 1, dtype=np.float64)
        return np.cumsum(np.where(self.found, self.cum_hits / positions[None, :], 0.0), axis=1)


def _recall_ranked(lists: RankedLists, k: int) -> np.ndarray:
    return lists.cum_hits[:, k - 1] / lists.num_relevant


def _hit_ranked(lists: RankedLists, k: int) -> np.ndarray:
    return (lists.cum_hits[:, k - 1] > 0).astype(np.float64)


def _ndcg_ranked(lists: RankedLists, k: int) -> np.ndarray:
    ideal = lists.ideal_dcg(k)
    return np.divide(lists.cum_dcg[:, k - 1], ideal, out=np.zeros(len(ideal)), where=ideal > 0)


def _map_ranked(lists: RankedLists, k: int) -> np.ndarray:
    return lists.cum_precision_at_hits[:, k - 1] / lists.num_relevant


def _mrr_ranked(lists: RankedLists, k: int | None) -> np.ndarray:
    # the whole list is within the cut-off (`ranked_list_metrics` checks the list is the top C)
    if lists.found.shape[1] == 0:
        return np.zeros(lists.found.shape[0])
    first = np.argmax(lists.found, axis=1)
    return np.where(lists.found.any(axis=1), 1.0 / (first + 1.0), 0.0)


# Single target (one relevant item of grade 1) at 1-based rank p, as float64 array `rank`.
def _inside(rank: np.ndarray, k: int | None) -> np.ndarray:
    return np.ones(rank.shape, bool) if k is None else rank <= k


def _recall_target(rank: np.ndarray, k: int | None) -> np.ndarray:
    return _inside(rank, k).astype(np.float64)


def _ndcg_target(rank: np.ndarray, k: int | None) -> np.ndarray:
    return np.where(_inside(rank, k), 1.0 / np.log2(rank + 1.0), 0.0)


def _reciprocal_target(rank: np.ndarray, k: int | None) -> np.ndarray:
    return np.where(_inside(rank, k), 1.0 / np.maximum(rank, 1.0), 0.0)


@dataclass(frozen=True)
class Metric:
    """One metric. `ranked(lists, K)` and `target(rank, K)` return per-query values [Q]."""

    name: str
    label: str  # in the report: `Recall@100`
    short: str  # in the printed table's header: `R@100`
    definition: str  # for one query with relevant set R, ranked list r_1, r_2, ...
    per_cutoff: bool  # True: one value per K of eval.ks (`recall@K`); False: one, at the list's cut-off C
    ranked: Callable[[RankedLists, int], np.ndarray]  # K, or the list's cut-off C
    target: Callable[[np.ndarray, int | None], np.ndarray]
    bounds: tuple[float, float] = (0.0, 1.0)
    higher_is_better: bool = True


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("recall", "Recall", "R", "hits@K / |R|, hits@K = |{r_1..r_K} ∩ R|", True, _recall_ranked, _recall_target),
        Metric("hit", "Hit rate", "Hit", "1 if hits@K > 0 else 0", True, _hit_ranked, _recall_target),
        Metric("ndcg", "NDCG", "NDCG", "DCG@K / IDCG@K, linear gains, IDCG over all of R", True, _ndcg_ranked, _ndcg_target),
        # trec_eval's map_cut_K (ir-measures AP@K) divides by |R|, not min(|R|, K): AP@K < 1 when
        # |R| > K even for a perfect ranking; followed here so that the numbers are trec_eval's
        Metric(
            "map",
            "MAP",
            "MAP",
            "(1/|R|) * sum_{p<=K, r_p in R} precision@p (trec_eval map_cut_K, ir-measures AP@K)",
            True,
            _map_ranked,
            _reciprocal_target,
        ),
        Metric(
            "mrr",
            "MRR",
            "MRR",
            "1 / (position of the first relevant item) if within the top C, else 0",
            False,
            _mrr_ranked,
            _reciprocal_target,
        ),
    )
}

#: the metrics computed unless `eval.metrics` names others (map is asked for: see EvalConfig)
DEFAULT_METRICS: tuple[str, ...] = ("recall", "hit", "ndcg", "mrr")

_NAME = re.compile(r"(?P<name>[a-z_]+)(@(?P<k>[0-9]+))?")


def parse_metric(text: str) -> tuple[Metric, int | None]:
    """`recall@10` -> (recall, 10); `mrr@500` -> (mrr, 500); `mrr` -> (mrr, None). A ValueError
    names what is wrong (unknown metric, a per-cut-off metric without its K, K < 1)."""
    match = _NAME.fullmatch(text) if isinstance(text, str) else None
    metric = METRICS.get(match["name"]) if match else None
    if metric is None:
        raise ValueError(f"metric {text!r}: expected one of {', '.join(metric_patterns())}")
    assert match is not None  # a metric was found by its name
    k = None if match["k"] is None else int(match["k"])
    if k is None and metric.per_cutoff:
        raise ValueError(f"metric {text!r}: {metric.name} needs its cut-off, {metric.name}@K")
    if k is not None and k < 1:
        raise ValueError(f"metric {text!r}: the cut-off must be at least 1")
    return metric, k


def metric_patterns() -> list[str]:
    """`recall@K`, ..., `mrr[@C]`: the forms a metric name takes, for messages."""
    return [f"{m.name}@K" if m.per_cutoff else f"{m.name}[@C]" for m in METRICS.values()]


def is_metric_name(text: str) -> bool:
    try:
        parse_metric(text)
    except ValueError:
        return False
    return True


def is_task_metric(text: str) -> bool:
    """`<task>/<metric>` or `<task>/mean <metric>` (a mean over tasks), the form of
    `train.select_metric`: a task name without `/`, then a metric of this registry."""
    task, slash, metric = text.partition("/")
    return bool(task) and bool(slash) and is_metric_name(metric.removeprefix("mean "))


def metric_of(column_or_metric: str) -> tuple[Metric, int | None] | None:
    """(metric, K) of a `task/metric` column or a bare metric name; None for other columns
    (`queries`, config fields)."""
    try:
        return parse_metric(column_or_metric.rsplit("/", 1)[-1])
    except ValueError:
        return None


def metric_bounds(column_or_metric: str) -> tuple[float, float] | None:
    """The metric's range ((0, 1) for every metric here), None for a column that is no metric."""
    found = metric_of(column_or_metric)
    return found[0].bounds if found else None


def metric_label(metric: str, short: bool = False) -> str:
    """`recall@100` -> `Recall@100` (short: `R@100`); a name that is no metric comes back as is."""
    found = metric_of(metric)
    if found is None:
        return metric
    entry, k = found
    text = entry.short if short else entry.label
    return f"{text}@{k}" if k is not None else text


def check_metric_families(names, where: str) -> tuple[str, ...]:
    """The metric names of an option (e.g. eval option 'metrics'), checked: known, no repeats."""
    if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: expected a non-empty list of metric names ({', '.join(METRICS)}), got {names!r}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"{where}: unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: a metric is listed twice in {list(names)!r}")
    return tuple(names)


def metric_names(families, ks, cutoff: int | None) -> list[str]:
    """Result keys in their order: per K (ascending) the per-cut-off metrics in registry order,
    then the metrics taken once at `cutoff` (`mrr@500`; `mrr` when cutoff is None)."""
    chosen = [m for m in METRICS.values() if m.name in set(families)]
    names = [f"{m.name}@{k}" for k in ks for m in chosen if m.per_cutoff]
    return names + [m.name if cutoff is None else f"{m.name}@{cutoff}" for m in chosen if not m.per_cutoff]
