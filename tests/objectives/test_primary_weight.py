"""The default view selection at w_p = 0.8, where the primary weight and its complement differ (at
0.5 a weight read from the wrong role, or w_p and 1 - w_p swapped, goes unseen).

The definition (`primary_weight`): an item's available primary views share w_p evenly and its
available auxiliary views share 1 - w_p evenly (the primaries take 1 when the item has no auxiliary
view, the auxiliaries take 1 when it has no primary view); the fused-item weights apply it over all
of an item's views, the side marginals within each side. Checked per item against that definition
written out here, for every objective that keeps the default selection (training and inference),
and through the batcher's encoded batch, where the realised primary fraction is read back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.encode import capped_availability, encode_batch
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import Objective, ObjectiveContext

from ._helpers import Slots, primary_weights, side_weights

W_P = 0.8
DATASET = DATASETS.get("synthetic")().build(SyntheticConfig(items=120, interactions=200, aux_view_dropout=0.5, seed=5))
LAYOUT = SlotLayout.from_catalog(DATASET.catalog)
SLOTS = Slots(*((s.name, s.modality, s.role) for s in DATASET.catalog.slots))
ITEMS = np.arange(64)


def _default_selection_objectives() -> list[str]:
    names = [
        name
        for name in sorted(OBJECTIVES.names())
        if OBJECTIVES.get(name).select_views is Objective.select_views
        and OBJECTIVES.get(name).inference_selection is Objective.inference_selection
    ]
    assert names, "no objective keeps the default view selection"
    return names


def _objective(name):
    cls = OBJECTIVES.get(name)
    torch.manual_seed(0)
    return cls(cls.Config(primary_weight=W_P), ObjectiveContext(LAYOUT, 16, DATASET.catalog.num_items, True, True))


def _mask(max_views):
    """The catalog's availability under the cap, with the primary image taken from every third item
    and the auxiliary views from every fifth, so that every branch of the definition is used: both
    roles, primaries only, and a side with auxiliary views but no primary one."""
    mask = capped_availability(DATASET.catalog, ITEMS, max_views)
    primary = torch.tensor(SLOTS.primary)
    side = torch.tensor(SLOTS.side)
    mask[::3] &= ~(primary & (side == 0))
    mask[1::5] &= primary
    has_primary, has_auxiliary = (mask & primary).any(1), (mask & ~primary).any(1)
    assert bool((has_primary & has_auxiliary).any()) and bool((has_primary & ~has_auxiliary).any())
    assert bool(((mask & ~primary & (side == 0)).any(1) & ~(mask & primary & (side == 0)).any(1)).any())
    return mask


@pytest.mark.parametrize("max_views", [3, 8])
@pytest.mark.parametrize("name", _default_selection_objectives())
def test_default_selection_weights_follow_the_definition(name, max_views):
    objective = _objective(name)
    mask = _mask(max_views)
    for selection in (objective.select_views(mask, torch.Generator().manual_seed(1)), objective.inference_selection(mask)):
        assert torch.equal(selection.mask, mask)  # every available view
        for i in range(len(ITEMS)):
            row = mask[i].tolist()
            want_item = torch.tensor(primary_weights(row, SLOTS.primary, W_P))
            want_side = torch.tensor(side_weights(row, SLOTS, W_P))
            torch.testing.assert_close(selection.item_weight[i].double(), want_item.double(), rtol=0, atol=1e-7)
            torch.testing.assert_close(selection.side_weight[i].double(), want_side.double(), rtol=0, atol=1e-7)


def test_the_encoded_batch_realises_the_primary_fraction():
    """Through the batcher (availability -> cap -> selection -> packed positions -> towers): each
    item's primary positions hold w_p of its fused weight when it has auxiliary views (1 when it has
    none), each side's primary positions w_p of its marginal, spread evenly."""
    name = _default_selection_objectives()[0]
    objective = _objective(name)
    towers = Towers(DATASET.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    views = encode_batch(
        DATASET,
        LAYOUT,
        towers,
        objective,
        ITEMS,
        8,
        torch.device("cpu"),
        training=True,
        generator=torch.Generator().manual_seed(2),
    )
    available = capped_availability(DATASET.catalog, ITEMS, 8)
    primary_slots = torch.tensor(SLOTS.primary)
    for i in range(len(ITEMS)):
        mask, primary = views.mask[i], views.is_primary[i] & views.mask[i]
        auxiliary = mask & ~primary
        n_p, n_a = int((available[i] & primary_slots).sum()), int((available[i] & ~primary_slots).sum())
        assert (int(primary.sum()), int(auxiliary.sum())) == (n_p, n_a)
        share = W_P if n_a else 1.0
        assert float(views.item_weight[i][primary].sum()) == pytest.approx(share, abs=1e-6)
        assert views.item_weight[i][primary].double().numpy() == pytest.approx(share / n_p, abs=1e-7)
        if n_a:
            assert views.item_weight[i][auxiliary].double().numpy() == pytest.approx((1 - W_P) / n_a, abs=1e-7)
        for s in (0, 1):
            on_side = mask & (views.side[i] == s)
            p_side, a_side = on_side & primary, on_side & ~primary
            if not bool(on_side.any()):
                continue
            share = (W_P if bool(a_side.any()) else 1.0) if bool(p_side.any()) else 0.0
            assert float(views.side_weight[i][p_side].sum()) == pytest.approx(share, abs=1e-6)
            assert float(views.side_weight[i][a_side].sum()) == pytest.approx(
                1.0 - share if bool(a_side.any()) else 0.0, abs=1e-6
            )
