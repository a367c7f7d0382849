"""Retrieval metrics: hand-computed values, a per-query Python reference, and torchmetrics."""

import math

import numpy as np
import pytest
import torch
from ftbench.data.queries import relevance_from_pairs
from ftbench.eval.metrics import DEFAULT_KS, ranked_list_metrics, split_ks, target_rank_metrics
from torchmetrics.functional.retrieval import (
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_recall,
    retrieval_reciprocal_rank,
)


def _reference(ranked, indptr, items, grades, ks):
    """Per-query Python loop straight from the definitions (module docstring of ftbench.eval.metrics)."""
    out = {}
    for q in range(len(indptr) - 1):
        rel = {int(i): float(g) for i, g in zip(items[indptr[q] : indptr[q + 1]], grades[indptr[q] : indptr[q + 1]])}
        if not rel:
            continue
        row = [int(i) for i in ranked[q]]
        ideal = sorted(rel.values(), reverse=True)
        vals = {}
        for k in ks:
            top = row[:k]
            hits = sum(1 for i in top if i in rel)
            vals[f"recall@{k}"] = hits / len(rel)
            vals[f"hit@{k}"] = float(hits > 0)
            dcg = sum(rel.get(i, 0.0) / math.log2(p + 2) for p, i in enumerate(top))
            idcg = sum(g / math.log2(p + 2) for p, g in enumerate(ideal[:k]))
            vals[f"ndcg@{k}"] = dcg / idcg
        first = next((p for p, i in enumerate(row) if i in rel), None)
        vals[f"mrr@{len(row)}"] = 0.0 if first is None else 1.0 / (first + 1)
        out[q] = vals
    return out


def _random_case(rng, nq=40, n=60, kmax=20, max_rel=6, graded=True):
    ranked = np.stack([rng.permutation(n)[:kmax] for _ in range(nq)])
    pairs, gr = [], []
    for q in range(nq):
        m = int(rng.integers(0, max_rel + 1))  # some queries have no relevant item
        for i in rng.choice(n, size=m, replace=False):
            # bias relevant items towards the ranked list so that hits occur
            item = int(ranked[q, rng.integers(0, kmax)]) if rng.random() < 0.6 else int(i)
            pairs.append((q, item))
            gr.append(int(rng.integers(1, 4)) if graded else 1)
    indptr, items, grades = relevance_from_pairs(nq, np.array(pairs).reshape(-1, 2), np.array(gr, dtype=np.float32))
    return ranked, indptr, items, grades


def test_hand_computed_example():
    # query 0: relevant {3: grade 2, 7: grade 1, 9: grade 1}; ranked 5, 3, 8, 7, 1
    # query 1: no relevant item (excluded); query 2: relevant {0}, not retrieved
    ranked = np.array([[5, 3, 8, 7, 1], [0, 1, 2, 3, 4], [9, 8, 7, 6, 5]])
    indptr = np.array([0, 3, 3, 4])
    items = np.array([3, 7, 9, 0])
    grades = np.array([2.0, 1.0, 1.0, 1.0])
    rep = ranked_list_metrics(ranked, indptr, items, grades, num_items=10, ks=(1, 2, 5))
    assert rep.num_queries == 2 and rep.num_excluded == 1
    assert rep.query_index.tolist() == [0, 2]
    assert rep.not_applicable_k == [] and rep.ks == [1, 2, 5] and rep.mrr_cutoff == 5
    dcg2 = 2 / math.log2(3)  # item 3 (grade 2) at position 2
    dcg5 = dcg2 + 1 / math.log2(5)  # + item 7 (grade 1) at position 4
    idcg1, idcg2 = 2.0, 2.0 + 1 / math.log2(3)
    idcg5 = idcg2 + 1 / math.log2(4)
    expected_q0 = {
        "recall@1": 0.0,
        "hit@1": 0.0,
        "ndcg@1": 0.0 / idcg1,
        "recall@2": 1 / 3,
        "hit@2": 1.0,
        "ndcg@2": dcg2 / idcg2,
        "recall@5": 2 / 3,
        "hit@5": 1.0,
        "ndcg@5": dcg5 / idcg5,
        "mrr@5": 0.5,
    }
    for name, v in expected_q0.items():
        assert rep.per_query[name][0] == pytest.approx(v, abs=1e-12)
        assert rep.per_query[name][1] == 0.0  # query 2 retrieves nothing relevant
        assert rep.metrics[name] == pytest.approx(v / 2, abs=1e-12)
    assert rep.metrics["ndcg@5"] == pytest.approx(0.5 * (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3) + 0.5))


