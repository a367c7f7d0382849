"""Every registered objective: through the real batcher and towers, finite loss and finite
gradients at --views 1, 2 and 8 with items that lack views (half of the auxiliary views are
missing); on embeddings written here, a batch whose views match has a lower loss than the same
batch with the text views shuffled across items (the direction check: a wrong sign fails it); and
the logit scale, clamped after each step, can come back down from above its bound."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ftbench.data.views import SlotLayout, cap_views
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.encode import encode_batch
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, Objective, ObjectiveContext

DATASET = DATASETS.get("synthetic")().build(SyntheticConfig(items=200, interactions=300, aux_view_dropout=0.5, seed=5))
LAYOUT = SlotLayout.from_catalog(DATASET.catalog)


def test_the_five_objectives_are_registered():  # and whatever else is registered is checked below
    assert {"clip", "full_ot", "factorized", "oat", "mover"} <= set(OBJECTIVES.names())


def _loss(towers, objective, items, query_idx, views, seed):
    encoded = encode_batch(
        DATASET,
        LAYOUT,
        towers,
        objective,
        items,
        views,
        torch.device("cpu"),
        training=True,
        generator=torch.Generator().manual_seed(seed),  # same views sampled each call
    )
    q = DATASET.queries
    query = towers.encode(q.modality, torch.from_numpy(q.features[query_idx]))
    terms = objective(AlignmentBatch(views=encoded, query=query))
    return Objective.total_loss(terms), terms, encoded


@pytest.mark.parametrize("views", [1, 2, 8])
@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_finite_loss_and_gradients(name, views):
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


def _encoded(embeddings: torch.Tensor, selection, item_index: torch.Tensor) -> EncodedViews:
    b = embeddings.shape[0]
    mask = selection.mask
    return EncodedViews(
        embeddings=F.normalize(embeddings, dim=-1) * mask.unsqueeze(-1).to(embeddings.dtype),
        mask=mask,
        is_primary=LAYOUT.is_primary.expand(b, -1),
        side=LAYOUT.side.expand(b, -1),
        side_weight=selection.side_weight.to(embeddings.dtype),
        item_weight=selection.item_weight.to(embeddings.dtype),
        item_index=item_index,
    )


@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_matched_views_give_a_lower_loss_than_shuffled(name):
    """Views of item i near a random centre c_i; then the same batch with every side-1 (text) view
    moved to the next item. The objective's own view selection is drawn once and used for both."""
    b, d = 32, 64
    cls = OBJECTIVES.get(name)
    torch.manual_seed(0)
    objective = cls(cls.Config(query_weight=0.0), ObjectiveContext(LAYOUT, d, b, False, False)).double()
    g = torch.Generator().manual_seed(21)
    centre = torch.randn(b, 1, d, generator=g, dtype=torch.float64)
    matched = centre + 0.5 * torch.randn(b, LAYOUT.num_slots, d, generator=g, dtype=torch.float64)
    shuffled = matched.clone()
    text = LAYOUT.side == 1
    shuffled[:, text] = matched[torch.roll(torch.arange(b), 1)][:, text]
    mask = cap_views(torch.ones(b, LAYOUT.num_slots, dtype=torch.bool), LAYOUT.num_slots)
    selection = objective.select_views(mask, torch.Generator().manual_seed(3))
    losses = []
    for x in (matched, shuffled):
        torch.manual_seed(1)  # objectives that sample inside forward draw the same
        terms = objective(AlignmentBatch(views=_encoded(x, selection, torch.arange(b))))
        losses.append(Objective.total_loss(terms).item())
    assert losses[0] < losses[1] - 0.5, (name, losses)


@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_logit_scale_above_the_bound_can_come_back_down(name):
    """From log scale above log(max): one clamp + SGD step on a batch whose gradient lowers the
    scale (views that do not match, so sharper logits cost more) leaves it below the bound. With
    exp(.).clamp in the forward pass the gradient above the bound was zero and it stayed there."""
    b, d = 16, 32
    cls = OBJECTIVES.get(name)
    objective = cls(cls.Config(query_weight=0.0), ObjectiveContext(LAYOUT, d, b, False, False)).double()
    bound = math.log(objective.config.max_logit_scale)
    with torch.no_grad():
        objective.log_logit_scale.fill_(bound + 0.5)
    objective.after_step()  # what the training loop does after every optimiser step
    assert float(objective.log_logit_scale.detach()) == pytest.approx(bound)
    g = torch.Generator().manual_seed(5)
    raw = torch.randn(b, LAYOUT.num_slots, d, generator=g, dtype=torch.float64)
    shuffled = raw.clone()
    text = LAYOUT.side == 1
    shuffled[:, text] = raw[torch.roll(torch.arange(b), 1)][:, text]  # positives unrelated
    mask = torch.ones(b, LAYOUT.num_slots, dtype=torch.bool)
    selection = objective.select_views(mask, torch.Generator().manual_seed(3))
    loss = Objective.total_loss(objective(AlignmentBatch(views=_encoded(shuffled, selection, torch.arange(b)))))
    loss.backward()
    grad = float(objective.log_logit_scale.grad)
    assert grad > 0, (name, grad)  # the gradient asks for a smaller scale
    with torch.no_grad():
        objective.log_logit_scale -= 0.1 * objective.log_logit_scale.grad
    objective.after_step()
    assert float(objective.log_logit_scale.detach()) < bound
