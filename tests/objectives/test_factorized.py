"""`factorized`: with all auxiliary views sampled it equals the product-coupling closed form; with k
views sampled per side each side's weights sum to 1 in every draw and the side sums are unbiased;
the cost is the primaries plus k per side; a hand-computed loss; matched beats shuffled."""

import math

import torch
import torch.nn.functional as F
from ftbench.data.batching import compact_positions
from ftbench.data.views import side_weights
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext

from ._helpers import image_text_layout

LAYOUT = image_text_layout(7)


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


def _varied_mask():
    """Items with different auxiliary counts per side, missing primaries, one-sided items."""
    # slots: image_1 title image_2 description image_3 tags image_4 (sides 0 1 0 1 0 1 0)
    rows = [
        [1, 1, 1, 1, 1, 1, 1],  # 3 aux images, 2 aux texts
        [1, 1, 1, 0, 0, 0, 0],  # 1 aux image, no aux text
        [1, 1, 0, 1, 0, 1, 0],  # no aux image, 2 aux texts
        [0, 1, 1, 0, 1, 0, 1],  # no primary image, 3 aux images
        [1, 0, 0, 1, 1, 0, 0],  # no title: 1 aux image, 1 aux text
        [1, 0, 1, 0, 1, 0, 0],  # images only
    ]
    return torch.tensor(rows, dtype=torch.bool)


def _side_sums(weight, x):
    return [torch.einsum("...s,...sd->...d", weight * (LAYOUT.side == s), x) for s in (0, 1)]


def test_side_weights_sum_to_one_in_every_draw():
    mask = _varied_mask()
    has_side = torch.stack([(mask & (LAYOUT.side == s)).any(1) for s in (0, 1)], 1)
    for k in (1, 2):
        objective = _objective(k=k)
        g = torch.Generator().manual_seed(k)
        for _ in range(300):
            sel = objective.select_views(mask, g)
            sums = torch.stack([(sel.side_weight * (LAYOUT.side == s)).sum(1) for s in (0, 1)], 1)
            assert torch.allclose(sums, has_side.float(), atol=1e-6)  # 1 on every side that has views
            assert torch.allclose(sel.item_weight.sum(1), torch.ones(len(mask)), atol=1e-6)
            assert not (sel.mask & ~mask).any()


def test_monte_carlo_mean_of_side_sums_equals_the_all_view_sums():
    g = torch.Generator().manual_seed(1)
    mask = _varied_mask()
    x = F.normalize(torch.randn(len(mask), 7, 8, generator=g, dtype=torch.float64), dim=-1)
    objective = _objective(k=1)
    exact = _side_sums(side_weights(mask, LAYOUT.is_primary, LAYOUT.side, 0.6).double(), x)
    n = 4000  # draws, made in one call on the mask repeated n times
    sel = objective.select_views(mask.repeat(n, 1), g)
    draws = _side_sums(sel.side_weight.double().view(n, len(mask), 7), x)
    for side, (e, d) in enumerate(zip(exact, draws)):
        mean, std = d.mean(0), d.std(0)
        # 5 standard errors of the mean of n i.i.d. draws (plus round-off where a side is not sampled)
        assert ((mean - e).abs() <= 5 * std / math.sqrt(n) + 1e-6).all(), side
    # and the draws do vary where a side has more auxiliary views than k
    assert float(draws[0][:, 0].std(0).max()) > 0.05


def test_cost_is_primary_views_plus_k_per_side():
    _, mask = _data(b=64, seed=2)
    for k in (0, 1, 2):
        sel = _objective(k=k).select_views(mask, torch.Generator().manual_seed(0))
        expected = (mask & LAYOUT.is_primary).sum(1)
        for s in (0, 1):
            n_aux = (mask & ~LAYOUT.is_primary & (LAYOUT.side == s)).sum(1)
            expected = expected + torch.clamp(n_aux, max=k)
        assert torch.equal(sel.mask.sum(1), expected)
        assert not (sel.mask & ~mask).any()


def test_loss_equals_a_hand_computation_on_a_tiny_batch():
    # two items, primary image + title + one aux text each; w_p = 0.6 on the text side, the
    # image side is the primary image alone (weight 1): m_i = x_i, t_i = 0.6 title_i + 0.4 aux_i
    c, r = math.cos(0.3), math.sin(0.3)
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    title = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    aux = torch.tensor([[c, r], [r, c]], dtype=torch.float64)
    views = EncodedViews(
        embeddings=torch.stack([image, title, aux], 1),
        mask=torch.ones(2, 3, dtype=torch.bool),
        is_primary=torch.tensor([[True, True, False]] * 2),
        side=torch.tensor([[0, 1, 1]] * 2),
        side_weight=torch.tensor([[1.0, 0.6, 0.4]] * 2, dtype=torch.float64),
        item_weight=torch.tensor([[0.3, 0.3, 0.4]] * 2, dtype=torch.float64),
        item_index=torch.arange(2),
    )
    objective = _objective(k=1, scale=2.0).double()
    out = objective(AlignmentBatch(views))
    scale = float(objective.logit_scale().detach())  # 2 up to the float32 log-scale parameter
    # <m_1, t_1> = 0.6 + 0.4 c, <m_1, t_2> = 0.4 r (and symmetrically): both directions of the
    # symmetric InfoNCE on [[a, b], [b, a]] give log(1 + e^{s (b - a)})
    expected = math.log1p(math.exp(scale * (0.4 * r - 0.6 - 0.4 * c)))
    assert abs(float(out["transport_loss"].detach()) - expected) < 1e-12


def test_matched_views_have_lower_loss_than_views_shuffled_across_items():
    g = torch.Generator().manual_seed(9)
    B = 10
    centre = F.normalize(torch.randn(B, 1, 8, generator=g, dtype=torch.float64), dim=-1)
    x = F.normalize(centre + 0.3 * torch.randn(B, 7, 8, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.ones(B, 7, dtype=torch.bool)
    objective = _objective(k=1).double()
    shuffled = x.clone()
    shuffled[:, LAYOUT.side == 1] = x[torch.randperm(B, generator=g)][:, LAYOUT.side == 1]
    sel = objective.select_views(mask, torch.Generator().manual_seed(0))
    losses = [float(objective(AlignmentBatch(_encode(v, sel)))["transport_loss"].detach()) for v in (x, shuffled)]
    assert losses[0] < losses[1] - 1.0


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
