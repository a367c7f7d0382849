"""Checkpoint selection reads the validation split only: where validation cannot score the
selection metric the run stops before training with an error naming the option and what
validation lacks; it never falls back to the test items."""

from pathlib import Path

import numpy as np
import pytest
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.grocery_store import GroceryStore
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.run.experiment import RunSpec, execute, prepare

MINI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grocery_store_mini"
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")


def _evaluator(dataset):
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get("clip")
    context = ObjectiveContext(
        SlotLayout.from_catalog(dataset.catalog), 16, dataset.catalog.num_items, dataset.queries is not None, False
    )
    return Evaluator(dataset, towers, cls(cls.Config(), context), 8, torch.device("cpu"), EvalConfig())


def _no_validation_items():
    return DATASETS.get("synthetic")().build(SyntheticConfig(items=300, interactions=0, item_fractions=(0.8, 0.0, 0.2)))


def test_no_validation_items_stops_auto_selection_with_the_option_named():
    dataset = _no_validation_items()
    assert len(dataset.items("val")) == 0 and len(dataset.items("test")) == 60 and dataset.queries is None
    evaluator = _evaluator(dataset)
    for metric in ("auto", "cross-view/mean recall@10"):
        with pytest.raises(ValueError, match=r"select_metric.*0 item\(s\).*dataset\.item_fractions") as err:
            evaluator.validation_score(metric, 20_000, seed=0)
        assert "test" in str(err.value)  # says that test items are not a fallback


def test_the_run_stops_before_training():
    spec = RunSpec(
        objective="clip",
        steps=3,
        batch_size=16,
        sets=["dataset.items=300", "dataset.interactions=0", "dataset.item_fractions=(0.8, 0.0, 0.2)"],
    )
    prepared = prepare(spec)
    stages = []
    with pytest.raises(ValueError, match="select_metric"):
        execute(prepared, None, progress=lambda stage, *a: stages.append(stage))
    assert "train" not in stages


def test_cross_view_selection_never_embeds_a_test_item(monkeypatch):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=300, interactions=0))
    evaluator = _evaluator(dataset)
    test_items = set(dataset.items("test").tolist())
    seen = []
    original_items, original_slot = Evaluator.embed_items, Evaluator.embed_slot

    def spy_items(self, items, exclude_slot=None):
        seen.extend(np.asarray(items).tolist())
        return original_items(self, items, exclude_slot)

    def spy_slot(self, items, slot):  # every tower pass over item views goes through one of the two
        seen.extend(np.asarray(items).tolist())
        return original_slot(self, items, slot)

    monkeypatch.setattr(Evaluator, "embed_items", spy_items)
    monkeypatch.setattr(Evaluator, "embed_slot", spy_slot)
    name, _ = evaluator.validation_score("cross-view/mean recall@10", 20_000, seed=0)
    assert name == "cross-view/mean recall@10"
    assert seen and not test_items & set(seen)
    assert set(seen) <= set(dataset.items("val").tolist())


def test_one_validation_item_is_an_error_not_the_test_split():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=12, interactions=0))
    assert len(dataset.items("val")) == 1
    with pytest.raises(ValueError, match=r"1 item\(s\)"):
        _evaluator(dataset).validation_score("cross-view/mean recall@10", 20_000, seed=0)


@needs_mini
def test_grocery_store_cross_view_selection_is_refused_and_auto_selects_on_validation_photos(tmp_path):
    config = GroceryStore.Config(
        data_dir=str(MINI), image_backbone="hash", text_backbone="hash", cache_dir=str(tmp_path / "cache")
    )
    dataset = GroceryStore().build(config)
    # the split is over photos: no validation item, and the cross-view tasks run on every product
    assert len(dataset.items("val")) == 0 and len(dataset.evaluation_items()) == dataset.catalog.num_items
    evaluator = _evaluator(dataset)
    with pytest.raises(ValueError, match=r"'cross-view/mean recall@10'.*0 item\(s\).*'photo->product/recall@100'"):
        evaluator.validation_score("cross-view/mean recall@10", 20_000, seed=0)
    name, score = evaluator.validation_score("auto", 20_000, seed=0)
    assert name.startswith("photo->product/") and 0.0 <= score <= 1.0


def test_select_metric_last_trains_without_selection():
    spec = RunSpec(
        objective="clip",
        steps=3,
        batch_size=16,
        sets=[
            "dataset.items=300",
            "dataset.interactions=0",
            "dataset.item_fractions=(0.8, 0.0, 0.2)",
            "train.select_metric=last",
        ],
    )
    result, _ = execute(prepare(spec), None)
    assert result.training["selected_step"] == 3 and result.training["history"] == []
    assert result.training["select_metric"].startswith("last")
