"""`clip` against open_clip's `ClipLoss` (the reference implementation) and a hand computation."""

import math

import torch
import torch.nn.functional as F
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext

from ._helpers import image_text_layout, open_clip_loss_module


def _clip(query_weight=1.0, scale=1 / 0.07):
    layout = image_text_layout(3)
    ctx = ObjectiveContext(layout, 8, 10, True, True)
    cls = OBJECTIVES.get("clip")
    return cls(cls.Config(query_weight=query_weight, init_logit_scale=scale), ctx)


def _batch(image, title, aux=None):
    b, d = image.shape
    views = [image, title] + ([aux] if aux is not None else [])
    emb = torch.stack(views, 1)
    w = emb.shape[1]
    return EncodedViews(
        embeddings=emb,
        mask=torch.ones(b, w, dtype=torch.bool),
        is_primary=torch.tensor([True, True, False][:w]).expand(b, w),
        side=torch.tensor([0, 1, 0][:w]).expand(b, w),
        side_weight=torch.ones(b, w),
        item_weight=torch.full((b, w), 1.0 / w),
        item_index=torch.arange(b),
    )


def test_contrastive_term_equals_open_clip_clip_loss():
    oc = open_clip_loss_module()
    torch.manual_seed(0)
    image = F.normalize(torch.randn(16, 8, dtype=torch.float64), dim=-1)
    title = F.normalize(torch.randn(16, 8, dtype=torch.float64), dim=-1)
    objective = _clip(query_weight=0.0).double()
    ours = objective(AlignmentBatch(_batch(image, title)))["contrastive_loss"]
    reference = oc.ClipLoss()(image, title, objective.logit_scale())
    assert torch.allclose(ours, reference, rtol=0, atol=1e-12)


def test_two_item_hand_computed():
    # cos(image_i, title_j) = [[1, 0], [0, 1]], scale 2: each row's CE = log(1 + e^-2) - 0
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    objective = _clip(query_weight=0.0, scale=2.0)
    got = objective(AlignmentBatch(_batch(image, image.clone())))["contrastive_loss"]
    assert math.isclose(got.item(), math.log(1 + math.exp(-2.0)), rel_tol=1e-6)


def test_auxiliary_views_are_never_used():
    torch.manual_seed(1)
    image, title, aux = (F.normalize(torch.randn(6, 8), dim=-1) for _ in range(3))
    objective = _clip()
    mask = torch.ones(6, 3, dtype=torch.bool)
    sel = objective.select_views(mask)
    assert sel.mask[:, 2].sum() == 0  # the auxiliary image is not even encoded
    inf = objective.inference_selection(mask)
    assert inf.mask[:, 2].sum() == 0
    # the served embedding is normalise(image + title)
    views = _batch(image, title)
    expected = F.normalize(image + title, dim=-1)
    assert torch.allclose(objective.item_embedding(views), expected, atol=1e-6)


def test_query_term_is_symmetric_info_nce_on_fused_items():
    torch.manual_seed(2)
    image, title, query = (F.normalize(torch.randn(5, 8), dim=-1) for _ in range(3))
    objective = _clip(query_weight=1.0, scale=10.0)
    out = objective(AlignmentBatch(_batch(image, title), query=query))
    item = F.normalize(image + title, dim=-1)
    logits = 10.0 * query @ item.t()
    labels = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    assert torch.allclose(out["query_item_loss"], expected, atol=1e-6)


def test_matched_pairs_give_a_lower_loss_than_shuffled():
    """Direction: titles near their own image vs the same titles moved to the next item."""
    g = torch.Generator().manual_seed(3)
    image = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=-1)
    title = F.normalize(image + 0.3 * torch.randn(16, 8, generator=g, dtype=torch.float64), dim=-1)
    objective = _clip(query_weight=0.0).double()
    matched = objective(AlignmentBatch(_batch(image, title)))["contrastive_loss"].item()
    shuffled = objective(AlignmentBatch(_batch(image, title.roll(1, dims=0))))["contrastive_loss"].item()
    assert matched < shuffled - 1.0, (matched, shuffled)


def test_no_pair_gives_a_named_zero_term():
    image = F.normalize(torch.randn(4, 8), dim=-1)
    views = _batch(image, image.clone())
    views.mask[:, 1] = False  # no title: the pair term has no pairs
    out = _clip(query_weight=0.0)(AlignmentBatch(views))
    assert out["contrastive_loss"].item() == 0.0 and out["contrastive_empty"].item() == 1.0


def test_clip_and_siglip_share_one_primary_pair_selection():
    from ftbench.objectives.base import primary_pair_selection

    layout = image_text_layout(4)  # image_1, title (primary), image_2, description
    mask = torch.tensor(
        [
            [True, True, True, True],  # both primary views: the pair
            [False, True, True, True],  # no primary image: no auxiliary stand-in
            [True, False, False, False],
        ]
    )
    expected_mask = torch.tensor([[True, True, False, False], [False, True, False, False], [True, False, False, False]])
    selection = primary_pair_selection(mask, layout)
    assert torch.equal(selection.mask, expected_mask)
    assert torch.equal(selection.side_weight, expected_mask.float())  # one view per side: marginal 1
    assert torch.equal(selection.item_weight, torch.tensor([[0.5, 0.5, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0]]))
    ctx = ObjectiveContext(layout, 8, 10, True, True)
    for name in ("clip", "siglip"):
        objective = OBJECTIVES.get(name)(OBJECTIVES.get(name).Config(), ctx)
        for chosen in (objective.select_views(mask), objective.inference_selection(mask)):
            assert all(torch.equal(getattr(chosen, f), getattr(selection, f)) for f in ("mask", "side_weight", "item_weight"))