@pytest.mark.parametrize("graded", [False, True])
def test_matches_per_query_reference(graded):
    rng = np.random.default_rng(0 if graded else 1)
    ranked, indptr, items, grades = _random_case(rng, graded=graded)
    ks = (1, 3, 10, 20)
    rep = ranked_list_metrics(ranked, indptr, items, grades, num_items=60, ks=ks, query_chunk=7)
    ref = _reference(ranked, indptr, items, grades, ks)
    assert rep.query_index.tolist() == sorted(ref)
    assert rep.num_excluded == 40 - len(ref) > 0
    for name in rep.metrics:
        expected = np.array([ref[q][name] for q in rep.query_index])
        np.testing.assert_allclose(rep.per_query[name], expected, rtol=0, atol=1e-12)
        assert rep.metrics[name] == pytest.approx(expected.mean(), abs=1e-12)


def test_matches_torchmetrics():
    """torchmetrics scores every catalog item; we give ranked items strictly decreasing scores above
    all unranked ones, so its (tie-free) ordering is our ranked list. Its recall/ndcg use all
    relevant items, like ours; its reciprocal rank with top_k = Kmax is our cut-off mrr."""
    rng = np.random.default_rng(2)
    n, kmax = 60, 20
    ranked, indptr, items, grades = _random_case(rng, n=n, kmax=kmax, graded=True)
    ks = (1, 5, 10, 20)
    rep = ranked_list_metrics(ranked, indptr, items, grades, num_items=n, ks=ks)
    for row, q in enumerate(rep.query_index):
        preds = torch.zeros(n, dtype=torch.float64)
        preds[torch.from_numpy(np.setdiff1d(np.arange(n), ranked[q]))] = torch.linspace(-2.0, -1.0, n - kmax, dtype=torch.float64)
        preds[torch.from_numpy(ranked[q])] = torch.arange(kmax, 0, -1, dtype=torch.float64)
        target = torch.zeros(n, dtype=torch.long)
        target[torch.from_numpy(items[indptr[q] : indptr[q + 1]])] = torch.from_numpy(grades[indptr[q] : indptr[q + 1]]).long()
        binary = target > 0
        for k in ks:
            assert rep.per_query[f"recall@{k}"][row] == pytest.approx(float(retrieval_recall(preds, binary, top_k=k)), abs=1e-6)
            assert rep.per_query[f"hit@{k}"][row] == pytest.approx(float(retrieval_hit_rate(preds, binary, top_k=k)), abs=1e-6)
            assert rep.per_query[f"ndcg@{k}"][row] == pytest.approx(
                float(retrieval_normalized_dcg(preds, target, top_k=k)), abs=1e-5
            )
        assert rep.per_query[f"mrr@{kmax}"][row] == pytest.approx(
            float(retrieval_reciprocal_rank(preds, binary, top_k=kmax)), abs=1e-6
        )


def test_k_at_or_above_catalog_size_is_not_applicable():
    ranked = np.array([[2, 0, 1, 3], [1, 3, 0, 2]])
    indptr, items, grades = relevance_from_pairs(2, np.array([[0, 0], [1, 2]]))
    rep = ranked_list_metrics(ranked, indptr, items, grades, num_items=4, ks=(1, 2, 4, 10))
    assert rep.not_applicable_k == [4, 10]
    assert rep.ks == [1, 2]
    assert set(rep.metrics) == {"recall@1", "hit@1", "ndcg@1", "recall@2", "hit@2", "ndcg@2", "mrr@4"}
    assert rep.metrics["recall@2"] == 0.5 and rep.metrics["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert split_ks(DEFAULT_KS, 100) == ([1, 10, 50], [100, 500])


def test_all_queries_without_relevant_items():
    rep = ranked_list_metrics(np.array([[0, 1]]), np.array([0, 0]), np.array([], int), np.array([]), num_items=5, ks=(1,))
    assert rep.num_queries == 0 and rep.num_excluded == 1 and rep.metrics == {}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ranked=np.array([[1, 0, 1]])), "same relevant item twice"),
        (dict(ranked=np.array([[0, -1, 1]])), r"\[0, 10\)"),
        (dict(ks=(5,)), "Kmax=3 items but K=5"),
        (dict(grades=np.array([0.0])), "grade must be finite and > 0"),
        (dict(indptr=np.array([0, 2])), "end at len"),
    ],
)
def test_invalid_inputs_are_named(kwargs, match):
    args = dict(ranked=np.array([[0, 1, 2]]), indptr=np.array([0, 1]), items=np.array([1]), grades=np.array([1.0]), ks=(1, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ranked_list_metrics(args["ranked"], args["indptr"], args["items"], args["grades"], num_items=10, ks=args["ks"])


def test_duplicate_relevant_item_is_an_error():
    with pytest.raises(ValueError, match="lists item 4 twice"):
        ranked_list_metrics(np.array([[4, 1]]), np.array([0, 2]), np.array([4, 4]), np.array([1.0, 1.0]), num_items=10, ks=(1,))


def test_target_rank_metrics_hand_computed_and_reference():
    ranks = np.array([1, 2, 7, 100])
    rep = target_rank_metrics(ranks, num_items=100, ks=(1, 5, 10, 100))
    assert rep.not_applicable_k == [100] and rep.ks == [1, 5, 10]
    assert rep.metrics["recall@1"] == 0.25 and rep.metrics["hit@5"] == 0.5 and rep.metrics["recall@10"] == 0.75
    assert rep.metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert rep.metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 3) / 4)
    assert rep.metrics["mrr"] == pytest.approx((1 + 0.5 + 1 / 7 + 0.01) / 4)
    cut = target_rank_metrics(ranks, num_items=100, ks=(1,), mrr_cutoff=5)
    assert cut.metrics["mrr@5"] == pytest.approx((1 + 0.5) / 4) and cut.mrr_cutoff == 5
    # same numbers as ranked-list metrics with one relevant item of grade 1
    rng = np.random.default_rng(3)
    n, q = 30, 25
    ranks = rng.integers(1, n + 1, size=q)
    ranked = np.stack([rng.permutation(n) for _ in range(q)])
    target = ranked[np.arange(q), ranks - 1]
    single = target_rank_metrics(ranks, num_items=n + 1, ks=(1, 4, 9, 30), mrr_cutoff=30)
    listed = ranked_list_metrics(ranked, np.arange(q + 1), target, np.ones(q), num_items=n + 1, ks=(1, 4, 9, 30))
    for name, v in listed.metrics.items():
        assert single.metrics[name] == pytest.approx(v, abs=1e-12)


