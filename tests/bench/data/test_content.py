"""Content ids of views (`ftbench.data.content`): equal content, equal id; the batcher's ids; the
share of each slot's views that other items also have, and the run-start warning; the training
loop attaches ids only to a batch with a duplicate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ftbench.data.batching import build_view_batch
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.content import (
    batch_has_duplicates,
    feature_content_ids,
    shared_view_share,
    shared_view_warning,
    view_content_ids,
)
from ftbench.data.views import SlotLayout, all_views
from ftbench.features.backbones import HashFeatures
from ftbench.features.cache import FeatureCache, assemble_catalog

SLOTS = [ViewSlot("title", "text", "primary"), ViewSlot("gender", "text", "auxiliary"), ViewSlot("note", "text", "auxiliary")]


def _catalog(rows: list[list[int | None]]) -> ArrayCatalog:
    """Items whose views are the numbered rows of one table (None: no view)."""
    table = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    n = len(rows)
    features = [np.stack([table[r[s]] if r[s] is not None else np.zeros(6, np.float32) for r in rows]) for s in range(3)]
    available = np.array([[v is not None for v in r] for r in rows])
    return ArrayCatalog(SLOTS, features, available, [f"item{k}" for k in range(n)])


def test_feature_content_ids_are_equal_exactly_for_equal_rows():
    rows = np.random.default_rng(1).normal(size=(4, 7)).astype(np.float32)  # odd dimension
    rows[2] = rows[0]
    ids = feature_content_ids(rows, "text")
    assert ids.dtype == np.int64 and ids[0] == ids[2] and len(set(ids.tolist())) == 3
    nudged = rows.copy()
    nudged[0, 6] = np.nextafter(nudged[0, 6], np.float32(np.inf))  # one float32 step in the last coordinate
    assert feature_content_ids(nudged, "text")[0] != ids[0]
    assert feature_content_ids(rows, "image")[0] != ids[0]  # the modality is part of the content
    # an in-memory catalog given no ids of raw inputs identifies its views by their rows
    catalog = _catalog([[0, 1, 2], [3, 1, None]])
    for s in range(3):
        assert np.array_equal(
            catalog.content_ids(np.arange(2), s), feature_content_ids(catalog.features(np.arange(2), s), "text")
        )


def test_assembled_catalogs_keep_the_ids_of_their_raw_inputs(tmp_path):
    class Noisy(HashFeatures):
        """Text features with a little noise per call: identical texts encoded apart differ."""

        calls = 0

        def encode(self, inputs, *args, **kwargs):
            Noisy.calls += 1
            return super().encode(inputs, *args, **kwargs) + np.float32(1e-3 * Noisy.calls)

    table = [["Oxford shirt", "gender: Men"], ["Linen dress", "gender: Women"], ["Chinos", "gender: Men"]]
    cache = FeatureCache(tmp_path, enabled=False, chunk=1)  # one encoder call per input
    catalog = assemble_catalog(SLOTS[:2], table, {"text": Noisy("text")}, cache, ["a", "b", "c"], "test")
    gender = catalog.content_ids(np.arange(3), 1)
    assert gender[0] == gender[2] != gender[1]
    assert not np.array_equal(catalog.features(np.array([0]), 1), catalog.features(np.array([2]), 1))
    title = catalog.content_ids(np.arange(3), 0)
    assert len(set(title.tolist()) | set(gender.tolist())) == 5


def test_a_catalog_refuses_content_ids_of_the_wrong_shape():
    rows = [[0, 1, 2], [3, 1, 4]]
    base = _catalog(rows)
    features = [base.features(np.arange(2), s) for s in range(3)]
    with pytest.raises(ValueError, match="content ids of view 'gender' must be int64 of shape \\(2,\\)"):
        ArrayCatalog(SLOTS, features, np.ones((2, 3), bool), ["a", "b"], content_ids=[None, np.zeros(3, np.int64), None])


def test_the_batch_carries_the_ids_of_its_views_in_position_order():
    catalog = _catalog([[0, 1, None], [2, 1, 3], [4, None, 5]])
    layout = SlotLayout.from_catalog(catalog)
    items = np.array([2, 0, 1])
    selection = all_views(torch.from_numpy(catalog.availability(items)), layout, 0.5)
    assert build_view_batch(catalog, layout, items, selection).content is None
    batch = build_view_batch(catalog, layout, items, selection, content=True)
    for b, item in enumerate(items):
        for w in range(batch.mask.shape[1]):
            if batch.mask[b, w]:
                slot = int(batch.slot[b, w])
                assert int(batch.content[b, w]) == view_content_ids(catalog, np.array([item]), slot)[0]
    assert batch_has_duplicates(batch.content, batch.mask)  # items 0 and 1: the same gender row


def test_only_a_content_two_items_share_is_a_duplicate():
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert not batch_has_duplicates(torch.tensor([[1, 1], [2, 3]]), mask)  # the same content twice in one item
    assert batch_has_duplicates(torch.tensor([[1, 2], [3, 2]]), mask)
    assert not batch_has_duplicates(torch.tensor([[1, 2], [3, 2]]), torch.tensor([[True, True], [True, False]]))
    assert batch_has_duplicates(torch.tensor([[1, 2], [3, 4]]), mask, torch.tensor([9, 9]))  # two queries
    assert not batch_has_duplicates(torch.tensor([[1, 2], [3, 4]]), mask, torch.tensor([8, 9]))


def test_shared_view_share_counts_views_another_item_has_in_any_slot():
    # gender row 1 is shared by items 0, 1, 3; note row 2 repeats item 0's title; item 2 has no gender
    catalog = _catalog([[2, 1, 5], [6, 1, 7], [8, None, 2], [9, 1, 10], [11, 12, 13]])
    share = shared_view_share(catalog)
    assert share == {"title": pytest.approx(1 / 5), "gender": pytest.approx(3 / 4), "note": pytest.approx(1 / 5)}
    message = shared_view_warning(catalog)
    assert "'gender' 75%" in message and "'title'" not in message
    assert shared_view_warning(catalog, threshold=0.8) is None
    sampled = shared_view_share(catalog, max_items=3, seed=0)
    assert set(sampled) == set(share) and all(sampled[s] <= 1.0 for s in sampled)


def test_a_run_on_a_catalog_with_repeated_views_warns_and_records_it(tmp_path, capsys):
    from ftbench.run.experiment import RunSpec, execute, prepare

    genders = ["gender: Men", "gender: Women"]
    with open(tmp_path / "items.jsonl", "w", encoding="utf-8") as out:
        for k in range(40):
            out.write(json.dumps({"id": f"p{k}", "title": f"product number {k} in blue", "gender": genders[k % 2]}) + "\n")
    spec = RunSpec(
        objective="pairwise",
        dataset="catalog",
        views=2,
        device="cpu",
        steps=2,
        batch_size=16,
        sets=[
            f"dataset.data_dir={str(tmp_path)!r}",
            "dataset.text_backbone='hash'",
            f"dataset.cache_dir={str(tmp_path / 'cache')!r}",
            "train.select_metric='last'",
        ],
    )
    result, _ = execute(prepare(spec), out_dir=None)
    err = capsys.readouterr().err
    assert "views repeat across items" in err and "'gender' 100%" in err and "'title'" not in err.split("share")[1]
    assert any("'gender' 100%" in note for note in result.notes)


def test_training_attaches_content_ids_only_to_a_batch_with_a_duplicate(monkeypatch):
    from ftbench.datasets import DATASETS
    from ftbench.model.towers import TowerConfig, build_towers
    from ftbench.objectives import OBJECTIVES
    from ftbench.objectives.base import ObjectiveContext
    from ftbench.train.loop import Stepper, TrainConfig

    def seen_batches(dataset):
        layout = SlotLayout.from_catalog(dataset.catalog)
        towers = build_towers(dataset, TowerConfig(embedding_dim=8, hidden_dim=8))
        context = ObjectiveContext(layout, 8, dataset.catalog.num_items, dataset.queries is not None, dataset.queries is not None)
        objective = OBJECTIVES.get("clip")(OBJECTIVES.get("clip").Config(), context)
        seen = []
        real = objective.forward
        monkeypatch.setattr(objective, "forward", lambda batch: seen.append(batch) or real(batch))
        stepper = Stepper(dataset, towers, objective, TrainConfig(steps=2, batch_size=16), 8, 0, torch.device("cpu"))
        stepper.step(1)
        return seen

    plugin = DATASETS.get("synthetic")
    synthetic = plugin().build(plugin.Config(items=200, interactions=300))
    (batch,) = seen_batches(synthetic)  # continuous features: no two views alike
    assert batch.query is not None and batch.views.content is None and batch.query_content is None

    catalog = _catalog([[k, 14 + k % 2, None] for k in range(12)])  # two gender rows for every item
    from ftbench.data.dataset import MultiViewDataset

    (batch,) = seen_batches(MultiViewDataset("repeated", catalog, np.zeros(12, np.int8)))
    assert batch.views.content is not None and batch.query is None
    assert batch_has_duplicates(batch.views.content, batch.views.mask)
