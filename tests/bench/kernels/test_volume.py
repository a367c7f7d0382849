"""ftbench.kernels.volume: GRAM volumes. Oracles: closed forms, an independent transcription of GRAM's
sqrt(|det G|) (ispamm/GRAM utils/volume.py semantics), and per-pair loops. float64 unless stated."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ftbench.kernels.volume import gram_log_volume, gram_volume, pairwise_log_volume, pairwise_span_distance, pairwise_volume


def unit(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def gram_reference(anchor, *inputs):
    """GRAM's formula written out: G over (anchor_i, input_1[j], ..., input_k[j]); sqrt(|det G|) [B1, B2]."""
    b1, b2 = anchor.shape[0], inputs[0].shape[0]
    out = torch.empty(b1, b2, dtype=anchor.dtype)
    for i in range(b1):
        for j in range(b2):
            rows = torch.stack([anchor[i]] + [x[j] for x in inputs])
            out[i, j] = torch.sqrt(torch.abs(torch.det(rows @ rows.t())))
    return out


def test_two_vectors_is_sine_of_angle():
    a, b = unit(50, 8, seed=1), unit(50, 8, seed=2)
    cos = (a * b).sum(-1)
    exact = torch.sqrt(1 - cos**2)
    pair = torch.stack([a, b], dim=1)
    assert torch.allclose(gram_volume(pair, delta=0.0), exact, atol=1e-12)
    delta = 1e-3  # regularised closed form: det([[1+d, c], [c, 1+d]]) = (1+d)^2 - c^2
    assert torch.allclose(gram_volume(pair, delta=delta), torch.sqrt((1 + delta) ** 2 - cos**2), atol=1e-12)
    assert torch.allclose(
        torch.diagonal(pairwise_volume(a, b.unsqueeze(1), delta=delta)), torch.sqrt((1 + delta) ** 2 - cos**2), atol=1e-12
    )


@pytest.mark.parametrize("delta", [0.0, 1e-4])
def test_invariant_to_view_order(delta):
    x = unit(6, 5, 7, seed=3)
    base = gram_volume(x, delta=delta)
    for perm in itertools.islice(itertools.permutations(range(5)), 0, 120, 17):
        assert torch.allclose(gram_volume(x[:, list(perm)], delta=delta), base, rtol=1e-10, atol=1e-14)
    anchor, sets = unit(4, 7, seed=4), unit(5, 3, 7, seed=5)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    ref = pairwise_volume(anchor, sets, mask, delta=delta)
    for perm in itertools.permutations(range(3)):
        p = list(perm)
        assert torch.allclose(pairwise_volume(anchor, sets[:, p], mask[:, p], delta=delta), ref, rtol=1e-10, atol=1e-14)


def test_equals_gram_formula_away_from_degeneracy():
    anchor, video, audio, subs = unit(5, 6, seed=6), unit(4, 6, seed=7), unit(4, 6, seed=8), unit(4, 6, seed=9)
    ref = gram_reference(anchor, video, audio, subs)
    assert float(ref.min()) > 0.05  # random unit vectors in R^6: far from degenerate
    sets = torch.stack([video, audio, subs], dim=1)
    assert torch.allclose(pairwise_volume(anchor, sets, delta=0.0), ref, rtol=1e-10)
    # the regularised volume converges to GRAM's as delta -> 0 (|Vol_d^2 - Vol^2| <= (1+d)^4 - 1)
    assert torch.allclose(pairwise_volume(anchor, sets, delta=1e-8), ref, rtol=1e-6)
    assert torch.allclose(pairwise_volume(anchor, sets, delta=1e-4), ref, rtol=1e-2)
    float32 = pairwise_volume(anchor.float(), sets.float(), delta=1e-8)
    assert torch.allclose(float32.double(), ref, rtol=1e-4)


