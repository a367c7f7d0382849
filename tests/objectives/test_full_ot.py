"""`full_ot`: similarities and plans against POT on every pair, duplicated views leave scores
unchanged, a hand-computed loss, the product coupling against the fused-embedding closed form, a
matched batch beats a shuffled one, missing sides."""

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F
from ftbench.config import apply_overrides
from ftbench.data.batching import compact_positions
from ftbench.data.views import all_views, cap_views, side_weights
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext, side_views

from ._helpers import image_text_layout

LAYOUT = image_text_layout(8)
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


def _pot_plan(xi, mu, yj, nu, eps):
    return ot.sinkhorn(mu, nu, 1.0 - xi @ yj.T, eps, stopThr=1e-14, numItermax=20000)


def test_transport_similarity_and_plans_equal_pot_on_every_pair():
    x, mask = _data(b=6, seed=1)
    mask[:, :2] = True  # every item has both sides, with padding from missing auxiliary views
    eps = 0.1
    objective = _objective(eps=eps, tolerance=1e-13, iterations=20000)  # default: transport
    views = _views(x, mask)
    img, txt = side_views(views, 0), side_views(views, 1)
    xs = img.embeddings.clone().requires_grad_()
    sim, stats = objective.set_similarity(xs, img.weight, txt.embeddings, txt.weight)
    for i in range(6):
        (xi, mu), _ = _side_sets(x, mask, i)
        for j in range(6):
            _, (yj, nu) = _side_sets(x, mask, j)
            P = _pot_plan(xi, mu, yj, nu, eps)
            # converged to 1e-13 marginal error on both sides: agreement to 1e-9
            assert abs(float(sim[i, j].detach()) - (P * (xi @ yj.T)).sum()) < 1e-9
            # with P* held fixed, d s_ij / d x_i^u = sum_v P*_uv y_j^v: the plan itself, row by row
            (grad,) = torch.autograd.grad(sim[i, j], xs, retain_graph=True)
            n = len(xi)
            assert np.abs(grad[i, :n].numpy() - P @ yj).max() < 1e-9
            assert float(grad[i, n:].abs().sum()) == 0.0  # padding carries no mass
    assert float(stats["marginal_error"]) < 1e-12


def test_entropic_option_equals_pot_solve_batch_value():
    x, mask = _data(b=5, seed=7)
    mask[:, :2] = True
    eps = 0.2
    objective = _objective(eps=eps, tolerance=1e-13, iterations=20000, similarity="entropic")
    views = _views(x, mask)
    img, txt = side_views(views, 0), side_views(views, 1)
    sim, _ = objective.set_similarity(img.embeddings, img.weight, txt.embeddings, txt.weight)
    # POT's batched solver on the padded problems (zero-mass padding rows/columns)
    xi, mu = img.embeddings.numpy(), img.weight.double().numpy()
    yj, nu = txt.embeddings.numpy(), txt.weight.double().numpy()
    C = 1.0 - np.einsum("iud,jvd->ijuv", xi, yj).reshape(25, xi.shape[1], yj.shape[1])
    a = np.repeat(mu, 5, axis=0)
    b = np.tile(nu, (5, 1))
    res = ot.solve_batch(C, reg=eps, a=a, b=b, max_iter=20000, tol=1e-14, reg_type="entropy")
    # POT adds 1e-16 inside its logarithm: agreement to 1e-8, not round-off
    assert np.abs(sim.numpy().reshape(-1) - (1.0 - np.asarray(res.value))).max() < 1e-8


def test_duplicating_a_view_leaves_every_score_unchanged():
    g = torch.Generator().manual_seed(8)
    B, d = 5, 8
    x = F.normalize(torch.randn(B, 3, d, generator=g, dtype=torch.float64), dim=-1)
    mu = torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64).expand(B, 3)
    y = F.normalize(torch.randn(1, d, generator=g, dtype=torch.float64), dim=-1)
    single = torch.cat([y, torch.zeros(3, d, dtype=torch.float64)])[None]  # one view, padded to 4
    copies = y.expand(4, d)[None]  # the same view four times
    nu_single = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    nu_copies = torch.full((1, 4), 0.25, dtype=torch.float64)
    for similarity, eps in (("transport", 0.05), ("entropic", 0.05)):
        objective = _objective(eps=eps, tolerance=1e-13, iterations=20000, similarity=similarity)
        scores = []
        for text, nu in ((single, nu_single), (copies, nu_copies)):
            # image sides of B items against the one text side (item axis of y broadcast to B)
            sim, _ = objective.set_similarity(x, mu, text.expand(B, -1, -1), nu.expand(B, -1))
            scores.append(sim[:, 0])
        if similarity == "transport":
            assert torch.allclose(scores[0], scores[1], rtol=0, atol=1e-10)
        else:  # the entropic value adds eps H(P*), larger by eps log 4 for the copies
            assert torch.allclose(scores[1] - scores[0], torch.full((B,), eps * math.log(4), dtype=torch.float64), atol=1e-9)


