"""Every registered objective, through the real batcher and towers: finite loss, finite gradients,
and one optimisation step lowers the loss on a fixed batch, at --views 1, 2 and 8, with items that
lack views (half of the auxiliary views are missing)."""

import numpy as np
import pytest
import torch

from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, Objective, ObjectiveContext
from ftbench.model.towers import TowerConfig, Towers
from ftbench.model.encode import encode_batch
from ftbench.data.views import SlotLayout

DATASET = DATASETS.get("synthetic")().build(
    SyntheticConfig(items=200, interactions=300, aux_view_dropout=0.5, seed=5)
)
LAYOUT = SlotLayout.from_catalog(DATASET.catalog)


def test_the_five_objectives_are_registered():
    assert {"clip", "full_ot", "factorized", "oat", "mover"} <= set(OBJECTIVES.names())


def _loss(towers, objective, items, query_idx, views, seed):
    encoded = encode_batch(
        DATASET, LAYOUT, towers, objective, items, views, torch.device("cpu"),
        training=True, generator=torch.Generator().manual_seed(seed),  # same views sampled each call
    )
    q = DATASET.queries
    query = towers.encode(q.modality, torch.from_numpy(q.features[query_idx]))
    terms = objective(AlignmentBatch(views=encoded, query=query))
    return Objective.total_loss(terms), terms, encoded


@pytest.mark.parametrize("views", [1, 2, 8])
@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_finite_and_one_step_lowers_the_loss(name, views):
    torch.manual_seed(0)
    towers = Towers(DATASET.catalog.feature_dims, TowerConfig(embedding_dim=32, hidden_dim=64))
    cls = OBJECTIVES.get(name)
    context = ObjectiveContext(LAYOUT, 32, DATASET.catalog.num_items, True, True)
    objective = cls(cls.Config(), context)
    inter = DATASET.queries.interactions
    _, first = np.unique(inter[:, 1], return_index=True)
    pairs = inter[np.sort(first)]
    _, first_q = np.unique(pairs[:, 0], return_index=True)
    pairs = pairs[np.sort(first_q)][:24]  # unique items and queries, as the sampler makes them
    query_idx, items = pairs[:, 0], pairs[:, 1]

    before, terms, encoded = _loss(towers, objective, items, query_idx, views, seed=1)
    assert encoded.mask.sum(1).min() >= 1
    assert not DATASET.catalog.availability(items).all()  # some items lack some views
    for key, value in terms.items():
        assert torch.isfinite(value).all(), (name, views, key)
    assert torch.isfinite(before)
    params = [p for p in list(towers.parameters()) + list(objective.parameters()) if p.requires_grad]
    before.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads), (name, views)

    with torch.no_grad():  # one plain gradient step, small enough for the first-order decrease
        for p in params:
            if p.grad is not None:
                p -= 1e-2 * p.grad
    after, _, _ = _loss(towers, objective, items, query_idx, views, seed=1)
    assert after.item() < before.item(), (name, views, before.item(), after.item())
