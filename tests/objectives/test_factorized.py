"""`factorized`: with all auxiliary views sampled it equals the closed form in the objective's docstring; with k
sampled views the weighted side sums are unbiased; the cost is 2 + k views per item."""

import torch
import torch.nn.functional as F

from ftbench.data.batching import compact_positions
from ftbench.data.catalog import ViewSlot
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext
from ftbench.data.views import SlotLayout, side_weights


class _Cat:
    slots = (
        ViewSlot("image_1", "image", "primary"),
        ViewSlot("title", "text", "primary"),
        ViewSlot("image_2", "image", "auxiliary"),
        ViewSlot("description", "text", "auxiliary"),
        ViewSlot("image_3", "image", "auxiliary"),
        ViewSlot("tags", "text", "auxiliary"),
        ViewSlot("image_4", "image", "auxiliary"),
    )
    modalities = ["image", "text"]


LAYOUT = SlotLayout.from_catalog(_Cat)


def _objective(k, w_p=0.6, scale=5.0):
    cls = OBJECTIVES.get("factorized")
    ctx = ObjectiveContext(LAYOUT, 8, 100, True, True)
    return cls(cls.Config(aux_samples=k, primary_weight=w_p, init_logit_scale=scale, query_weight=0.0), ctx)


def _encode(slot_embeddings, selection):
    """Compact the selected slots the way the batcher does, with the given slot embeddings."""
    slot, valid = compact_positions(selection.mask)
    safe = slot.clamp(min=0)
    emb = slot_embeddings.gather(1, safe.unsqueeze(-1).expand(-1, -1, slot_embeddings.shape[-1])) * valid.unsqueeze(-1)
    return EncodedViews(
        embeddings=emb,
        mask=valid,
        is_primary=LAYOUT.is_primary[safe] & valid,
        side=LAYOUT.side[safe],
        side_weight=selection.side_weight.gather(1, safe) * valid,
        item_weight=selection.item_weight.gather(1, safe) * valid,
        item_index=torch.arange(len(slot)),
    )


def _data(b=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, 7, 8, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.rand(b, 7, generator=g) > 0.3
    mask[:, :2] = True
    return x, mask


def test_all_auxiliary_views_equals_closed_form():
    x, mask = _data()
    objective = _objective(k=7).double()
    views = _encode(x, objective.select_views(mask, torch.Generator().manual_seed(0)))
    got = objective(AlignmentBatch(views))["transport_loss"]
    # closed form: s_ij = <sum_u mu_u x_i^u, sum_v nu_v x_j^v> with primary-weighted marginals
    w = side_weights(mask, LAYOUT.is_primary, LAYOUT.side, 0.6).double()
    m = torch.einsum("bs,bsd->bd", w * (LAYOUT.side == 0), x)
    t = torch.einsum("bs,bsd->bd", w * (LAYOUT.side == 1), x)
    logits = 5.0 * m @ t.t()
    labels = torch.arange(len(x))
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    # view weights are float32 (as in training), hence 1e-6 rather than float64 round-off
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


def test_sampled_side_sums_are_unbiased():
    x, mask = _data(b=4, seed=1)
    objective = _objective(k=1).double()
    w = side_weights(mask, LAYOUT.is_primary, LAYOUT.side, 0.6).double()
    exact_m = torch.einsum("bs,bsd->bd", w * (LAYOUT.side == 0), x)
    exact_t = torch.einsum("bs,bsd->bd", w * (LAYOUT.side == 1), x)
    g = torch.Generator().manual_seed(0)
    acc_m = torch.zeros_like(exact_m)
    acc_t = torch.zeros_like(exact_t)
    n = 20000
    for _ in range(n):
        sel = objective.select_views(mask, g)
        acc_m += torch.einsum("bs,bsd->bd", sel.side_weight.double() * (LAYOUT.side == 0), x)
        acc_t += torch.einsum("bs,bsd->bd", sel.side_weight.double() * (LAYOUT.side == 1), x)
    # Monte-Carlo mean within ~5 standard errors of the exact sums (weights <= 2, n = 20000)
    assert torch.allclose(acc_m / n, exact_m, atol=0.05)
    assert torch.allclose(acc_t / n, exact_t, atol=0.05)


def test_cost_is_primary_views_plus_k():
    _, mask = _data(b=64, seed=2)
    for k in (0, 1, 2):
        sel = _objective(k=k).select_views(mask, torch.Generator().manual_seed(0))
        n_aux = (mask & ~LAYOUT.is_primary).sum(1)
        assert torch.equal(sel.mask.sum(1), 2 + torch.clamp(n_aux, max=k))
        assert not (sel.mask & ~mask).any()


def test_inference_fuses_all_views():
    x, mask = _data(b=5, seed=3)
    objective = _objective(k=1).double()
    views = _encode(x, objective.inference_selection(mask))
    assert torch.equal(views.mask.sum(1), mask.sum(1))
    w = torch.where(mask, 0.0, 0.0).double()
    n_aux = (mask & ~LAYOUT.is_primary).sum(1, keepdim=True).double()
    w = torch.where(LAYOUT.is_primary, 0.3, 0.4 / n_aux) * mask
    expected = F.normalize(torch.einsum("bs,bsd->bd", w, x), dim=-1)
    assert torch.allclose(objective.item_embedding(views), expected, atol=1e-12)
