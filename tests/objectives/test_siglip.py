"""`siglip` against open_clip's `SigLipLoss` (its own loss.py, the reference), a hand computation on a
tiny batch, SigLIP's initialisation, a matched-vs-shuffled direction check and the served embedding."""

import math

import torch
import torch.nn.functional as F
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext

from ._helpers import image_text_layout, open_clip_loss_module

LAYOUT = image_text_layout(3)


def _siglip(query_weight=0.0, **config):
    cls = OBJECTIVES.get("siglip")
    return cls(cls.Config(query_weight=query_weight, **config), ObjectiveContext(LAYOUT, 8, 10, True, True)).double()


def _views(image, title, aux=None, mask=None):
    b = image.shape[0]
    emb = torch.stack([image, title] + ([aux] if aux is not None else []), 1)
    w = emb.shape[1]
    mask = torch.ones(b, w, dtype=torch.bool) if mask is None else mask
    return EncodedViews(
        embeddings=emb * mask[..., None],
        mask=mask,
        is_primary=torch.tensor([True, True, False][:w]).expand(b, w),
        side=torch.tensor([0, 1, 0][:w]).expand(b, w),
        side_weight=mask.double(),
        item_weight=mask.double() / mask.sum(1, keepdim=True),
        item_index=torch.arange(b),
    )


def _unit(*shape, seed):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def test_sigmoid_term_equals_open_clip_siglip_loss():
    oc = open_clip_loss_module()
    image, title = _unit(16, 8, seed=0), _unit(16, 8, seed=1)
    objective = _siglip(init_logit_scale=7.0, init_logit_bias=-3.0)
    out = objective(AlignmentBatch(_views(image, title)))
    scale = objective.logit_scale().detach()
    expected = oc.SigLipLoss()(image, title, scale, objective.logit_bias.detach().double())
    assert abs(float(out["sigmoid_loss"].detach()) - float(expected)) < 1e-6
    # items lacking a view of the pair are left out: the same as open_clip on the others
    mask = torch.ones(16, 2, dtype=torch.bool)
    mask[3, 1] = mask[9, 0] = False
    keep = torch.ones(16, dtype=torch.bool)
    keep[[3, 9]] = False
    partial = objective(AlignmentBatch(_views(image, title, mask=mask)))
    expected = oc.SigLipLoss()(image[keep], title[keep], scale, objective.logit_bias.detach().double())
    assert abs(float(partial["sigmoid_loss"].detach()) - float(expected)) < 1e-6 and float(partial["pairs"]) == 14


def test_loss_equals_a_hand_computation_on_a_tiny_batch():
    c, r = math.cos(0.5), math.sin(0.5)
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    title = torch.tensor([[c, r], [r, c]], dtype=torch.float64)
    objective = _siglip(init_logit_scale=2.0, init_logit_bias=-1.0)
    out = objective(AlignmentBatch(_views(image, title)))
    s, beta = float(objective.logit_scale().detach()), float(objective.logit_bias.detach())

    def log_sigmoid(v):
        return -math.log1p(math.exp(-v))

    # <a_i, b_i> = cos 0.5 (positives), <a_i, b_j> = sin 0.5 (negatives); two of each, over B = 2
    expected = -(2 * log_sigmoid(s * c + beta) + 2 * log_sigmoid(-(s * r + beta))) / 2
    assert abs(float(out["sigmoid_loss"].detach()) - expected) < 1e-12


def test_siglip_initialisation_and_learnable_bias():
    objective = _siglip(query_weight=1.0)
    assert abs(float(objective.logit_scale().detach()) - 10.0) < 1e-5
    assert float(objective.logit_bias.detach()) == -10.0
    image, title, query = _unit(8, 8, seed=2), _unit(8, 8, seed=3), _unit(8, 8, seed=4)
    out = objective(AlignmentBatch(_views(image, title), query=query))
    objective.total_loss(out).backward()
    assert objective.logit_bias.grad is not None and float(objective.logit_bias.grad) != 0.0
    assert "query_item_loss" in out and float(out["logit_bias"]) == -10.0


def test_matched_pairs_have_lower_loss_than_pairs_shuffled_across_items():
    centre = _unit(12, 8, seed=5)
    image = F.normalize(centre + 0.3 * _unit(12, 8, seed=6), dim=-1)
    title = F.normalize(centre + 0.3 * _unit(12, 8, seed=7), dim=-1)
    objective = _siglip()
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(8))
    matched, mixed = (float(objective(AlignmentBatch(_views(image, t)))["sigmoid_loss"].detach()) for t in (title, title[perm]))
    assert matched < mixed - 1.0


def test_auxiliary_views_are_never_used_and_the_pair_is_served():
    objective = _siglip()
    mask = torch.ones(4, 3, dtype=torch.bool)
    selection = objective.select_views(mask)
    assert torch.equal(selection.mask, torch.tensor([[True, True, False]] * 4))
    assert torch.equal(objective.inference_selection(mask).mask, selection.mask)
    image, title = _unit(4, 8, seed=9), _unit(4, 8, seed=10)
    views = _views(image, title)
    assert torch.allclose(objective.item_embedding(views), F.normalize(image + title, dim=-1), atol=1e-12)
