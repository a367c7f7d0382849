"""`pairwise` against pytorch-metric-learning's `SupConLoss`, an independent numpy formula on a tiny
batch for both positive sets, a matched-vs-shuffled direction check, and its edge cases."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ftbench.config import apply_overrides
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext, fuse
from pytorch_metric_learning.losses import SupConLoss

from ._helpers import image_text_layout

LAYOUT = image_text_layout(4)
SIDE = torch.tensor([0, 1, 0, 1])


def _objective(scale=5.0, query_weight=0.0, **options):
    cls = OBJECTIVES.get("pairwise")
    config = apply_overrides(cls.Config(init_logit_scale=scale, query_weight=query_weight), options, "pairwise")
    return cls(config, ObjectiveContext(LAYOUT, 8, 100, True, True)).double()


def _views(x, mask):
    """Views in slot order (no compaction needed: padding is masked)."""
    B, W, _ = x.shape
    w = mask.double() / mask.sum(1, keepdim=True).clamp(min=1)
    return EncodedViews(
        embeddings=x * mask[..., None],
        mask=mask,
        is_primary=torch.tensor([True, True, False, False]).expand(B, W),
        side=SIDE.expand(B, W),
        side_weight=w,
        item_weight=w,
        item_index=torch.arange(B),
    )


def _data(b=6, seed=0, d=8):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, 4, d, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.rand(b, 4, generator=g) < 0.75
    mask[:, 0] = True
    mask[0, 1:] = False  # an item with a single view: no positive, still a negative for others
    return x, mask


def _numpy_loss(z, labels, side, s, cross_side):
    """-mean over anchors with a positive of the mean log-probability of its positives."""
    losses = []
    for a in range(len(z)):
        cand = [c for c in range(len(z)) if c != a and (not cross_side or side[c] != side[a])]
        pos = [p for p in cand if labels[p] == labels[a]]
        if not pos:
            continue
        log_den = math.log(sum(math.exp(s * z[a] @ z[c]) for c in cand))
        losses.append(-np.mean([s * z[a] @ z[p] - log_den for p in pos]))
    return float(np.mean(losses))


def test_all_pairs_equal_pytorch_metric_learning_supcon():
    x, mask = _data(b=8, seed=1)
    scale = 5.0
    objective = _objective(scale=scale)
    out = objective(AlignmentBatch(_views(x, mask)))
    z = x[mask]
    labels = torch.arange(8)[:, None].expand(8, 4)[mask]
    s = float(objective.logit_scale().detach())  # 5 up to the float32 log-scale parameter
    expected = SupConLoss(temperature=1.0 / s)(z, labels)
    assert abs(float(out["pairwise_loss"].detach()) - float(expected)) < 1e-9
    assert float(out["anchors"]) == int(mask.sum()) - 1  # every view but the single-view item's


@pytest.mark.parametrize("positives", ["all", "cross_side"])
def test_loss_equals_a_numpy_formula_on_a_tiny_batch(positives):
    c, r = math.cos(0.4), math.sin(0.4)
    # two items with image_1, title, image_2 (item 1 lacks image_2: padding)
    x = torch.tensor(
        [
            [[1.0, 0.0], [c, r], [c, -r], [0.0, 0.0]],
            [[0.0, 1.0], [r, c], [0.0, 0.0], [0.0, 0.0]],
        ],
        dtype=torch.float64,
    )
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    objective = _objective(scale=4.0, positives=positives)
    got = float(objective(AlignmentBatch(_views(x, mask)))["pairwise_loss"].detach())
    z = x[mask].numpy()
    labels, side = [0, 0, 0, 1, 1], [0, 1, 0, 0, 1]
    expected = _numpy_loss(z, labels, side, float(objective.logit_scale().detach()), positives == "cross_side")
    assert abs(got - expected) < 1e-12


def test_matched_views_have_lower_loss_than_views_shuffled_across_items():
    g = torch.Generator().manual_seed(2)
    B = 10
    centre = F.normalize(torch.randn(B, 1, 8, generator=g, dtype=torch.float64), dim=-1)
    x = F.normalize(centre + 0.3 * torch.randn(B, 4, 8, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.ones(B, 4, dtype=torch.bool)
    shuffled = x.clone()
    shuffled[:, SIDE == 1] = x[torch.randperm(B, generator=g)][:, SIDE == 1]
    for positives in ("all", "cross_side"):
        objective = _objective(positives=positives)
        matched, mixed = (float(objective(AlignmentBatch(_views(v, mask)))["pairwise_loss"].detach()) for v in (x, shuffled))
        assert matched < mixed - 1.0


def test_no_positive_gives_a_named_zero_term_and_the_fused_embedding_is_served():
    x, mask = _data(b=4, seed=4)
    mask[:] = False
    mask[:, 0] = True  # one view per item: nothing to pair
    query = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=-1)
    x = x.clone().requires_grad_()
    objective = _objective(query_weight=1.0)
    views = _views(x, mask)
    out = objective(AlignmentBatch(views, query=query))
    assert float(out["pairwise_loss"].detach()) == 0.0 and float(out["pairwise_empty"]) == 1.0
    objective.total_loss(out).backward()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(objective.item_embedding(views), fuse(views.embeddings, views.item_weight))


def test_invalid_positives_option_is_rejected():
    cls = OBJECTIVES.get("pairwise")
    with pytest.raises(ValueError, match="positives"):
        apply_overrides(cls.Config(), {"positives": "same_side"}, "pairwise")
