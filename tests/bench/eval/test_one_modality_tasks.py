"""Cross-view tasks in one-modality catalogs: text->item (text-only) or image->item (image-only) is
searched with the primary view leave-one-out and aux->item with the auxiliary views; only the
tasks whose views the catalog truly lacks are listed as not applicable, with the true reason."""

import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext


def _evaluate(modalities):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=200, interactions=0, modalities=modalities))
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get("factorized")
    context = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 16, 200, False, False)
    evaluator = Evaluator(dataset, towers, cls(cls.Config(), context), 8, torch.device("cpu"), EvalConfig(ks=(1, 10)))
    metrics, na = evaluator.cross_view(dataset.items("test"))
    return dataset, metrics, na


def test_text_only_catalog_scores_text_to_item_and_aux_to_item():
    dataset, metrics, na = _evaluate("text")
    n_test = len(dataset.items("test"))
    assert metrics["text->item"]["queries"] == n_test  # every test title, leave-one-out
    assert metrics["aux->item"]["queries"] > n_test
    assert 0.0 <= metrics["text->item"]["recall@10"] <= 1.0
    assert na["image->item"] == "catalog has no image views"
    assert na["title->image"] == na["image->title"] == "catalog has no image views"
    assert "text->item" not in na and "aux->item" not in na


def test_image_only_catalog_scores_image_to_item_and_names_the_missing_text():
    dataset, metrics, na = _evaluate("image")
    n_test = len(dataset.items("test"))
    assert metrics["image->item"]["queries"] == n_test
    assert metrics["aux->item"]["queries"] > n_test
    assert na["text->item"] == "catalog has no text views"
    assert na["title->image"] == na["image->title"] == "catalog has no text views"
    assert "image->item" not in na


def test_two_modality_catalog_scores_every_task():
    _, metrics, na = _evaluate("image+text")
    assert {"title->image", "image->title", "image->item", "text->item", "aux->item"} <= set(metrics)
    assert not {k for k in na if "/" not in k}  # only K-too-large entries
