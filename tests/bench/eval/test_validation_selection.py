"""Checkpoint selection on validation: a K too large for the validation gallery falls back to the
largest K that every task scores, and says so in the recorded metric name."""

import pytest
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext


def _evaluator(items):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=items, interactions=0))
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get("factorized")
    context = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 16, items, False, False)
    return dataset, Evaluator(dataset, towers, cls(cls.Config(), context), 8, torch.device("cpu"), EvalConfig())


def test_cross_view_selection_falls_back_to_the_largest_k_that_fits():
    dataset, evaluator = _evaluator(60)  # 6 validation items: recall@10 is not defined on them
    name, score = evaluator.validation_score("cross-view/mean recall@10", 20_000, seed=0)
    assert name == "cross-view/mean recall@1"
    assert 0.0 <= score <= 1.0
    name_ok, _ = _evaluator(400)[1].validation_score("cross-view/mean recall@10", 20_000, seed=0)
    assert name_ok == "cross-view/mean recall@10"  # 40 validation items: no fallback needed


def test_one_validation_item_stops_rather_than_reading_test():
    _, evaluator = _evaluator(12)  # one validation item: no cross-view task at all
    with pytest.raises(ValueError, match="select_metric"):
        evaluator.validation_score("cross-view/mean recall@10", 20_000, seed=0)


def test_query_selection_searches_only_to_the_metrics_k_with_the_same_value(monkeypatch):
    """A validation metric at one of the ks needs only the top K: the score equals the full run's
    metric, and the search asked for K items, not the largest K."""
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=600, interactions=900))
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get("factorized")
    context = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 16, 600, True, True)
    evaluator = Evaluator(dataset, towers, cls(cls.Config(), context), 8, torch.device("cpu"), EvalConfig(ks=(1, 10, 50, 100)))
    import ftbench.eval.evaluator as module

    depths = []
    search = module.exact_topk
    monkeypatch.setattr(module, "exact_topk", lambda q, x, k, **kw: depths.append(k) or search(q, x, k, **kw))
    full, _, _ = evaluator.query_task("val")
    assert depths == [100]
    for metric in ("recall@10", "ndcg@50", "hit@1", "recall@100"):
        depths.clear()
        name, score = evaluator.validation_score(f"query->item/{metric}", 20_000, seed=0)
        assert name == f"query->item/{metric}" and depths == [int(metric.split("@")[1])]
        assert score == full["query->item"][metric]
    depths.clear()
    shallow, _, _ = evaluator.query_task("val", depth=10)
    assert shallow["query->item"]["mrr@10"] <= full["query->item"]["mrr@100"]
    with pytest.raises(ValueError, match="depth 7"):
        evaluator.query_task("val", depth=7)
