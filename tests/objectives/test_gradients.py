"""Gradients of every objective against a reference written in this file (or open_clip's ClipLoss /
SigLipLoss, POT, geomloss), differentiated by autograd in float64.

Each test builds one batch from slot-space embeddings x [B, S, d] (packed by the batcher's own
code, so a gradient reaches x only through the views the objective selected) and queries q, with
w_p = 0.8 wherever the objective reads the primary weight, and compares the total loss, each
`*_loss` term and the gradients with respect to x, q and every learnable parameter of the
objective (logit scale, bias, residuals, gates, LayerNorm, ID embedding) with the reference's.
The references do not call the project's objectives, kernels or weight helpers: view weights come
from their definition, volumes from determinants, plans from POT held fixed where the objective
holds its plan fixed. A side detached, a plan that passes gradient, a weight from the wrong role or
a term over the wrong items changes the gradients by far more than the tolerance.

Tolerance: 1e-6 relative to the largest reference entry of each tensor. The batch's view weights
are float32 (as the batcher makes them), everything else float64; plans are converged to 1e-12.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from ftbench.config import apply_overrides
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, Objective, ObjectiveContext
from geomloss import SamplesLoss

from ._helpers import (
    Slots,
    assert_close,
    encode_selection,
    open_clip_loss_module,
    pot_plan,
    primary_weights,
    side_weights,
    symmetric_info_nce,
)

RTOL = 1e-6
W_P = 0.8  # not 0.5, so that a primary weight read as 1 - w_p shows

MULTIMODAL = Slots(
    ("image_1", "image", "primary"),
    ("title", "text", "primary"),
    ("description", "text", "auxiliary"),
    ("image_2", "image", "auxiliary"),
    ("image_3", "image", "auxiliary"),
    ("bullets", "text", "auxiliary"),
)
TEXT_ONLY = Slots(
    ("title", "text", "primary"),
    ("description", "text", "auxiliary"),
    ("bullets", "text", "auxiliary"),
    ("tags", "text", "auxiliary"),
)
IMAGE, TITLE = 0, 1  # the primary image and title slots of MULTIMODAL

# availability of the 8 items of a MULTIMODAL batch: full, partial, no primary image, no title,
# image views only, text views only
AVAILABLE = [
    [1, 1, 1, 1, 1, 1],
    [1, 1, 0, 1, 0, 0],
    [0, 1, 1, 1, 0, 1],
    [1, 0, 1, 1, 1, 0],
    [1, 0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0, 1],
    [1, 1, 1, 0, 0, 0],
    [1, 1, 0, 0, 1, 1],
]
AVAILABLE_TEXT_ONLY = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 1], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 0]]


def _data(slots: Slots, available, d=6, seed=0):
    """(availability bool [B, S], x [B, S, d] unit leaf, q [B, d] unit leaf), float64; views of one
    item share a direction, so that similarities, plans and volumes are not those of noise."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor(available, dtype=torch.bool)
    b = mask.shape[0]
    centre = torch.randn(b, 1, d, generator=g, dtype=torch.float64)
    x = F.normalize(centre + 0.8 * torch.randn(b, len(slots), d, generator=g, dtype=torch.float64), dim=-1)
    q = F.normalize(centre[:, 0] + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1)
    return mask, x.requires_grad_(), q.requires_grad_()


def _objective(name, slots: Slots, d=6, num_items=8, **options):
    cls = OBJECTIVES.get(name)
    config = apply_overrides(cls.Config(), options, name)
    torch.manual_seed(0)
    return cls(config, ObjectiveContext(slots.layout, d, num_items, True, False)).double()


