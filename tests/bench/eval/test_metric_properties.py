"""Property-based tests (hypothesis) of the retrieval metrics, on generated rankings, relevance
sets and grades, against a per-query reference written from the definitions.

Why: every number ftbench reports goes through `ranked_list_metrics` or `target_rank_metrics`,
which are vectorised over queries (sorted keys, cumulative sums, segmented sums) for speed. The
example tests (test_metrics.py) compare them with torchmetrics and faiss on a few cases; here
hypothesis searches the corners - a single item, K = Kmax, queries without relevant items,
grades that tie, a relevant set larger than K - and checks:

- each metric equals the plain per-query definition (module docstring of ftbench.eval.metrics);
- recall@K and hit@K never decrease with K, hit@K >= recall@K, every value is in [0, 1];
- a perfect ranking scores ndcg@K = 1 and recall@K = min(K, |R|) / |R|;
- queries without a relevant item are excluded from the averages and counted, never averaged in;
- the rank `rank_of_targets` reports is the position of the target in `exact_topk`'s full
  ranking (ties by lower index), so cross-view metrics and query metrics rank alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ftbench.eval.metrics import ranked_list_metrics, target_rank_metrics
from ftbench.kernels.search import exact_topk, rank_of_targets
from hypothesis import given, settings
from hypothesis import strategies as st


@st.composite
def retrieval_cases(draw):
    n = draw(st.integers(1, 25))
    kmax = draw(st.integers(1, n))
    nq = draw(st.integers(1, 6))
    ranked = np.stack([np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(n)[:kmax] for _ in range(nq)])
    relevant = [draw(st.lists(st.integers(0, n - 1), unique=True, max_size=min(n, 6))) for _ in range(nq)]
    grades = [[draw(st.sampled_from([0.01, 0.1, 0.5, 1.0, 2.0, 3.0])) for _ in r] for r in relevant]
    ks = draw(st.lists(st.integers(1, kmax), min_size=1, max_size=4, unique=True))
    return n, ranked, relevant, grades, ks


def _reference(ranked_row, relevant, grades, k):
    """recall@k, hit@k, ndcg@k (linear gains, IDCG over all of R) and mrr for one query."""
    gain = dict(zip(relevant, grades))
    top = ranked_row[:k].tolist()
    hits = sum(item in gain for item in top)
    dcg = sum(gain.get(item, 0.0) / math.log2(p + 2) for p, item in enumerate(top))
    ideal = sum(g / math.log2(p + 2) for p, g in enumerate(sorted(grades, reverse=True)[:k]))
    first = next((p for p, item in enumerate(ranked_row.tolist()) if item in gain), None)
    return hits / len(relevant), float(hits > 0), dcg / ideal, 0.0 if first is None else 1.0 / (first + 1)


@settings(max_examples=150, deadline=None)
@given(case=retrieval_cases())
def test_ranked_list_metrics_equal_the_per_query_definitions(case):
    n, ranked, relevant, grades, ks = case
    indptr = np.cumsum([0] + [len(r) for r in relevant])
    items = np.array([i for r in relevant for i in r], dtype=np.int64)
    gains = np.array([g for gs in grades for g in gs], dtype=np.float64)
    report = ranked_list_metrics(ranked, indptr, items, gains, n, ks)
    evaluated = [q for q, r in enumerate(relevant) if r]
    assert report.num_queries == len(evaluated) and report.num_excluded == len(relevant) - len(evaluated)
    assert report.not_applicable_k == sorted(k for k in ks if k >= n)
    applicable = sorted(k for k in ks if k < n)
    if not evaluated:
        assert report.metrics == {}
        return
    for k in applicable:
        ref = np.array([_reference(ranked[q], relevant[q], grades[q], k) for q in evaluated])
        np.testing.assert_allclose(report.per_query[f"recall@{k}"], ref[:, 0], atol=1e-12)
        np.testing.assert_allclose(report.per_query[f"hit@{k}"], ref[:, 1], atol=1e-12)
        np.testing.assert_allclose(report.per_query[f"ndcg@{k}"], ref[:, 2], atol=1e-12)
        assert abs(report.metrics[f"recall@{k}"] - ref[:, 0].mean()) < 1e-12
    mrr = [_reference(ranked[q], relevant[q], grades[q], 1)[3] for q in evaluated]
    np.testing.assert_allclose(report.per_query[f"mrr@{ranked.shape[1]}"], mrr, atol=1e-12)
    for name, values in report.per_query.items():
        assert ((values >= 0) & (values <= 1 + 1e-12)).all(), name
    for small, large in zip(applicable, applicable[1:]):
        assert (report.per_query[f"recall@{large}"] >= report.per_query[f"recall@{small}"]).all()
        assert (report.per_query[f"hit@{large}"] >= report.per_query[f"hit@{small}"]).all()
    for k in applicable:
        assert (report.per_query[f"hit@{k}"] >= report.per_query[f"recall@{k}"]).all()


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_a_perfect_ranking_scores_one(n, data):
    relevant = data.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1, max_size=n))
    grades = data.draw(st.lists(st.integers(1, 3), min_size=len(relevant), max_size=len(relevant)))
    order = sorted(range(len(relevant)), key=lambda j: -grades[j])
    best_first = [relevant[j] for j in order] + [i for i in range(n) if i not in relevant]
    ks = list(range(1, n))
    report = ranked_list_metrics(
        np.array([best_first]), np.array([0, len(relevant)]), np.array(relevant), np.array(grades, dtype=np.float64), n, ks
    )
    for k in ks:
        assert abs(report.metrics[f"ndcg@{k}"] - 1.0) < 1e-12
        assert report.metrics[f"recall@{k}"] == min(k, len(relevant)) / len(relevant)
    assert report.metrics[f"mrr@{n}"] == 1.0


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_target_rank_metrics_equal_the_definitions(n, data):
    ranks = np.array(data.draw(st.lists(st.integers(1, n), min_size=1, max_size=20)))
    ks = data.draw(st.lists(st.integers(1, 45), min_size=1, max_size=4, unique=True))
    report = target_rank_metrics(ranks, n, ks)
    for k in (k for k in ks if k < n):
        assert report.metrics[f"recall@{k}"] == report.metrics[f"hit@{k}"] == float(np.mean(ranks <= k))
        ndcg = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0).mean()
        assert abs(report.metrics[f"ndcg@{k}"] - ndcg) < 1e-12
    assert abs(report.metrics["mrr"] - float(np.mean(1.0 / ranks))) < 1e-12
    assert report.not_applicable_k == sorted(k for k in ks if k >= n)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), nq=st.integers(1, 5), d=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_target_rank_is_the_position_in_the_exact_ranking(n, nq, d, seed):
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(-2, 3, (n, d), generator=gen).float()  # small integers: many exact ties
    queries = torch.randint(-2, 3, (nq, d), generator=gen).float()
    target = torch.randint(0, n, (nq,), generator=gen)
    own = (queries * items[target]).sum(-1)
    _, full = exact_topk(queries, items, n)
    ranks = rank_of_targets(queries, items, target, own)
    expected = [int((full[q] == target[q]).nonzero()[0, 0]) + 1 for q in range(nq)]
    assert ranks.tolist() == expected
