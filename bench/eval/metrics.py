"""Retrieval metrics from ranked lists (query -> item) and from single-target ranks (cross-view).

recall@K, hit@K, ndcg@K and mrr@C by default, map@K when `eval.metrics` asks for it; each metric is
one entry of `ftbench.eval.metric_registry` (its kernel on the statistics computed here once per
chunk of queries). Definitions: `ranked_list_metrics` (Notes) and docs/method.md#metrics.

What a caller must know: the metrics are computed on the given ranked list, in which `exact_topk`
has already broken equal scores by lower item index, so libraries that average over tied scores
(torchmetrics' and scikit-learn's ndcg) or pick among them arbitrarily (topk-based recall) can
differ when a relevant and a non-relevant item tie across a cutoff. Queries with no relevant item
are excluded from every average and counted (`num_excluded`). K values with K >= num_items are not
applicable (recall@K and hit@K would be trivially 1): they are left out of `metrics` and listed in
`not_applicable_k` for the caller to record, not silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .metric_registry import DEFAULT_METRICS, METRICS, RankedLists, check_metric_families, metric_names

DEFAULT_KS: tuple[int, ...] = (1, 10, 50, 100, 500)


@dataclass
class RetrievalReport:
    """Averaged metrics, per-query values, and what was excluded or not applicable.

    metrics:        {"recall@10": ..., "hit@10": ..., "ndcg@10": ..., "mrr@500": ...} averaged over
                    the evaluated queries (plain floats; NaN-free; empty when no query counts).
    per_query:      same keys, float64 arrays [num_queries] aligned with `query_index`.
    query_index:    positions (rows of the input) of the evaluated queries.
    num_queries:    number of evaluated queries.
    num_excluded:   queries left out because they have no relevant item.
    not_applicable_k: requested K values >= num_items (not reported).
    ks:             the applicable K values, ascending.
    mrr_cutoff:     ranks beyond this count as reciprocal rank 0 (None: the full ranking).
    """

    metrics: dict[str, float]
    per_query: dict[str, np.ndarray] = field(repr=False)
    query_index: np.ndarray = field(repr=False)
    num_queries: int
    num_excluded: int
    not_applicable_k: list[int]
    ks: list[int]
    mrr_cutoff: int | None

    def summary(self) -> dict:
        """JSON-ready summary (no per-query arrays)."""
        return {
            "metrics": dict(self.metrics),
            "num_queries": self.num_queries,
            "num_excluded": self.num_excluded,
            "not_applicable_k": list(self.not_applicable_k),
            "ks": list(self.ks),
            "mrr_cutoff": self.mrr_cutoff,
        }


def _as_numpy(x, dtype, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: expected numbers convertible to {np.dtype(dtype).name}") from exc


def split_ks(ks, num_items: int) -> tuple[list[int], list[int]]:
    """(applicable K ascending, not-applicable K >= num_items ascending); K must be >= 1."""
    vals = sorted({int(k) for k in ks})
    if not vals:
        raise ValueError("ks: give at least one cutoff K")
    if vals[0] < 1:
        raise ValueError(f"ks: every cutoff K must be >= 1, got {vals[0]}")
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    return [k for k in vals if k < num_items], [k for k in vals if k >= num_items]


def relevance_subset(relevant_indptr, relevant_items, relevant_grades, rows):
    """CSR relevance of the queries `rows` (in that order), e.g. the test split of a QuerySet.

    Returns (indptr [len(rows) + 1], items, grades) such that new query r has the relevant items of
    old query rows[r]. Vectorised (one np.repeat), no per-query loop.
    """
    indptr = _as_numpy(relevant_indptr, np.int64, "relevant_indptr")
    items = np.asarray(relevant_items)
    grades = np.asarray(relevant_grades)
    rows = _as_numpy(rows, np.int64, "rows").reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= len(indptr) - 1):
        raise ValueError(f"rows: query positions must lie in [0, {len(indptr) - 1})")
    counts = indptr[rows + 1] - indptr[rows]
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_indptr[1:])
    take = np.repeat(indptr[rows] - new_indptr[:-1], counts) + np.arange(new_indptr[-1])
    return new_indptr, items[take], grades[take]


def _discounts(n: int) -> np.ndarray:
    """1 / log2(p + 1) for positions p = 1..n."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def ranked_list_metrics(
    ranked,
    relevant_indptr,
    relevant_items,
    relevant_grades,
    num_items: int,
    ks=DEFAULT_KS,
    *,
    query_chunk: int = 8192,
    mrr_at: int | None = None,
    metrics=DEFAULT_METRICS,
) -> RetrievalReport:
    """The `metrics` (registry names; default recall@K, hit@K, ndcg@K, mrr@C) of ranked lists
    against CSR relevance (definitions in Notes).

    ranked:           int [Q, Kmax], row q = query q's items, best first, distinct, in [0, num_items).
                      (Repeats of a relevant item are detected and raise; repeats of other items,
                      which cannot change any metric, are not searched for.)
    relevant_indptr:  int [Q + 1]; query q's relevant items are
                      relevant_items[relevant_indptr[q]:relevant_indptr[q + 1]] with grades
                      relevant_grades[...] (> 0), as in `ftbench.data.queries.QuerySet`.
    num_items:        catalog size N; K >= N is not applicable (returned in `not_applicable_k`).
    ks:               cutoffs; every applicable K must be <= Kmax.
    query_chunk:      queries processed at once (memory ~ 40 * query_chunk * Kmax bytes).
    mrr_at:           the reciprocal rank's cut-off C in its name `mrr@C` (default Kmax); a C above
                      Kmax needs Kmax == num_items (the full ranking).
    metrics:          names in `ftbench.eval.metric_registry.METRICS`, each computed by its kernel
                      on the shared statistics of a chunk (`RankedLists`).

    Vectorised over queries (numpy): membership of ranked items in the relevant set by a sorted
    key search on q * N + item, cumulative sums over positions for hits and DCG, and a segmented
    sum for the ideal DCG.

    Notes
    -----
    For one query with relevant set R (|R| >= 1, grades g_i > 0) and ranked list r_1, ..., r_Kmax
    (distinct items, best first, as returned by `ftbench.kernels.search.exact_topk`)::

        hits@K    = |{r_1..r_K} & R|
        recall@K  = hits@K / |R|
        hit@K     = 1 if hits@K > 0 else 0
        DCG@K     = sum_{p=1..K} gain(r_p) / log2(p + 1),   gain(i) = g_i (linear grade) if i in R else 0
        IDCG@K    = sum_{p=1..min(K, |R|)} g_(p) / log2(p + 1), g_(1) >= g_(2) >= ... all of R's grades
        ndcg@K    = DCG@K / IDCG@K
        map@K     = (1/|R|) * sum_{p=1..K, r_p in R} hits@p / p   (average precision at K; opt-in)
        mrr@C     = 1 / p* where p* is the position of the first relevant item within the top C
                    (0 if none there)

    mrr@C is the reciprocal rank named with its cut-off, as ranx and ir-measures (trec_eval's
    `recip_rank` on a run cut at C) name it; C is Kmax unless `mrr_at` names a larger cut-off,
    allowed only when the list is the whole catalog (Kmax = N <= C: every rank is within C).
    `RetrievalReport.mrr_cutoff` records C. map@K divides by |R|, not min(|R|, K): the convention
    of trec_eval's `map_cut_K` and hence of ir-measures' `AP@K` (checked against it in the tests),
    so AP@K < 1 for a perfect ranking when |R| > K; relevance is binary for map@K (every grade > 0
    counts), as in trec_eval. The IDCG runs over *all* relevant items (not only those retrieved), so
    ndcg@K < 1 whenever a better ordering of R exists within the top K. Linear gains (not 2^g - 1)
    match torchmetrics / scikit-learn `ndcg_score`; with binary relevance (all grades 1) the two
    gain conventions coincide.

    References
    ----------
    K. Jarvelin, J. Kekalainen, "Cumulated gain-based evaluation of IR techniques", ACM TOIS 2002.
    """
    ranked = _as_numpy(ranked, np.int64, "ranked")
    indptr = _as_numpy(relevant_indptr, np.int64, "relevant_indptr")
    items = _as_numpy(relevant_items, np.int64, "relevant_items")
    grades = _as_numpy(relevant_grades, np.float64, "relevant_grades")
    num_items = int(num_items)
    if ranked.ndim != 2:
        raise ValueError(f"ranked: expected a 2-D array [Q, Kmax], got shape {ranked.shape}")
    nq, kmax = ranked.shape
    if indptr.shape != (nq + 1,):
        raise ValueError(f"relevant_indptr: expected {nq + 1} entries for {nq} ranked queries, got {indptr.shape}")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(items):
        raise ValueError("relevant_indptr: must start at 0, be non-decreasing and end at len(relevant_items)")
    if items.shape != grades.shape:
        raise ValueError(f"relevant_items ({items.shape}) and relevant_grades ({grades.shape}) differ in shape")
    applicable, not_applicable = split_ks(ks, num_items)
    if applicable and applicable[-1] > kmax:
        raise ValueError(
            f"ranked: lists hold Kmax={kmax} items but K={applicable[-1]} was requested (catalog size {num_items}); "
            "search with k >= max(K)"
        )
    if kmax > num_items:
        raise ValueError(f"ranked: Kmax={kmax} exceeds the catalog size {num_items}")
    if ranked.size and (ranked.min() < 0 or ranked.max() >= num_items):
        raise ValueError(f"ranked: item indices must lie in [0, {num_items}) (faiss pads missing results with -1)")
    if items.size and (items.min() < 0 or items.max() >= num_items):
        raise ValueError(f"relevant_items: item indices must lie in [0, {num_items})")
    if not np.all(np.isfinite(grades)) or np.any(grades <= 0):
        raise ValueError("relevant_grades: every grade must be finite and > 0 (a relevant item with gain 0 is ambiguous)")
    mrr_at = kmax if mrr_at is None else int(mrr_at)
    if mrr_at < kmax or (mrr_at > kmax and kmax != num_items):
        raise ValueError(
            f"mrr_at={mrr_at}: the reciprocal rank at cut-off C needs lists of exactly C items, or the whole "
            f"catalog ({num_items} items) when C is larger; the lists hold {kmax}"
        )
    counts = np.diff(indptr)
    evaluated = np.flatnonzero(counts > 0)
    disc = _discounts(max(kmax, 1))
    # ideal DCG: grades sorted descending within each query, position p within the query
    qid = np.repeat(np.arange(nq), counts)
    order = np.lexsort((-grades, qid))
    g_sorted = grades[order]
    pos = np.arange(len(items)) - indptr[qid]
    idcg: dict[int, np.ndarray] = {}
    for k in applicable:
        w = np.where(pos < k, g_sorted / np.log2(pos + 2.0), 0.0)
        idcg[k] = np.bincount(qid, weights=w, minlength=nq)

    chosen = [METRICS[name] for name in check_metric_families(metrics, "metrics")]
    names = metric_names(metrics, applicable, mrr_at)
    per = {name: np.zeros(nq) for name in names}
    # relevant keys q * N + item, sorted (duplicates are an error)
    keys = qid * num_items + items
    korder = np.argsort(keys, kind="stable")
    keys_sorted, grades_by_key = keys[korder], grades[korder]
    if len(keys_sorted) > 1 and np.any(keys_sorted[1:] == keys_sorted[:-1]):
        dup = int(korder[np.flatnonzero(keys_sorted[1:] == keys_sorted[:-1])[0]])
        raise ValueError(f"relevant_items: query {int(qid[dup])} lists item {int(items[dup])} twice")
    for a in range(0, nq, max(1, int(query_chunk))):
        b = min(nq, a + max(1, int(query_chunk)))
        rk = np.arange(a, b, dtype=np.int64)[:, None] * num_items + ranked[a:b]
        at = np.searchsorted(keys_sorted, rk)
        at_c = np.minimum(at, max(len(keys_sorted) - 1, 0))
        found = (at < len(keys_sorted)) & (keys_sorted[at_c] == rk) if len(keys_sorted) else np.zeros_like(rk, bool)
        gain = np.where(found, grades_by_key[at_c] if len(keys_sorted) else 0.0, 0.0)
        hit_keys = at[found]  # distinct per (query, item): a repeat means a row lists an item twice
        if hit_keys.size > 1 and np.unique(hit_keys).size != hit_keys.size:
            row = a + int(np.flatnonzero([np.unique(r[f]).size != f.sum() for r, f in zip(at, found)])[0])
            raise ValueError(f"ranked: row {row} lists the same relevant item twice")

        def chunk_idcg(k: int, a: int = a, b: int = b) -> np.ndarray:
            """IDCG@k of this chunk's queries (a, b bound now: the loop moves them on)."""
            return idcg[k][a:b]

        lists = RankedLists(found, gain, np.maximum(counts[a:b], 1), chunk_idcg, disc)
        for metric in chosen:
            if metric.per_cutoff:
                for k in applicable:
                    per[f"{metric.name}@{k}"][a:b] = metric.ranked(lists, k)
            elif kmax:
                per[f"{metric.name}@{mrr_at}"][a:b] = metric.ranked(lists, mrr_at)
    per = {name: v[evaluated] for name, v in per.items()}
    metrics = {name: float(v.mean()) for name, v in per.items()} if len(evaluated) else {}
    return RetrievalReport(
        metrics=metrics,
        per_query=per,
        query_index=evaluated,
        num_queries=len(evaluated),
        num_excluded=int(nq - len(evaluated)),
        not_applicable_k=not_applicable,
        ks=applicable,
        mrr_cutoff=mrr_at,
    )


