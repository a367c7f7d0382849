"""`oat` and `mover` after the speed-ups against frozen copies of the computation they replaced.

The committed results were made with the previous code: per-modality float32 log-domain Sinkhorn
for oat's d x d plans on the released [B, d, d] difference-tensor cost, float32 log-domain Sinkhorn
for mover's B x B plan, mover's distance score as exp(log Vol(a, X) - log Vol(X)) from two
log-determinants, and oat's 1-Wasserstein term as one geomloss `SamplesLoss` call per modality.
The frozen copies below are that computation written out in the test: they call none of the
project's kernels they stand in for (no `feature_cost`, no `ftbench.kernels.volume`, no
`fixed_sinkhorn`). The fast paths must give the same loss terms and gradients to 1e-5 relative
(float32 round-off of the log domain is about 1e-6 here): oat in its default configuration, mover
with the score the speed-up was made for (volume_score='distance' on unlifted vectors, set
explicitly: the default has since changed).
"""

import math

import ftbench.objectives.mover as mover_module
import torch
import torch.nn.functional as F
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, ObjectiveContext

from .test_oat import MULTIMODAL, encode, make_layout, make_mask

RTOL = 1e-5


def frozen_log_sinkhorn(cost, epsilon, iterations):
    """The previous `log_sinkhorn` (uniform marginals), verbatim in its arithmetic."""
    n, m = cost.shape[-2], cost.shape[-1]
    batch = cost.shape[:-2]
    floor = 0.5 * math.log(torch.finfo(cost.dtype).tiny)

    def lse(x, dim):
        top = x.amax(dim=dim, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        return torch.log(torch.exp((x - top).clamp_min_(floor)).sum(dim=dim)) + top.squeeze(dim)

    log_a = torch.full((*batch, n), -math.log(n), dtype=cost.dtype)
    log_b = torch.full((*batch, m), -math.log(m), dtype=cost.dtype)
    log_k = -cost / epsilon
    log_v = log_b.clone()
    for _ in range(iterations):
        log_u = log_a - lse(log_k + log_v.unsqueeze(-2), dim=-1)
        log_v = log_b - lse(log_k + log_u.unsqueeze(-1), dim=-2)
    exponent = log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2)
    return torch.exp(exponent.masked_fill(exponent < floor, float("-inf")))


def frozen_feature_cost(z_modality, z_anchor, scale, weight):
    """RecGOAT's released cost C_pq = s * mean_i (Z_m[i,p] - Z_a[i,q])^2 over the weighted items,
    from the [B, d, d] difference tensor (in float64, cast back)."""
    diff = z_modality.double()[:, :, None] - z_anchor.double()[:, None, :]
    w = weight.double() / weight.double().sum()
    return (scale * (w[:, None, None] * diff * diff).sum(0)).to(z_modality.dtype)


def frozen_log_volume(vectors, mask, delta):
    """1/2 log det(G + delta I) of each set [..., k, d], masked members replaced by identity rows
    and columns (GRAM's volume, regularised): an explicit Gram matrix and a float64 Cholesky factor."""
    v = vectors.double() * mask.unsqueeze(-1).to(torch.float64)
    both = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    eye = torch.eye(v.shape[-2], dtype=torch.float64)
    gram = torch.where(both, v @ v.transpose(-1, -2) + delta * eye, eye)
    return torch.log(torch.diagonal(torch.linalg.cholesky(gram), dim1=-2, dim2=-1)).sum(-1).to(vectors.dtype)


def assert_close(name, ours, ref):
    scale = ref.abs().max().clamp_min(1e-12)
    err = float((ours - ref).abs().max() / scale)
    assert err <= RTOL, f"{name}: relative difference {err:.2e} > {RTOL}"


def loss_and_grads(obj, batch_fn):
    views, query = batch_fn()
    terms = obj(AlignmentBatch(views, query))
    loss = type(obj).total_loss(terms)
    params = [p for p in obj.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [views.embeddings, query, *params], allow_unused=True)
    return terms, loss.detach(), grads


def batch_maker(layout, b, d, seed):
    def make():
        g = torch.Generator().manual_seed(seed)
        mask = make_mask(layout, b, 8, seed=seed)
        raw = torch.randn(b, layout.num_slots, d, generator=g)
        # correlated views (a shared item direction), so plans and volumes are not those of noise
        raw = raw + 2.0 * torch.randn(b, 1, d, generator=g)
        views = encode(raw, mask, layout)
        views.embeddings.requires_grad_(True)
        query = F.normalize(torch.randn(b, d, generator=g) + raw[:, 0], dim=-1).requires_grad_(True)
        return views, query

    return make