def test_target_rank_out_of_range():
    with pytest.raises(ValueError, match=r"ranks must lie in \[1, 5\]"):
        target_rank_metrics(np.array([0, 3]), num_items=5)


def test_relevance_subset():
    from ftbench.eval.metrics import relevance_subset

    indptr, items, grades = relevance_from_pairs(
        4, np.array([[0, 5], [0, 6], [2, 7], [3, 1], [3, 2], [3, 3]]), np.array([1, 2, 3, 1, 1, 2])
    )
    sub_ptr, sub_items, sub_grades = relevance_subset(indptr, items, grades, np.array([3, 1, 0]))
    assert sub_ptr.tolist() == [0, 3, 3, 5]
    assert sub_items.tolist() == [1, 2, 3, 5, 6]
    assert sub_grades.tolist() == [1.0, 1.0, 2.0, 1.0, 2.0]


def test_tied_scores_end_to_end_with_exact_search_and_torchmetrics():
    """Integer scores with many ties: exact_topk breaks them by lower item index; torchmetrics gets
    the same order when its scores carry that tie-break explicitly (score - index / 2n)."""
    from ftbench.kernels.search import exact_topk

    gen = torch.Generator().manual_seed(7)
    n, nq, kmax = 50, 30, 20
    x = torch.randint(-2, 3, (n, 3), generator=gen).double()
    q = torch.randint(-2, 3, (nq, 3), generator=gen).double()
    _, ranked = exact_topk(q, x, kmax)
    rng = np.random.default_rng(7)
    pairs = [(r, int(i)) for r in range(nq) for i in rng.choice(n, size=int(rng.integers(1, 6)), replace=False)]
    grades = rng.integers(1, 4, size=len(pairs)).astype(np.float32)
    indptr, items, g = relevance_from_pairs(nq, np.array(pairs), grades)
    ks = (1, 5, 10, 20)
    rep = ranked_list_metrics(ranked, indptr, items, g, num_items=n, ks=ks)
    assert rep.num_queries == nq
    scores = q @ x.T
    for r in range(nq):
        # integer scores: the tie-break keeps their order; + 100 because torchmetrics 1.9 recall
        # counts only items with a positive score as retrieved
        preds = scores[r] - torch.arange(n, dtype=torch.float64) / (2 * n) + 100.0
        target = torch.zeros(n, dtype=torch.long)
        target[torch.from_numpy(items[indptr[r] : indptr[r + 1]])] = torch.from_numpy(g[indptr[r] : indptr[r + 1]]).long()
        for k in ks:
            assert rep.per_query[f"recall@{k}"][r] == pytest.approx(float(retrieval_recall(preds, target > 0, top_k=k)), abs=1e-6)
            assert rep.per_query[f"ndcg@{k}"][r] == pytest.approx(
                float(retrieval_normalized_dcg(preds, target, top_k=k)), abs=1e-5
            )
        assert rep.per_query[f"mrr@{kmax}"][r] == pytest.approx(
            float(retrieval_reciprocal_rank(preds, target > 0, top_k=kmax)), abs=1e-6
        )