def target_rank_metrics(
    ranks, num_items: int, ks=DEFAULT_KS, *, mrr_cutoff: int | None = None, metrics=DEFAULT_METRICS
) -> RetrievalReport:
    """Metrics for single-target retrieval from 1-based ranks (`ftbench.kernels.search.rank_of_targets`).

    With one relevant item of gain 1 at rank p (IDCG = 1):
        recall@K = hit@K = [p <= K],  ndcg@K = [p <= K] / log2(p + 1),
        mrr@C = 1 / p (0 when p > C), named with `mrr_cutoff` = C; without a cut-off, `mrr` over
        the full ranking; map@K = [p <= K] / p (= mrr@K: |R| = 1).
    `metrics`: registry names, as `ranked_list_metrics`.
    K >= num_items is not applicable (listed in `not_applicable_k`).
    """
    r = _as_numpy(ranks, np.int64, "ranks").reshape(-1)
    num_items = int(num_items)
    applicable, not_applicable = split_ks(ks, num_items)
    if r.size and (r.min() < 1 or r.max() > num_items):
        raise ValueError(f"ranks: 1-based ranks must lie in [1, {num_items}], got [{int(r.min())}, {int(r.max())}]")
    if mrr_cutoff is not None and int(mrr_cutoff) < 1:
        raise ValueError(f"mrr_cutoff must be >= 1 or None, got {mrr_cutoff}")
    rf = r.astype(np.float64)
    cutoff = None if mrr_cutoff is None else int(mrr_cutoff)
    chosen = [METRICS[name] for name in check_metric_families(metrics, "metrics")]
    per: dict[str, np.ndarray] = {name: np.empty(0) for name in metric_names(metrics, applicable, cutoff)}
    for metric in chosen:
        if metric.per_cutoff:
            for k in applicable:
                per[f"{metric.name}@{k}"] = metric.target(rf, k)
        else:
            per[metric.name if cutoff is None else f"{metric.name}@{cutoff}"] = metric.target(rf, cutoff)
    metrics = {name: float(v.mean()) for name, v in per.items()} if r.size else {}
    return RetrievalReport(
        metrics=metrics,
        per_query=per,
        query_index=np.arange(r.size),
        num_queries=int(r.size),
        num_excluded=0,
        not_applicable_k=not_applicable,
        ks=applicable,
        mrr_cutoff=None if mrr_cutoff is None else int(mrr_cutoff),
    )