def _compare(objective: Objective, views, x, q, reference):
    """Loss terms and gradients (x, q, every learnable parameter) of `objective` on `views` against
    `reference(params) -> {term: loss}`, where params are leaf copies of the objective's parameters."""
    params = {n: p for n, p in objective.named_parameters() if p.requires_grad}
    terms = objective(AlignmentBatch(views, q))
    losses = {k: v for k, v in terms.items() if k.endswith("_loss")}
    grads = torch.autograd.grad(Objective.total_loss(terms), [x, q, *params.values()], allow_unused=True)
    leaves = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    ref = reference(leaves)
    assert set(losses) == set(ref), (sorted(losses), sorted(ref))
    for key, value in ref.items():
        assert_close(key, losses[key], value, RTOL)
    ref_grads = torch.autograd.grad(sum(ref.values()), [x, q, *leaves.values()], allow_unused=True)
    for name, got, want in zip(["views", "query", *params], grads, ref_grads):
        assert_close(f"gradient w.r.t. {name}", got, torch.zeros_like(got) if want is None else want, RTOL)
        if name in ("views", "query"):
            assert float(want.abs().max()) > 0, name  # the reference does reach it
    return terms


def _fused(x, mask, weights_of):
    """normalise(sum_v w_v x^v) per item, weights per item from `weights_of(available row)`."""
    rows = []
    for i in range(x.shape[0]):
        w = torch.tensor(weights_of(mask[i].tolist()), dtype=x.dtype)
        rows.append(F.normalize((w[:, None] * x[i]).sum(0), dim=0))
    return torch.stack(rows)


def _primary_fused(x, mask, slots):
    return _fused(x, mask, lambda row: primary_weights(row, slots.primary, W_P))


# -- clip and siglip: open_clip's losses ------------------------------------------------------


def test_clip_gradients_equal_open_clip_clip_loss():
    """The pair term is ClipLoss on (primary image, title) of the items that have both; the query
    term ClipLoss on (query, normalise(image + title)) (or the one view an item has); the
    auxiliary views get no gradient."""
    oc = open_clip_loss_module()
    mask, x, q = _data(MULTIMODAL, AVAILABLE)
    obj = _objective("clip", MULTIMODAL, query_weight=0.7)
    views = encode_selection(x, obj.select_views(mask), MULTIMODAL.layout)

    def reference(p):
        scale = p["log_logit_scale"].exp()
        both = mask[:, IMAGE] & mask[:, TITLE]
        pair = oc.ClipLoss()(x[both, IMAGE], x[both, TITLE], scale)
        served = torch.stack(
            [F.normalize(x[i, IMAGE] * mask[i, IMAGE] + x[i, TITLE] * mask[i, TITLE], dim=0) for i in range(x.shape[0])]
        )
        return {"contrastive_loss": pair, "query_item_loss": 0.7 * oc.ClipLoss()(q, served, scale)}

    _compare(obj, views, x, q, reference)


def test_siglip_gradients_equal_open_clip_siglip_loss():
    oc = open_clip_loss_module()
    mask, x, q = _data(MULTIMODAL, AVAILABLE, seed=1)
    obj = _objective("siglip", MULTIMODAL, init_logit_scale=4.0, init_logit_bias=-2.0)
    views = encode_selection(x, obj.select_views(mask), MULTIMODAL.layout)

    def reference(p):
        scale = p["log_logit_scale"].exp()
        both = mask[:, IMAGE] & mask[:, TITLE]
        pair = oc.SigLipLoss()(x[both, IMAGE], x[both, TITLE], scale, p["logit_bias"])
        served = torch.stack(
            [F.normalize(x[i, IMAGE] * mask[i, IMAGE] + x[i, TITLE] * mask[i, TITLE], dim=0) for i in range(x.shape[0])]
        )
        return {"sigmoid_loss": pair, "query_item_loss": oc.ClipLoss()(q, served, scale)}

    _compare(obj, views, x, q, reference)


# -- pairwise: SupCon written as a loop over anchors --------------------------------------------


