"""The solvers stay finite where training pushes them: Sinkhorn at small regularisation in float32,
and GRAM volumes of nearly collinear views, values and gradients alike (hypothesis).

Why: training runs in float32, and contrastive training drives positives towards exactly the
degenerate cases - identical views (zero cost, volume zero) and a sharp plan (small eps, where
the plain Sinkhorn kernel exp(-C/eps) underflows). A NaN there stops training (the guard in
training.py) at best. The float64 accuracy of both solvers against POT and GRAM is tested in
test_sinkhorn.py and test_volume.py; here generated float32 problems check finiteness and the
bounds that hold at any eps or delta:

- Sinkhorn, eps in [1e-4, 1e-2] on costs 1 - cos in [0, 2] with repeated vectors (ties): a
  non-negative plan whose column sums match b (to float32 precision at that eps), a value
  W_eps = <P, C> - eps H(P) within [<P, C> - eps log(nm), <P, C>], finite gradients (`auto` picks
  the log domain per chunk where the plain kernel would underflow);
- volumes of k = 2..4 vectors each within 1e-7..1e-2 of a common direction: finite, at least
  delta^(k/2), finite gradients;
- the `full_ot` objective at eps = 1e-3 on items whose views are all identical: finite loss and
  gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from ftbench.data.batching import compact_positions
from ftbench.data.catalog import ViewSlot
from ftbench.data.views import SlotLayout, all_views
from ftbench.kernels.sinkhorn import sinkhorn
from ftbench.kernels.volume import gram_volume, pairwise_volume
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext
from hypothesis import given, settings
from hypothesis import strategies as st


def _unit(shape, seed, dtype=torch.float32):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1).to(dtype)


@settings(max_examples=40, deadline=None)
@given(eps_exp=st.floats(-4.0, -2.0), n=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 2**16), repeats=st.booleans())
def test_sinkhorn_float32_at_small_eps_is_finite_and_bounded(eps_exp, n, m, seed, repeats):
    eps = 10.0**eps_exp
    x, y = _unit((4, n, 8), seed), _unit((4, m, 8), seed + 1)
    if repeats:  # identical views on both sides: zero costs, exact ties
        y[:, : min(n, m)] = x[:, : min(n, m)]
    C = (1.0 - x @ y.transpose(1, 2)).clamp(0.0, 2.0).requires_grad_(True)
    res = sinkhorn(C, eps=eps, iterations=2000, tol=1e-5)
    assert torch.isfinite(res.plan).all() and (res.plan >= 0).all()
    assert torch.isfinite(res.value).all() and torch.isfinite(res.transport_cost).all()
    # float32 exponents (alpha + beta - C) / eps are O(1 / eps): rounding limits the marginals to
    # about 2^-23 * (cost range) / eps, whatever the number of iterations
    float32_limit = 2.0**-23 * 4.0 / eps
    torch.testing.assert_close(res.plan.sum(1), torch.full((4, m), 1.0 / m), atol=1e-4 + float32_limit, rtol=0)
    # W_eps = <P, C> - eps H(P) with 0 <= H(P) <= log(nm)
    slack = eps * math.log(n * m) + 1e-3
    assert (res.value.detach() <= res.transport_cost + 1e-4).all()
    assert (res.value.detach() >= res.transport_cost - slack).all()
    (grad,) = torch.autograd.grad(res.value.sum(), C)
    assert torch.isfinite(grad).all()


@settings(max_examples=40, deadline=None)
@given(k=st.integers(2, 4), spread_exp=st.floats(-7.0, -2.0), delta_exp=st.floats(-6.0, -2.0), seed=st.integers(0, 2**16))
def test_volumes_of_nearly_collinear_views_are_finite(k, spread_exp, delta_exp, seed):
    delta = 10.0**delta_exp
    direction = _unit((5, 1, 16), seed)
    noise = torch.randn(5, k, 16, generator=torch.Generator().manual_seed(seed + 7)) * 10.0**spread_exp
    vectors = F.normalize(direction + noise, dim=-1).requires_grad_(True)
    vol = gram_volume(vectors, delta=delta)
    assert torch.isfinite(vol).all() and (vol >= delta ** (k / 2) * (1 - 1e-3)).all()
    (grad,) = torch.autograd.grad(vol.sum(), vectors)
    assert torch.isfinite(grad).all()
    anchor = vectors[:, 0].detach().clone().requires_grad_(True)
    sets = vectors[:, 1:].detach().clone().requires_grad_(True)
    pair = pairwise_volume(anchor, sets, delta=delta)
    assert torch.isfinite(pair).all()
    grads = torch.autograd.grad(pair.sum(), (anchor, sets))
    assert all(torch.isfinite(g).all() for g in grads)


class _Catalog:
    slots = (
        ViewSlot("image", "image", "primary"),
        ViewSlot("title", "text", "primary"),
        ViewSlot("image_2", "image", "auxiliary"),
        ViewSlot("description", "text", "auxiliary"),
    )
    modalities = ["image", "text"]


def test_full_ot_at_small_eps_with_identical_views_is_finite():
    layout = SlotLayout.from_catalog(_Catalog)
    cls = OBJECTIVES.get("full_ot")
    objective = cls(cls.Config(eps=1e-3, iterations=300, query_weight=0.0), ObjectiveContext(layout, 8, 50, False, False))
    base = _unit((12, 1, 8), seed=3)
    raw = base.expand(12, 4, 8).clone().requires_grad_(True)  # every view of an item is the same vector
    mask = torch.ones(12, 4, dtype=torch.bool)
    sel = all_views(mask, layout, 0.6)
    slot, valid = compact_positions(sel.mask)
    views = EncodedViews(
        embeddings=raw.gather(1, slot.clamp(min=0).unsqueeze(-1).expand(-1, -1, 8)),
        mask=valid,
        is_primary=layout.is_primary[slot.clamp(min=0)] & valid,
        side=layout.side[slot.clamp(min=0)],
        side_weight=sel.side_weight.gather(1, slot.clamp(min=0)),
        item_weight=sel.item_weight.gather(1, slot.clamp(min=0)),
        item_index=torch.arange(12),
    )
    terms = objective(AlignmentBatch(views=views))
    loss = objective.total_loss(terms)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(raw.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in objective.parameters() if p.grad is not None)
