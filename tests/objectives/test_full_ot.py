"""`full_ot`: set similarity against POT on every pair, the product coupling against the fused-
embedding closed form, envelope gradients, missing sides, and one SGD step for V in {1, 2, 8}."""

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from ftbench.data.batching import compact_positions
from ftbench.data.catalog import ViewSlot
from ftbench.config import apply_overrides
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext, side_views
from ftbench.data.views import SlotLayout, all_views, cap_views, side_weights


class _Cat:
    slots = (
        ViewSlot("image_1", "image", "primary"),
        ViewSlot("title", "text", "primary"),
        ViewSlot("image_2", "image", "auxiliary"),
        ViewSlot("description", "text", "auxiliary"),
        ViewSlot("image_3", "image", "auxiliary"),
        ViewSlot("tags", "text", "auxiliary"),
        ViewSlot("image_4", "image", "auxiliary"),
        ViewSlot("bullets", "text", "auxiliary"),
    )
    modalities = ["image", "text"]


LAYOUT = SlotLayout.from_catalog(_Cat)
W_P = 0.6


def _objective(scale=5.0, query_weight=0.0, **options):
    cls = OBJECTIVES.get("full_ot")
    config = apply_overrides(
        cls.Config(primary_weight=W_P, init_logit_scale=scale, query_weight=query_weight), options, "full_ot"
    )
    return cls(config, ObjectiveContext(LAYOUT, 8, 100, True, True)).double()


def _views(x, mask):
    """Encode slot embeddings x [B, S, d] the way the batcher does, with all available views."""
    sel = all_views(mask, LAYOUT, W_P)
    slot, valid = compact_positions(sel.mask)
    safe = slot.clamp(min=0)
    emb = x.gather(1, safe.unsqueeze(-1).expand(-1, -1, x.shape[-1])) * valid.unsqueeze(-1)
    return EncodedViews(
        embeddings=emb,
        mask=valid,
        is_primary=LAYOUT.is_primary[safe] & valid,
        side=LAYOUT.side[safe],
        side_weight=sel.side_weight.gather(1, safe) * valid,
        item_weight=sel.item_weight.gather(1, safe) * valid,
        item_index=torch.arange(len(slot)),
    )


def _data(b=6, seed=0, keep=0.6, d=8):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, 8, d, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.rand(b, 8, generator=g) < keep
    mask[:, 0] |= ~mask.any(1)  # every item has at least one view
    return x, mask


def _side_sets(x, mask, item):
    """The item's (image embeddings, mu) and (text embeddings, nu) in slot order, as numpy."""
    w = side_weights(mask, LAYOUT.is_primary, LAYOUT.side, W_P).double()
    out = []
    for s in (0, 1):
        sel = mask[item] & (LAYOUT.side == s)
        out.append((x[item, sel].numpy(), w[item, sel].numpy()))
    return out


def test_entropic_similarity_equals_pot_on_every_pair():
    x, mask = _data(b=6, seed=1)
    mask[:, :2] = True  # every item has both sides, with padding from missing auxiliary views
    eps = 0.1
    objective = _objective(eps=eps, tolerance=1e-13, iterations=20000)
    views = _views(x, mask)
    img, txt = side_views(views, 0), side_views(views, 1)
    sim, stats = objective.set_similarity(img.embeddings, img.weight, txt.embeddings, txt.weight)
    for i in range(6):
        (xi, mu), _ = _side_sets(x, mask, i)
        for j in range(6):
            _, (yj, nu) = _side_sets(x, mask, j)
            C = 1.0 - xi @ yj.T
            P = ot.sinkhorn(mu, nu, C, eps, stopThr=1e-14, numItermax=20000)
            w_eps = (P * C).sum() + eps * (P * np.log(P)).sum()
            # converged to 1e-13 marginal error on both sides: agreement to 1e-9
            assert abs(float(sim[i, j]) - (1.0 - w_eps)) < 1e-9
    assert float(stats["marginal_error"]) < 1e-12


def test_independent_coupling_equals_fused_side_embeddings():
    x, mask = _data(b=7, seed=2)
    mask[:, :2] = True
    objective = _objective(coupling="independent")
    views = _views(x, mask)
    img, txt = side_views(views, 0), side_views(views, 1)
    sim, _ = objective.set_similarity(img.embeddings, img.weight, txt.embeddings, txt.weight)
    w = side_weights(mask, LAYOUT.is_primary, LAYOUT.side, W_P).double()
    m = torch.einsum("bs,bsd->bd", w * (LAYOUT.side == 0), x)  # sum_u mu_u x_i^u
    t = torch.einsum("bs,bsd->bd", w * (LAYOUT.side == 1), x)  # sum_v nu_v x_j^v
    # side weights are float32 (as in training): agreement to float32 round-off
    assert torch.allclose(sim, m @ t.t(), rtol=0, atol=1e-6)
    loss = objective(AlignmentBatch(views))["transport_loss"]
    logits = 5.0 * m @ t.t()
    labels = torch.arange(7)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    assert torch.allclose(loss, expected, rtol=0, atol=1e-5)


