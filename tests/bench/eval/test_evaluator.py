"""The evaluator on a hand-made case: 5 items, 3 queries, identity towers, so that every rank and
every metric is computed by hand in the comments below."""

import numpy as np
import pytest
import torch
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.dataset import MultiViewDataset
from ftbench.data.queries import QuerySet, relevance_from_pairs
from ftbench.data.views import SlotLayout
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from torch import nn


def _hand_made_evaluator():
    items = np.eye(5, dtype=np.float32)  # item j is the unit vector e_j
    catalog = ArrayCatalog([ViewSlot("title", "text", "primary")], [items], np.ones((5, 1), bool), [f"item{j}" for j in range(5)])
    q = np.zeros((3, 5), dtype=np.float32)
    q[0, 0] = 1.0  # q0 -> item 0 first; relevant {0}: rank 1
    q[1, 2], q[1, 1] = 0.9, 0.1  # q1 -> items 2, 1, ...; relevant {1}: rank 2
    q[2, 3], q[2, 4] = 1.0, 0.5  # q2 -> items 3, 4, then 0 1 2 tied (lower index first)
    pairs = np.array([[0, 0], [1, 1], [2, 4], [2, 0]])  # q2: relevant {4, 0} at ranks 2 and 3
    indptr, rel_items, rel_grades = relevance_from_pairs(3, pairs)
    queries = QuerySet(
        ids=np.array(["q0", "q1", "q2"]),
        modality="text",
        features=q,
        relevant_indptr=indptr,
        relevant_items=rel_items,
        relevant_grades=rel_grades,
        split=np.full(3, 2, dtype=np.int8),
        interactions=np.empty((0, 2), dtype=np.int64),
    )
    dataset = MultiViewDataset("hand", catalog, np.full(5, 2, dtype=np.int8), queries)
    towers = Towers(catalog.feature_dims, TowerConfig(embedding_dim=5, hidden_dim=8))
    for tower in towers.towers.values():
        identity = nn.Linear(5, 5)
        with torch.no_grad():
            identity.weight.copy_(torch.eye(5)), identity.bias.zero_()
        tower.net = identity  # embedding = the normalised feature: the ranks are those above
    cls = OBJECTIVES.get("clip")
    objective = cls(cls.Config(), ObjectiveContext(SlotLayout.from_catalog(catalog), 5, 5, True, False))
    return Evaluator(dataset, towers, objective, 8, torch.device("cpu"), EvalConfig(ks=(1, 2, 3, 5)))


def test_query_task_metrics_match_the_hand_computed_ranks():
    metrics, not_applicable, counts = _hand_made_evaluator().query_task("test")
    m = metrics["query->item"]
    assert m["recall@1"] == pytest.approx((1 + 0 + 0) / 3)
    assert m["recall@2"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["recall@3"] == pytest.approx((1 + 1 + 1) / 3)
    # reciprocal rank of the first relevant item: 1, 1/2, 1/2
    assert m["mrr@5"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # named with the largest K
    # nDCG@2 of q2: gain 1 at rank 2 over the ideal 1 + 1/log2(3)
    ndcg_q2 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["ndcg@2"] == pytest.approx((1 + 1 / np.log2(3) + ndcg_q2) / 3)
    assert counts["queries"] == 3 and counts["gallery"] == 5
    # K = 5 is the whole gallery: trivially 1, reported as not applicable rather than as a score
    assert "query->item/recall@5" in not_applicable and "recall@5" not in m


def test_served_item_embeddings_are_unit_norm_and_in_item_order():
    evaluator = _hand_made_evaluator()
    emb = evaluator.embed_items(np.arange(5))
    assert emb.shape == (5, 5)
    torch.testing.assert_close(emb, torch.eye(5))