@pytest.mark.parametrize("positives", ["all", "cross_side"])
def test_pairwise_gradients_equal_a_loop_over_anchors(positives):
    mask, x, q = _data(MULTIMODAL, AVAILABLE, seed=2)
    obj = _objective("pairwise", MULTIMODAL, positives=positives, primary_weight=W_P, init_logit_scale=5.0)
    views = encode_selection(x, obj.select_views(mask), MULTIMODAL.layout)

    def reference(p):
        scale = p["log_logit_scale"].exp()
        where = [(i, k) for i in range(mask.shape[0]) for k in range(mask.shape[1]) if mask[i, k]]
        per_anchor = []
        for r, (i, k) in enumerate(where):
            candidates = [
                c
                for c, (j, slot) in enumerate(where)
                if c != r and (positives == "all" or MULTIMODAL.side[slot] != MULTIMODAL.side[k])
            ]
            positive = [n for n, c in enumerate(candidates) if where[c][0] == i]
            if not positive:
                continue
            logits = torch.stack([scale * (x[i, k] * x[where[c][0], where[c][1]]).sum() for c in candidates])
            log_prob = logits - torch.logsumexp(logits, 0)
            per_anchor.append(-log_prob[positive].mean())
        served = _primary_fused(x, mask, MULTIMODAL)
        return {"pairwise_loss": torch.stack(per_anchor).mean(), "query_item_loss": symmetric_info_nce(scale * q @ served.t())}

    _compare(obj, views, x, q, reference)


# -- factorized: side sums with the sampled views' weights from their definition ---------------


@pytest.mark.parametrize("k, normalize_sides", [(1, False), (1, True), (3, False)])
def test_factorized_gradients_equal_weighted_side_sums(k, normalize_sides):
    """k = 1 samples (a view's weight is its all-view weight over its inclusion probability k_s/n_s
    within its side); k = 3 keeps every auxiliary view (the closed form)."""
    mask, x, q = _data(MULTIMODAL, AVAILABLE, seed=3)
    obj = _objective("factorized", MULTIMODAL, aux_samples=k, normalize_sides=normalize_sides, primary_weight=W_P)
    selection = obj.select_views(mask, torch.Generator().manual_seed(7))
    kept = selection.mask
    assert k > 1 or bool((kept & ~mask).sum() == 0 and (kept.sum() < mask.sum()))  # k = 1 did drop views
    views = encode_selection(x, selection, MULTIMODAL.layout)
    side, primary = MULTIMODAL.side, MULTIMODAL.primary

    def weights(i, per_side: bool):
        """(side or item) weights of item i's kept views: all-view weight * n_s / k_s on auxiliaries."""
        avail = mask[i].tolist()
        base = side_weights(avail, MULTIMODAL, W_P) if per_side else primary_weights(avail, primary, W_P)
        out = []
        for v, w in enumerate(base):
            if not kept[i, v]:
                out.append(0.0)
            elif primary[v]:
                out.append(w)
            else:
                n_s = sum(1 for u in range(len(avail)) if avail[u] and not primary[u] and side[u] == side[v])
                k_s = sum(1 for u in range(len(avail)) if kept[i, u] and not primary[u] and side[u] == side[v])
                out.append(w * n_s / k_s)
        return torch.tensor(out, dtype=x.dtype)

    def reference(p):
        scale = p["log_logit_scale"].exp()
        sums = {0: [], 1: []}
        for i in range(x.shape[0]):
            w = weights(i, per_side=True)
            for s in (0, 1):
                on_side = torch.tensor([side[v] == s for v in range(len(side))], dtype=x.dtype)
                total = ((w * on_side)[:, None] * x[i]).sum(0)
                sums[s].append(F.normalize(total, dim=0) if normalize_sides else total)
        both = [
            i
            for i in range(x.shape[0])
            if any(kept[i, v] and side[v] == 0 for v in range(len(side)))
            and any(kept[i, v] and side[v] == 1 for v in range(len(side)))
        ]
        m, t = torch.stack([sums[0][i] for i in both]), torch.stack([sums[1][i] for i in both])
        served = torch.stack([F.normalize((weights(i, per_side=False)[:, None] * x[i]).sum(0), dim=0) for i in range(x.shape[0])])
        return {
            "transport_loss": symmetric_info_nce(scale * m @ t.t()),
            "query_item_loss": symmetric_info_nce(scale * q @ served.t()),
        }

    _compare(obj, views, x, q, reference)


# -- full_ot: POT plans held fixed; the entropic value through an unrolled Sinkhorn -------------