def test_transport_similarity_has_the_same_gradient_as_entropic():
    x, mask = _data(b=5, seed=3)
    mask[:, :2] = True
    views = _views(x, mask)
    img, txt = side_views(views, 0), side_views(views, 1)
    grads, sims, values = [], [], []
    for similarity in ("entropic", "transport"):
        objective = _objective(eps=0.2, tolerance=1e-13, iterations=20000, similarity=similarity)
        xs = img.embeddings.clone().requires_grad_()
        ys = txt.embeddings.clone().requires_grad_()
        sim, stats = objective.set_similarity(xs, img.weight, ys, txt.weight)
        grads.append(torch.autograd.grad(sim.sum(), (xs, ys)))
        sims.append(sim.detach())
    # ds/dG = P* for both: identical gradients; values differ by eps H(P*) >= 0
    for g_entropic, g_transport in zip(*grads):
        assert torch.allclose(g_entropic, g_transport, rtol=0, atol=1e-12)
    gap = sims[0] - sims[1]
    assert (gap >= 0).all() and (gap <= 0.2 * math.log(16) + 1e-12).all()


def test_plan_entropy_is_at_most_the_product_couplings():
    x, mask = _data(b=8, seed=4)
    mask[:, :2] = True
    out = _objective(tolerance=1e-10, iterations=5000)(AlignmentBatch(_views(x, mask)))
    # the product coupling maximises entropy among couplings with the same marginals
    assert float(out["plan_entropy"]) <= float(out["independent_entropy"]) + 1e-9
    assert 0 < float(out["sinkhorn_iterations"]) <= 5000
    assert float(out["solver_log_domain"]) == 0.0  # 2 / 0.05 = 40: plain domain
    assert all(not v.requires_grad for k, v in out.items() if not k.endswith("_loss"))


def test_items_lacking_a_side_are_left_out_of_the_cross_view_term():
    x, mask = _data(b=8, seed=5)
    mask[:, :2] = True
    mask[2, LAYOUT.side == 1] = False  # item 2: images only
    mask[5, LAYOUT.side == 0] = False  # item 5: texts only
    objective = _objective()
    got = objective(AlignmentBatch(_views(x, mask)))
    keep = torch.tensor([i not in (2, 5) for i in range(8)])
    expected = objective(AlignmentBatch(_views(x[keep], mask[keep])))
    assert torch.allclose(got["transport_loss"], expected["transport_loss"], rtol=0, atol=1e-12)
    assert float(got["pairs"]) == 6


def test_no_item_with_both_sides_gives_a_zero_term_not_nan():
    x, mask = _data(b=4, seed=6)
    mask[:] = False
    mask[:, 0] = True  # image_1 only (V = 1)
    x = x.clone().requires_grad_()
    query = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=-1)
    out = _objective(query_weight=1.0)(AlignmentBatch(_views(x, mask), query=query))
    assert float(out["transport_loss"].detach()) == 0.0 and float(out["pairs"]) == 0
    loss = OBJECTIVES.get("full_ot").total_loss(out)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("V", [1, 2, 8])
def test_sgd_step_lowers_the_loss(V):
    g = torch.Generator().manual_seed(10 + V)
    B, d = 12, 16
    raw_x = torch.randn(B, 8, d, generator=g, dtype=torch.float64, requires_grad=True)
    raw_q = torch.randn(B, d, generator=g, dtype=torch.float64, requires_grad=True)
    available = torch.rand(B, 8, generator=g) < 0.7
    available[:, 0] |= ~available.any(1)
    available[0, 1:] = False  # an item with one view only
    available[1, 0] = False  # an item without its primary image
    mask = cap_views(available, V)
    objective = _objective(query_weight=1.0)

    def loss_fn():
        views = _views(F.normalize(raw_x, dim=-1), mask)
        out = objective(AlignmentBatch(views, query=F.normalize(raw_q, dim=-1)))
        return objective.total_loss(out), out

    loss, out = loss_fn()
    assert torch.isfinite(loss)
    if V == 1:
        assert float(out["transport_loss"].detach()) == 0.0
    else:
        assert float(out["pairs"]) >= 2 and float(out["transport_loss"].detach()) > 0
    loss.backward()
    grads = [raw_x.grad, raw_q.grad, objective.log_logit_scale.grad]
    assert all(torch.isfinite(gr).all() for gr in grads)
    with torch.no_grad():
        for p in (raw_x, raw_q, objective.log_logit_scale):
            p -= 0.05 * p.grad
    new_loss, _ = loss_fn()
    assert float(new_loss.detach()) < float(loss.detach())


def test_invalid_options_are_rejected():
    cls = OBJECTIVES.get("full_ot")
    for key, value, message in (("eps", 0.0, "eps"), ("domain", "exp", "domain"), ("coupling", "full", "coupling"),
                                ("iterations", 0, "iterations"), ("tolerance", -1.0, "tolerance")):
        with pytest.raises(ValueError, match=message):
            apply_overrides(cls.Config(), {key: value}, "full_ot")


def test_memory_estimate_grows_quadratically_in_views():
    cls = OBJECTIVES.get("full_ot")
    small, large = cls.memory_estimate(256, 8, 256), cls.memory_estimate(256, 32, 256)
    # B^2 n m floats, n = m = V / 2: x16 from V = 8 to 32, diluted by the linear tower term (x4)
    assert small >= 8 * 256**2 * 16 * 4 and 8 < large / small <= 16