def test_finite_gradients_at_collinear_inputs():
    a = unit(3, 5, seed=10)
    # k = 2 collinear, k = 3 with a repeated vector, and the anchor inside the set: det G = 0
    for sets in (a.unsqueeze(1), torch.stack([a, a], 1), torch.stack([a, -a, a], 1)):
        anchor = a.clone().requires_grad_(True)
        members = sets.clone().requires_grad_(True)
        vol = pairwise_volume(anchor, members, delta=1e-4)
        vol.sum().backward()
        assert torch.isfinite(vol).all() and torch.isfinite(anchor.grad).all() and torch.isfinite(members.grad).all()
        stacked = torch.cat([a.unsqueeze(1), sets], 1).clone().requires_grad_(True)
        gv = gram_volume(stacked, delta=1e-4)
        gv.sum().backward()
        assert torch.isfinite(stacked.grad).all()
        assert torch.allclose(torch.diagonal(vol), gv, rtol=1e-8)
    # k = 2 collinear unit vectors: Vol_delta = sqrt((1+d)^2 - 1) = sqrt(2d + d^2)
    v = gram_volume(torch.stack([a, a], 1), delta=1e-4)
    assert torch.allclose(v, torch.full_like(v, math.sqrt(2e-4 + 1e-8)), rtol=1e-8)
    # float32 at exact collinearity does not fail either
    v32 = pairwise_volume(a.float(), torch.stack([a, a, a], 1).float(), delta=1e-4)
    assert torch.isfinite(v32).all()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_batched_equals_looped(dtype, tol):
    anchor, sets = unit(7, 9, seed=11, dtype=dtype), unit(6, 4, 9, seed=12, dtype=dtype)
    sets[2, 1] = 5.0  # padding garbage must be ignored
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    batched = pairwise_volume(anchor, sets, mask, delta=1e-3)
    log_batched = pairwise_log_volume(anchor, sets, mask, delta=1e-3)
    for i in range(7):
        for j in range(6):
            members = torch.cat([anchor[i : i + 1], sets[j][mask[j]]], 0)
            looped = gram_volume(members, delta=1e-3)
            assert abs(float(batched[i, j]) - float(looped)) <= tol * max(1.0, float(looped))
            assert abs(float(log_batched[i, j]) - float(gram_log_volume(members, delta=1e-3))) <= tol
    # an empty set leaves the anchor alone: Vol = sqrt(<a, a> + delta)
    assert torch.allclose(batched[:, 3], torch.full((7,), math.sqrt(1 + 1e-3), dtype=dtype), atol=tol)
    # a masked gram_volume equals the volume of the kept vectors
    kept = gram_volume(sets, mask, delta=1e-3)
    for j in range(6):
        assert abs(float(kept[j]) - float(gram_volume(sets[j][mask[j]], delta=1e-3))) <= tol


def test_errors_name_the_problem():
    x = unit(2, 3, 4)
    with pytest.raises(ValueError, match="delta"):
        gram_volume(x, delta=-1.0)
    with pytest.raises(ValueError, match="delta > 0"):
        gram_log_volume(x, delta=0.0)
    with pytest.raises(ValueError, match=r"\[B1, d\]"):
        pairwise_volume(x, x, delta=1e-4)
    with pytest.raises(ValueError, match="volume_delta"):
        pairwise_volume(unit(2, 4), torch.full((2, 2, 4), float("nan"), dtype=torch.float64), delta=1e-4)


def test_pairwise_span_distance_equals_the_volume_ratio_and_a_direct_solve():
    """dist_delta(a, span X) = sqrt(|a|^2 + delta - c^T (G + delta I)^-1 c), c = X a: equal to a
    numpy solve (float64, 1e-10) and, in float32, to exp(log Vol(a, X) - log Vol(X)), the form
    mover used before (1e-5 relative)."""
    from ftbench.kernels.volume import pairwise_span_distance

    g = torch.Generator().manual_seed(11)
    sets = torch.nn.functional.normalize(torch.randn(5, 4, 16, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.ones(5, 4, dtype=torch.bool)
    mask[1, 2:] = False
    anchor = torch.nn.functional.normalize(torch.randn(3, 16, generator=g, dtype=torch.float64), dim=-1)
    delta = 1e-3
    ours = pairwise_span_distance(anchor, sets, mask, delta)
    for i in range(3):
        for j in range(5):
            x = sets[j][mask[j]].numpy()
            a = anchor[i].numpy()
            c = x @ a
            expected = np.sqrt(a @ a + delta - c @ np.linalg.solve(x @ x.T + delta * np.eye(len(c)), c))
            assert abs(float(ours[i, j]) - expected) <= 1e-10
    s32, a32 = sets.float(), anchor.float()
    ratio = torch.exp(pairwise_log_volume(a32, s32, mask, 1e-4) - gram_log_volume(s32, mask, 1e-4).unsqueeze(0))
    assert torch.allclose(pairwise_span_distance(a32, s32, mask, 1e-4), ratio, rtol=1e-5, atol=0)


def test_member_masked_in_every_set_is_left_out():
    """A member masked out in every set (the anchor's own slot in `mover`) is dropped before the
    products: the same volumes as the sets without it, and |a|^2 + delta when nothing is left."""
    g = torch.Generator().manual_seed(12)
    sets = torch.nn.functional.normalize(torch.randn(6, 4, 16, generator=g, dtype=torch.float64), dim=-1)
    anchor = torch.nn.functional.normalize(torch.randn(5, 16, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.ones(6, 4, dtype=torch.bool)
    mask[:, 1] = False
    mask[2, 3] = False
    keep = [0, 2, 3]
    for fn in (pairwise_span_distance, pairwise_log_volume):
        assert torch.allclose(
            fn(anchor, sets, mask, 1e-3), fn(anchor, sets[:, keep], mask[:, keep], 1e-3), rtol=1e-12, atol=1e-14
        )
    none = torch.zeros(6, 4, dtype=torch.bool)
    expected = torch.sqrt((anchor * anchor).sum(-1) + 1e-3).unsqueeze(1).expand(5, 6)
    assert torch.allclose(pairwise_span_distance(anchor, sets, none, 1e-3), expected, rtol=1e-12)
