"""The compact view batch carries exactly the selected views, in slot order, with their features."""

import numpy as np
import torch
from ftbench.data.batching import build_view_batch, compact_positions
from ftbench.data.views import SlotLayout, all_views, cap_views, catalog_availability
from ftbench.datasets.synthetic import SyntheticCatalog, SyntheticConfig


def test_compact_positions():
    mask = torch.tensor([[0, 1, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    slot, valid = compact_positions(mask)
    assert slot.tolist() == [[1, 3, -1], [0, 1, 2], [-1, -1, -1]]
    assert valid.tolist() == [[True, True, False], [True, True, True], [False, False, False]]


def test_batch_features_match_catalog():
    cat = SyntheticCatalog(SyntheticConfig(items=50, interactions=0, max_views=6))
    layout = SlotLayout.from_catalog(cat)
    items = np.array([3, 17, 42])
    mask = cap_views(catalog_availability(cat, items), 4)
    batch = build_view_batch(cat, layout, items, all_views(mask, layout, 0.5))
    b, w = batch.shape
    assert b == 3 and w == int(mask.sum(1).max())
    for modality, (positions, values) in batch.features.items():
        for pos, value in zip(positions.tolist(), values):
            row, col = divmod(pos, w)
            slot = int(batch.slot[row, col])
            assert cat.slots[slot].modality == modality
            np.testing.assert_array_equal(value.numpy(), cat.features(items[[row]], slot)[0])
    assert torch.equal(batch.mask.sum(1), mask.sum(1))
    # weights of present views sum to 1 per item, and per side
    assert torch.allclose(batch.item_weight.sum(1), torch.ones(3))