def _unrolled_entropic_value(cost, a, b, eps, iterations):
    """W_eps = <P, C> + eps sum P log P of a batch of problems [N, n, m] (padding: a or b = 0) by
    `iterations` log-domain Sinkhorn sweeps, differentiated through every sweep by autograd (the
    reference for the envelope gradient dW/dC = P*)."""
    log_a, log_b = torch.log(a), torch.log(b)  # -inf on padding: those rows/columns carry no mass
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for _ in range(iterations):
        f = -eps * torch.logsumexp((g[:, None, :] - cost) / eps + log_b[:, None, :], dim=2)
        g = -eps * torch.logsumexp((f[:, :, None] - cost) / eps + log_a[:, :, None], dim=1)
    exponent = (f[:, :, None] + g[:, None, :] - cost) / eps
    plan = torch.exp(exponent + log_a[:, :, None] + log_b[:, None, :])
    assert float((plan.sum(2) - a).detach().abs().sum(1).max()) < 1e-12, "unrolled Sinkhorn did not converge"
    log_plan = exponent + torch.where(a > 0, log_a, 0.0)[:, :, None] + torch.where(b > 0, log_b, 0.0)[:, None, :]
    return (plan * cost).sum((1, 2)) + eps * (plan * log_plan).sum((1, 2))


@pytest.mark.parametrize(
    "coupling, similarity", [("entropic", "transport"), ("entropic", "entropic"), ("independent", "transport")]
)
def test_full_ot_gradients_equal_pot_plans_held_fixed(coupling, similarity):
    """transport: s_ij = sum P*_uv <x_i^u, y_j^v> with POT's plan a constant (a plan that passed
    gradient would add a term); entropic: s_ij = 1 - W_eps with W_eps differentiated through 400
    unrolled Sinkhorn sweeps (no envelope theorem assumed); independent: P = mu (x) nu."""
    eps = 0.1
    mask, x, q = _data(MULTIMODAL, AVAILABLE, seed=4)
    obj = _objective(
        "full_ot",
        MULTIMODAL,
        primary_weight=W_P,
        init_logit_scale=5.0,
        eps=eps,
        coupling=coupling,
        similarity=similarity,
        tolerance=1e-13,
        iterations=20_000,
        query_weight=0.5,
    )
    views = encode_selection(x, obj.select_views(mask), MULTIMODAL.layout)
    side = MULTIMODAL.side

    def sets(i):
        w = side_weights(mask[i].tolist(), MULTIMODAL, W_P)
        out = []
        for s in (0, 1):
            idx = [v for v in range(len(side)) if mask[i, v] and side[v] == s]
            out.append((x[i, idx], torch.tensor([w[v] for v in idx], dtype=x.dtype)))
        return out

    def reference(p):
        scale = p["log_logit_scale"].exp()
        both = [i for i in range(x.shape[0]) if all(len(m) for m, _ in sets(i))]
        pairs = [(sets(i)[0], sets(j)[1]) for i in both for j in both]
        if similarity == "entropic":
            n = max(len(mu) for (_, mu), _ in pairs)
            m = max(len(nu) for _, (_, nu) in pairs)
            a = torch.zeros(len(pairs), n, dtype=x.dtype)
            b = torch.zeros(len(pairs), m, dtype=x.dtype)
            rows = []
            for k, ((xi, mu), (yj, nu)) in enumerate(pairs):
                rows.append(F.pad(1.0 - xi @ yj.t(), (0, m - len(nu), 0, n - len(mu))))
                a[k, : len(mu)], b[k, : len(nu)] = mu, nu
            cost = torch.stack(rows)
            sim = 1.0 - _unrolled_entropic_value(cost, a, b, eps, 400)
        else:
            values = []
            for (xi, mu), (yj, nu) in pairs:
                gram = xi @ yj.t()
                plan = pot_plan(1.0 - gram, mu, nu, eps) if coupling == "entropic" else mu[:, None] * nu[None, :]
                values.append((plan * gram).sum())
            sim = torch.stack(values)
        sim = sim.view(len(both), len(both))
        served = _primary_fused(x, mask, MULTIMODAL)
        return {
            "transport_loss": symmetric_info_nce(scale * sim),
            "query_item_loss": 0.5 * symmetric_info_nce(scale * q @ served.t()),
        }

    _compare(obj, views, x, q, reference)