def test_loss_equals_a_hand_computation_on_a_tiny_batch():
    # two items; image side: the primary image only, text side: title (0.6) and one aux text (0.4).
    # With one image view the plan is forced, P*_1v = nu_v, so s_ij = sum_v nu_v <x_i, y_j^v>.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    c, r = math.cos(0.3), math.sin(0.3)
    y = torch.tensor([[[1.0, 0.0], [c, r]], [[0.0, 1.0], [r, c]]], dtype=torch.float64)
    nu = torch.tensor([[0.6, 0.4], [0.6, 0.4]], dtype=torch.float64)
    views = EncodedViews(
        embeddings=torch.cat([x[:, None], y], dim=1),
        mask=torch.ones(2, 3, dtype=torch.bool),
        is_primary=torch.tensor([[True, True, False]] * 2),
        side=torch.tensor([[0, 1, 1]] * 2),
        side_weight=torch.cat([torch.ones(2, 1, dtype=torch.float64), nu], dim=1),
        item_weight=torch.tensor([[0.3, 0.3, 0.4]] * 2),
        item_index=torch.arange(2),
    )
    out = _objective(scale=10.0)(AlignmentBatch(views))
    s_same, s_other = 0.6 + 0.4 * c, 0.4 * r  # s_11 = s_22, s_12 = s_21
    # symmetric InfoNCE on [[a, b], [b, a]] * 10: both directions give log(1 + e^{10 (b - a)})
    expected = math.log1p(math.exp(10.0 * (s_other - s_same)))
    assert abs(float(out["transport_loss"].detach()) - expected) < 1e-9


def test_matched_views_have_lower_loss_than_views_shuffled_across_items():
    g = torch.Generator().manual_seed(9)
    B, d = 8, 16
    centre = F.normalize(torch.randn(B, 1, d, generator=g, dtype=torch.float64), dim=-1)
    x = F.normalize(centre + 0.3 * torch.randn(B, 8, d, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.ones(B, 8, dtype=torch.bool)
    objective = _objective()
    matched = float(objective(AlignmentBatch(_views(x, mask)))["transport_loss"].detach())
    shuffled_x = x.clone()
    shuffled_x[:, LAYOUT.side == 1] = x[torch.randperm(B, generator=g)][:, LAYOUT.side == 1]
    shuffled = float(objective(AlignmentBatch(_views(shuffled_x, mask)))["transport_loss"].detach())
    assert matched < shuffled - 1.0


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
def test_loss_and_gradients_are_finite_for_any_view_count(V):
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
    views = _views(F.normalize(raw_x, dim=-1), mask)
    out = objective(AlignmentBatch(views, query=F.normalize(raw_q, dim=-1)))
    loss = objective.total_loss(out)
    assert torch.isfinite(loss)
    if V == 1:
        assert float(out["transport_loss"].detach()) == 0.0 and float(out["transport_empty"]) == 1.0
    else:
        assert float(out["pairs"]) >= 2 and float(out["transport_loss"].detach()) > 0
    loss.backward()
    grads = [raw_x.grad, raw_q.grad, objective.log_logit_scale.grad]
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_invalid_options_are_rejected():
    cls = OBJECTIVES.get("full_ot")
    for key, value, message in (
        ("eps", 0.0, "eps"),
        ("domain", "exp", "domain"),
        ("coupling", "full", "coupling"),
        ("iterations", 0, "iterations"),
        ("tolerance", -1.0, "tolerance"),
        ("similarity", "cosine", "similarity"),
    ):
        with pytest.raises(ValueError, match=message):
            apply_overrides(cls.Config(), {key: value}, "full_ot")


def test_memory_estimate_grows_quadratically_in_views():
    cls = OBJECTIVES.get("full_ot")
    small, large = cls.memory_estimate(256, 8, 256), cls.memory_estimate(256, 32, 256)
    # B^2 n m floats, n = m = V / 2: x16 from V = 8 to 32, diluted by the linear tower term (x4)
    assert small >= 8 * 256**2 * 16 * 4 and 8 < large / small <= 16
