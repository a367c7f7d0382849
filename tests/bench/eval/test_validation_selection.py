"""Checkpoint selection on validation: a K too large for the validation gallery falls back to the
largest K that every task scores, and says so in the recorded metric name."""

import pytest
import torch

from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.model.towers import TowerConfig, Towers
from ftbench.data.views import SlotLayout


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