# -- mover: volumes from determinants, POT's plan held fixed ------------------------------------


def _volume(vectors: torch.Tensor, delta: float) -> torch.Tensor:
    """sqrt(det(G + delta I)) of the rows of `vectors` (GRAM's volume, delta-regularised)."""
    gram = vectors @ vectors.t()
    return torch.sqrt(torch.linalg.det(gram + delta * torch.eye(len(vectors), dtype=gram.dtype)))


def _lift(vectors: torch.Tensor) -> torch.Tensor:
    """(v, 1) / sqrt 2: the signed lift, under which a vector and its negation are not equally close."""
    return torch.cat([vectors, torch.ones_like(vectors[..., :1])], dim=-1) / math.sqrt(2.0)


def _mover_reference(x, q, mask, slots, anchor_slot, groups_of, score, delta, ot_eps, ot_cost, item_fused, signed):
    """{term: loss} of the MOVER reading. groups_of(j): item j's set X_j (rows); item_fused(j): the
    fused other views (cosine plan cost); `signed`: volumes of lifted vectors. The items with an
    anchor and another view take part."""
    lift = _lift if signed else (lambda v: v)
    valid = [i for i in range(x.shape[0]) if mask[i, anchor_slot] and int(mask[i].sum()) > 1]

    def reference(p):
        scale = p["log_logit_scale"].exp()
        rows = []
        for i in valid:
            a = lift(x[i, anchor_slot])
            row = []
            for j in valid:
                group = lift(groups_of(j))
                volume = _volume(torch.cat([a[None], group]), delta)
                row.append(volume / _volume(group, delta) if score == "distance" else volume)
            rows.append(torch.stack(row))
        vol = torch.stack(rows)
        if ot_cost == "volume":
            cost = vol
        else:
            anchors = torch.stack([x[i, anchor_slot] for i in valid])
            cost = 1.0 - anchors @ torch.stack([item_fused(j) for j in valid]).t()
        plan = pot_plan(cost, None, None, ot_eps)
        served = _primary_fused(x, mask, slots)
        return {
            "volume_loss": symmetric_info_nce(-scale * vol),
            "ot_loss": 0.7 * (plan * vol).sum(),
            "query_item_loss": symmetric_info_nce(scale * q @ served.t()),
        }

    return reference


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(
    "score, groups, ot_cost",
    [
        ("distance", "views", "volume"),
        ("volume", "views", "volume"),
        ("distance", "sides", "cosine"),
        ("volume", "sides", "volume"),
    ],
)
def test_mover_gradients_equal_determinant_volumes(score, groups, ot_cost, signed):
    """distance: Vol(a, X) / Vol(X) = sqrt(det(G_aX + delta I) / det(G_X + delta I)); volume:
    GRAM's sqrt(det(G_aX + delta I)); X_j every other view of item j ('views') or its normalised
    side sums of the other views ('sides'); signed: every vector lifted to (v, 1) / sqrt 2 first;
    L_ot = 0.7 sum P_ij V_ij with POT's plan fixed."""
    delta, ot_eps = 1e-3, 0.1
    mask, x, q = _data(MULTIMODAL, AVAILABLE, seed=5)
    obj = _objective(
        "mover",
        MULTIMODAL,
        volume_score=score,
        groups=groups,
        ot_cost=ot_cost,
        volume_delta=delta,
        signed=signed,
        ot_epsilon=ot_eps,
        ot_iterations=20_000,
        ot_weight=0.7,
        primary_weight=W_P,
        init_logit_scale=5.0,
    )
    views = encode_selection(x, obj.select_views(mask), MULTIMODAL.layout)
    side = MULTIMODAL.side

    def others(j):
        return [v for v in range(len(side)) if mask[j, v] and v != TITLE]

    def groups_of(j):
        if groups == "views":
            return x[j, others(j)]
        w = side_weights(mask[j].tolist(), MULTIMODAL, W_P)
        sums = []
        for s in (0, 1):
            members = [v for v in others(j) if side[v] == s]
            if members:
                sums.append(F.normalize(sum(w[v] * x[j, v] for v in members), dim=0))
        return torch.stack(sums) if sums else x[j, []]

    def item_fused(j):
        w = primary_weights(mask[j].tolist(), MULTIMODAL.primary, W_P)
        return F.normalize(sum(w[v] * x[j, v] for v in others(j)), dim=0)

    reference = _mover_reference(x, q, mask, MULTIMODAL, TITLE, groups_of, score, delta, ot_eps, ot_cost, item_fused, signed)
    terms = _compare(obj, views, x, q, reference)
    assert float(terms["ot_marginal_error"]) < 1e-12