def compare(name, build, patch_frozen, seed=3, required=()):
    layout = make_layout(MULTIMODAL)
    obj = build(layout)
    make = batch_maker(layout, 64, 128, seed)
    terms, loss, grads = loss_and_grads(obj, make)
    frozen = build(layout)
    patch_frozen(frozen)
    ref_terms, ref_loss, ref_grads = loss_and_grads(frozen, make)
    for key in required:
        assert float(ref_terms[key].detach()) > 0, key
    assert_close(f"{name} total loss", loss, ref_loss)
    for key, value in ref_terms.items():
        if key.endswith("_loss"):
            assert_close(f"{name} {key}", terms[key].detach(), value.detach())
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        if r is not None:
            assert_close(f"{name} gradient {i}", g, r)


def test_oat_default_equals_the_frozen_per_modality_log_domain_plans_and_geomloss_w1(monkeypatch):
    """The frozen copy also computes the 1-Wasserstein term (default weight 1) by one geomloss
    `SamplesLoss` call per modality, as before the batched Sinkhorn divergence."""
    cls = OBJECTIVES.get("oat")
    assert cls.Config().wasserstein_weight > 0

    def build(layout):
        torch.manual_seed(0)
        return cls(cls.Config(), ObjectiveContext(layout, 128, 100, True, False))

    def patch_frozen(obj):
        from geomloss import SamplesLoss

        obj._geomloss = SamplesLoss("sinkhorn", p=1, blur=obj.config.wasserstein_blur, backend="tensorized")
        plans = obj.plans

        def forward(modalities, anchor, update=False):  # the previous FeaturePlans.forward, training mode
            out = []
            for z, present in modalities:
                cost = frozen_feature_cost(z.detach(), anchor.detach(), plans.scale, present.to(z.dtype))
                out.append(frozen_log_sinkhorn(cost, plans.epsilon, plans.iterations).to(z.dtype))
            return out, {}

        plans.forward = forward

    assert build(make_layout(MULTIMODAL))._geomloss is None  # the batched solver is the default
    compare("oat", build, patch_frozen, required=("wasserstein_loss",))


def frozen_mover_volumes(self, anchor, sets, set_mask):
    """The previous `Mover.volumes` for the score 'distance': exp(log Vol(a_i, X_j) - log Vol(X_j))."""
    delta = self.config.volume_delta
    b1, b2 = anchor.shape[0], sets.shape[0]
    with_anchor = torch.cat(
        [anchor[:, None, None, :].expand(b1, b2, 1, -1), sets.unsqueeze(0).expand(b1, -1, -1, -1)], dim=2
    )  # [B1, B2, 1 + n, d]
    mask = torch.cat([torch.ones(b1, b2, 1, dtype=torch.bool), set_mask.unsqueeze(0).expand(b1, -1, -1)], dim=2)
    log_volume = frozen_log_volume(with_anchor, mask, delta) - frozen_log_volume(sets, set_mask, delta).unsqueeze(0)
    return torch.exp(log_volume)


def test_mover_distance_score_equals_the_frozen_volume_and_log_domain_plan(monkeypatch):
    cls = OBJECTIVES.get("mover")

    def build(layout):
        torch.manual_seed(0)
        config = cls.Config(volume_score="distance", signed=False)
        return cls(config, ObjectiveContext(layout, 128, 100, True, False))

    layout = make_layout(MULTIMODAL)
    obj = build(layout)
    make = batch_maker(layout, 64, 128, seed=5)
    terms, loss, grads = loss_and_grads(obj, make)

    class Frozen:
        def __init__(self, plan):
            self.plan, self.marginal_error = plan, torch.zeros(())

    monkeypatch.setattr(
        mover_module, "fixed_sinkhorn", lambda cost, epsilon, iterations: Frozen(frozen_log_sinkhorn(cost, epsilon, iterations))
    )
    frozen = build(layout)
    monkeypatch.setattr(frozen, "volumes", frozen_mover_volumes.__get__(frozen))
    ref_terms, ref_loss, ref_grads = loss_and_grads(frozen, make)
    assert float(ref_terms["ot_loss"].detach()) > 0
    assert_close("mover total loss", loss, ref_loss)
    for key in ("volume_loss", "ot_loss", "query_item_loss"):
        if key in ref_terms:
            assert_close(f"mover {key}", terms[key].detach(), ref_terms[key].detach())
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        if r is not None:
            assert_close(f"mover gradient {i}", g, r)
