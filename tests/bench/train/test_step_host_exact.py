"""The training step's host-side batch assembly in numpy computes exactly what the tensor-op
version did (issue 31, item 2): view positions and content ids of `build_view_batch`, the
duplicate test of `batch_has_duplicates`, and the queries' content ids hashed once each."""

from __future__ import annotations

import numpy as np
import torch
from ftbench.cost.scaling import CostSpec, whole_step
from ftbench.data.batching import build_view_batch
from ftbench.data.content import (
    _batch_has_duplicates_host,
    _batch_has_duplicates_tensors,
    feature_content_ids,
    view_content_ids,
)
from ftbench.data.views import SlotLayout, all_views, catalog_availability
from ftbench.datasets.synthetic import SyntheticCatalog, SyntheticConfig


def test_build_view_batch_puts_each_views_features_and_content_id_at_its_position():
    catalog = SyntheticCatalog(SyntheticConfig(items=200, interactions=200, max_views=6, aux_view_dropout=0.4))
    layout = SlotLayout.from_catalog(catalog)
    items = np.array([7, 3, 150, 0, 199, 42])
    selection = all_views(catalog_availability(catalog, items), layout, 0.5)
    batch = build_view_batch(catalog, layout, items, selection, content=True)
    width = batch.shape[1]
    expected_content = torch.zeros(batch.shape, dtype=torch.long)
    for modality, (positions, values) in batch.features.items():
        assert positions.dtype == torch.long and values.dtype == torch.float32
        for position, row in zip(positions.tolist(), values):
            item, slot = items[position // width], int(batch.slot.view(-1)[position])
            assert catalog.slots[slot].modality == modality
            assert torch.equal(row, torch.from_numpy(catalog.features(np.array([item]), slot)[0]))
            expected_content.view(-1)[position] = int(view_content_ids(catalog, np.array([item]), slot)[0])
    filled = torch.cat([p for p, _ in batch.features.values()])
    assert sorted(filled.tolist()) == torch.nonzero(batch.mask.view(-1)).flatten().tolist()
    assert torch.equal(batch.content, expected_content)


def test_the_host_duplicate_test_agrees_with_the_tensor_one():
    rng = np.random.default_rng(0)
    for trial in range(200):
        b, w = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        content = torch.from_numpy(rng.integers(0, 12 if trial % 2 else 10_000, size=(b, w)))
        mask = torch.from_numpy(rng.random((b, w)) < 0.7)
        query = torch.from_numpy(rng.integers(0, 20, size=b)) if trial % 3 else None
        args_np = (content.numpy(), mask.numpy(), None if query is None else query.numpy())
        assert _batch_has_duplicates_host(*args_np) == _batch_has_duplicates_tensors(content, mask, query)


def test_query_content_ids_hashed_once_each_equal_the_row_hashes():
    spec = CostSpec(objectives=["clip"], batch_size=16, dim=32)
    stepper = whole_step("clip", 2, spec, torch.device("cpu"), steps=3).__self__
    queries = stepper.dataset.queries
    modality = f"query {queries.modality}"
    for draw in (np.array([3, 1, 3, 0]), np.array([1, 5, 3])):
        np.testing.assert_array_equal(stepper._query_content_ids(draw), feature_content_ids(queries.features[draw], modality))
    assert stepper._query_hashed.sum() == 4  # 0, 1, 3, 5: each hashed on its first draw only