@pytest.mark.parametrize("signed", [False, True])
def test_mover_fixed_score_gradients_equal_determinant_volumes_of_the_drawn_groups(monkeypatch, signed):
    """'fixed': the anchor and k = min(group_size, fewest other views) = 2 views drawn per item. The
    draw (torch's global generator, seeded) is recorded and checked (k views, all among the item's
    other views, some item's not all of them); the reference takes the drawn groups' volumes."""
    delta, ot_eps = 1e-3, 0.1
    available = [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    mask, x, q = _data(TEXT_ONLY, available, seed=6)
    obj = _objective(
        "mover",
        TEXT_ONLY,
        volume_score="fixed",
        group_size=2,
        volume_delta=delta,
        signed=signed,
        ot_epsilon=ot_eps,
        ot_iterations=20_000,
        ot_weight=0.7,
        primary_weight=W_P,
        init_logit_scale=5.0,
    )
    views = encode_selection(x, obj.select_views(mask), TEXT_ONLY.layout)
    drawn = []
    original = obj.sample_groups
    monkeypatch.setattr(obj, "sample_groups", lambda set_mask: drawn.append(original(set_mask)) or drawn[-1])
    anchor_slot = 0  # one modality: the anchor is the primary view (the title)
    valid = [i for i in range(x.shape[0]) if mask[i, anchor_slot]]

    def slot_of(i, position):  # the batch packs an item's selected views in slot order
        return [v for v in range(len(TEXT_ONLY)) if mask[i, v]][position]

    def drawn_slots(i):
        chosen = drawn[0][valid.index(i)]
        return [slot_of(i, w) for w in range(chosen.shape[0]) if chosen[w]]

    reference = _mover_reference(
        x, q, mask, TEXT_ONLY, anchor_slot, lambda j: x[j, drawn_slots(j)], "volume", delta, ot_eps, "volume", None, signed
    )
    torch.manual_seed(11)
    _compare(obj, views, x, q, reference)
    assert len(drawn) == 1  # one draw per step
    for i in valid:
        others = [v for v in range(1, len(TEXT_ONLY)) if mask[i, v]]
        assert len(drawn_slots(i)) == 2 and set(drawn_slots(i)) <= set(others), (i, drawn_slots(i))
    assert any(len(drawn_slots(i)) < int(mask[i, 1:].sum()) for i in valid)  # the draw did leave views out


# -- oat: every term written out, plans from POT held fixed, W1 from geomloss -------------------


def _layer_norm(z, weight, bias, eps=1e-5):
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps) * weight + bias


def _info_nce(a, b, scale):
    """Symmetric InfoNCE on s <a_i, b_j> with rows L2-normalised first (oat's NCE)."""
    return symmetric_info_nce(scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t())


@pytest.mark.parametrize(
    "slots, available, anchor",
    [(MULTIMODAL, AVAILABLE, "text"), (MULTIMODAL, AVAILABLE, "id"), (TEXT_ONLY, AVAILABLE_TEXT_ONLY, "text")],
)
def test_oat_gradients_equal_its_terms_written_out(slots, available, anchor):
    """Z_a the title (missing: the fused item) or the normalised ID embedding; Z_img, Z_txt the
    normalised side sums (missing: Z_a); CMCL terms over the items with both members (the
    anchor-text term against the text views other than the title; anchor-image not posed when
    one modality puts the title on side 0); plans T_m = POT on s * mean_i (Z_m[i,p] - Z_a[i,q])^2
    held fixed; A_m = Z_m (T_m + Delta_m); z = normalise(LN((1 - g_v - g_t) Z_a + g_v A_img + g_t
    A_txt)); W1 = mean_m geomloss S_1,blur(A_m, Z_a) over the items with modality m."""
    eps_plan, cost_scale, blur = 0.05, 1.0, 0.05
    mask, x, q = _data(slots, available, seed=7)
    b, d = x.shape[0], x.shape[-1]
    obj = _objective(
        "oat",
        slots,
        anchor=anchor,
        primary_weight=W_P,
        init_logit_scale=5.0,
        modality_weight=0.6,
        wasserstein_weight=0.9,
        wasserstein_blur=blur,
        sinkhorn_epsilon=eps_plan,
        cost_scale=cost_scale,
        sinkhorn_iterations=3000,
    )
    views = encode_selection(x, obj.select_views(mask), slots.layout)
    side = slots.side
    title = 0 if not slots.multimodal else TITLE

    def side_sum(i, s, skip=None):
        w = side_weights(mask[i].tolist(), slots, W_P)
        members = [v for v in range(len(side)) if mask[i, v] and side[v] == s and v != skip]
        return F.normalize(sum(w[v] * x[i, v] for v in members), dim=0) if members else None

    def reference(p):
        scale = p["log_logit_scale"].exp()
        if anchor == "id":
            anchors = F.normalize(p["id_embedding.weight"][:b], dim=-1)
            anchor_present = [True] * b
        else:
            fused = _primary_fused(x, mask, slots)
            anchors = torch.stack([x[i, title] if mask[i, title] else fused[i] for i in range(b)])
            anchor_present = [bool(mask[i, title]) for i in range(b)]
        image = [side_sum(i, 0) for i in range(b)]
        text = [side_sum(i, 1) for i in range(b)]
        # the text views other than the anchor's own (an ID anchor is no view: all of side 1)
        text_others = [side_sum(i, 1, skip=title if anchor == "text" and mask[i, title] else None) for i in range(b)]
        image_z = torch.stack([image[i] if image[i] is not None else anchors[i] for i in range(b)])
        text_z = torch.stack([text[i] if text[i] is not None else anchors[i] for i in range(b)])

        terms = []
        posed = [("image_text", image, text)]
        if anchor == "id" or slots.multimodal:
            posed.append(("anchor_image", [anchors[i] if anchor_present[i] else None for i in range(b)], image))
        posed.append(
            (
                "anchor_text",
                [anchors[i] if anchor_present[i] else None for i in range(b)],
                text if anchor == "id" else text_others,
            )
        )
        for _, left, right in posed:
            both = [i for i in range(b) if left[i] is not None and right[i] is not None]
            if len(both) >= 2:
                terms.append(_info_nce(torch.stack([left[i] for i in both]), torch.stack([right[i] for i in both]), scale))
        out = {"modality_loss": 0.6 * torch.stack(terms).mean()}

        aligned, w1 = [], []
        for z_m, present, delta in ((image_z, image, p["delta_image"]), (text_z, text, p["delta_text"])):
            have = [i for i in range(b) if present[i] is not None]
            if have:
                zm, za = z_m[have].detach(), anchors[have].detach()
                cost = cost_scale * ((zm[:, :, None] - za[:, None, :]) ** 2).mean(0)  # [p, q]
                plan = pot_plan(cost, None, None, eps_plan)
            else:
                plan = torch.full((d, d), 1.0 / d**2, dtype=x.dtype)
            aligned.append(z_m @ (plan + delta))
            if have:
                w1.append(SamplesLoss("sinkhorn", p=1, blur=blur, backend="tensorized")(aligned[-1][have], anchors[have]))
        out["wasserstein_loss"] = 0.9 * torch.stack(w1).mean()
        g_v, g_t = p["gates"][0], p["gates"][1]
        z = (1.0 - g_v - g_t) * anchors + g_v * aligned[0] + g_t * aligned[1]
        z = F.normalize(_layer_norm(z, p["norm.weight"], p["norm.bias"]), dim=-1)
        out["query_item_loss"] = _info_nce(q, z, scale)
        return out

    _compare(obj, views, x, q, reference)
