"""ftbench.kernels.feature_transport: log-domain Sinkhorn and RecGOAT's feature-dimension cost/plan.

Oracles: POT's `ot.sinkhorn(..., method="sinkhorn_log")` run to convergence; a transcription of the
released plain-domain iteration (6lyc/RecGOAT-WSDM2027 model_v1.py) where it does not underflow;
the released [B, d, d] broadcast form of the cost.
"""

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F
from ftbench.kernels.feature_transport import _logsumexp, feature_cost, feature_plan, log_sinkhorn


def pair(b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    zm = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=-1)
    za = F.normalize(zm + 0.7 * torch.randn(b, d, generator=g, dtype=dtype), dim=-1)
    return zm, za


def released_plain_sinkhorn(cost, eps, iters):
    """The released iteration: K = exp(-C/eps); v = 1/m; u = mu/(K v + 1e-8); v = nu/(K^T u + 1e-8)."""
    n, m = cost.shape
    kernel = torch.exp(-cost / eps)
    mu, nu = torch.full((n,), 1.0 / n, dtype=cost.dtype), torch.full((m,), 1.0 / m, dtype=cost.dtype)
    v = torch.ones(m, dtype=cost.dtype) / m
    for _ in range(iters):
        u = mu / (kernel @ v + 1e-8)
        v = nu / (kernel.t() @ u + 1e-8)
    return torch.diag(u) @ kernel @ torch.diag(v)


def test_feature_plan_equals_pot_log_sinkhorn_at_released_parameters():
    d = 256
    zm, za = pair(256, d, seed=0)
    cost = feature_cost(zm, za, 100.0).numpy()
    uniform = np.full(d, 1.0 / d)
    pot = ot.sinkhorn(uniform, uniform, cost, 0.01, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    # at convergence the plans coincide (differences relative to the plan's scale 1/d)
    converged = feature_plan(zm, za, scale=100.0, epsilon=0.01, iterations=400)
    assert np.abs(converged.plan.numpy() - pot).max() * d < 1e-9
    assert torch.allclose(converged.plan.sum(0), torch.full((d,), 1.0 / d, dtype=torch.float64), atol=1e-15)
    # the released budget (100 iterations) is close to converged on this batch
    released = feature_plan(zm, za, scale=100.0, epsilon=0.01, iterations=100)
    assert float(released.marginal_error) < 1e-6
    assert np.abs(released.plan.numpy() - pot).max() * d < 1e-4
    # the float32 path the objective uses agrees to float32 precision
    ours32 = feature_plan(zm.float(), za.float(), iterations=400)
    assert np.abs(ours32.plan.double().numpy() - pot).max() * d < 1e-5


def test_log_sinkhorn_equals_pot_with_general_marginals():
    g = torch.Generator().manual_seed(1)
    cost = torch.rand(12, 9, generator=g, dtype=torch.float64)
    a = torch.rand(12, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(9, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    ours = log_sinkhorn(cost, a, b, epsilon=0.05, iterations=800)
    pot = ot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), 0.05, method="sinkhorn_log", numItermax=20000, stopThr=1e-14)
    assert np.abs(ours.plan.numpy() - pot).max() < 1e-12
    batched = log_sinkhorn(torch.stack([cost, 2 * cost]), epsilon=0.05, iterations=800).plan
    single = log_sinkhorn(2 * cost, epsilon=0.05, iterations=800).plan
    assert torch.allclose(batched[1], single, atol=1e-14)


def test_fixed_iterations_reproduce_the_released_plain_iteration():
    zm, za = pair(40, 8, seed=2)
    cost = feature_cost(zm, za, scale=1.0)  # mild cost/eps: the plain domain does not underflow
    for iters in (1, 3, 10):
        ours = log_sinkhorn(cost, epsilon=0.5, iterations=iters).plan
        released = released_plain_sinkhorn(cost, 0.5, iters)
        assert torch.allclose(ours, released, rtol=1e-6, atol=1e-12)  # 1e-8 guards of the released code


def test_log_domain_survives_where_the_plain_domain_underflows():
    zm, za = pair(64, 16, seed=3)
    cost = feature_cost(zm.float(), za.float(), scale=100.0)
    assert float(torch.exp(-cost / 0.01).max()) == 0.0  # the released kernel is all zeros in float32
    assert float(released_plain_sinkhorn(cost, 0.01, 100).sum()) == 0.0  # so is its plan
    result = feature_plan(zm.float(), za.float(), iterations=100)
    assert torch.isfinite(result.plan).all()
    assert torch.allclose(result.plan.sum(0), torch.full((16,), 1 / 16), atol=1e-6)  # exact after the v-step
    assert float(result.marginal_error) < 0.05  # a transport plan, converging (slowly: cost/eps up to ~2000)


def test_feature_cost_equals_released_broadcast_form():
    zm, za = pair(30, 6, seed=4)
    released = torch.pow(zm.unsqueeze(2) - za.unsqueeze(1), 2).mean(dim=0) * 100.0
    assert torch.allclose(feature_cost(zm, za, 100.0), released, rtol=1e-10, atol=1e-10)
    weight = torch.zeros(30, dtype=torch.float64)
    weight[[1, 4, 7, 20]] = 1.0
    subset = torch.pow(zm[weight > 0].unsqueeze(2) - za[weight > 0].unsqueeze(1), 2).mean(dim=0) * 100.0
    assert torch.allclose(feature_cost(zm, za, 100.0, weight), subset, rtol=1e-10, atol=1e-10)
    zero = feature_cost(zm, za, 100.0, torch.zeros(30, dtype=torch.float64))
    assert torch.equal(zero, torch.zeros(6, 6, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamped_logsumexp_equals_torch(dtype):
    g = torch.Generator().manual_seed(5)
    for low, high in ((0.0, 5.0), (0.0, 100.0), (80.0, 400.0), (0.0, 2000.0)):
        x = -(torch.rand(64, 48, generator=g, dtype=dtype) * (high - low) + low) + 30.0
        x[:, 7] = 30.0 - low  # each row has a term near its maximum, as in Sinkhorn
        for dim in (0, 1):
            assert torch.allclose(_logsumexp(x, dim), torch.logsumexp(x, dim), rtol=1e-7 if dtype == torch.float64 else 1e-6)


def test_zero_mass_rows_get_zero_plan_rows():
    g = torch.Generator().manual_seed(6)
    cost = torch.rand(6, 5, generator=g, dtype=torch.float64)
    a = torch.tensor([0.3, 0.0, 0.2, 0.1, 0.0, 0.4], dtype=torch.float64)
    ours = log_sinkhorn(cost, a, epsilon=0.1, iterations=2000).plan
    assert torch.equal(ours[[1, 4]], torch.zeros(2, 5, dtype=torch.float64))
    keep = a > 0
    pot = ot.sinkhorn(
        a[keep].numpy(), np.full(5, 0.2), cost[keep].numpy(), 0.1, method="sinkhorn_log", numItermax=20000, stopThr=1e-14
    )
    assert np.abs(ours[keep].numpy() - pot).max() < 1e-12


def test_invalid_arguments():
    cost = torch.rand(3, 3)
    with pytest.raises(ValueError, match="epsilon"):
        log_sinkhorn(cost, epsilon=0.0)
    with pytest.raises(ValueError, match="iterations"):
        log_sinkhorn(cost, iterations=0)
    with pytest.raises(ValueError, match=r"\[B, d\]"):
        feature_cost(torch.rand(3, 4), torch.rand(3, 5))


# --- fixed_sinkhorn: the log-domain iterate computed as float64 scalings with absorption ---------

from ftbench.kernels.feature_transport import fixed_sinkhorn  # noqa: E402


@pytest.mark.parametrize("spread, float32_tolerance", [(0.05, 1e-5), (1.0, 1e-5), (20.0, 3e-4)])
def test_fixed_sinkhorn_equals_log_sinkhorn_iterate(spread, float32_tolerance):
    """The same iterate as the log domain after a fixed number of sweeps, both problems of a batch
    solved at once, from small cost ranges to ranges of 2000 eps that force repeated absorptions.
    Against the float64 log domain: 1e-9 of the largest plan entry. Against the float32 log domain
    (what oat and mover used): 1e-5 where the exponents stay below ~100 (oat's released setting at
    initialisation: ~50-150), and float32's own round-off, ~6e-8 x 2000, at a range of 2000 eps."""
    g = torch.Generator().manual_seed(7)
    cost64 = spread * torch.rand(2, 96, 80, generator=g, dtype=torch.float64)
    for iterations in (1, 7, 100):
        exact = log_sinkhorn(cost64, epsilon=0.01, iterations=iterations).plan
        ours64 = fixed_sinkhorn(cost64, epsilon=0.01, iterations=iterations).plan
        scale = exact.abs().amax(dim=(-1, -2), keepdim=True)
        assert float(((ours64 - exact).abs() / scale).max()) <= 1e-9
        ref = log_sinkhorn(cost64.float(), epsilon=0.01, iterations=iterations)
        ours = fixed_sinkhorn(cost64.float(), epsilon=0.01, iterations=iterations)
        assert ours.plan.dtype == torch.float32 and ours.plan.shape == cost64.shape
        assert float(((ours.plan - ref.plan).abs() / scale.float()).max()) <= float32_tolerance
        assert torch.allclose(ours.marginal_error, ref.marginal_error, rtol=1e-2, atol=1e-6)


def test_fixed_sinkhorn_equals_pot_at_convergence_with_general_marginals():
    """float64, converged: equal to POT's log-domain Sinkhorn to 1e-10 (plan entries ~1e-3)."""
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(30, 40, generator=g, dtype=torch.float64) * 3
    a = torch.rand(30, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(40, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    ours = fixed_sinkhorn(cost, a, b, epsilon=0.05, iterations=3000).plan
    ref = ot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), 0.05, method="sinkhorn_log", numItermax=3000, stopThr=1e-15)
    assert np.abs(ours.numpy() - ref).max() <= 1e-10


def test_fixed_sinkhorn_zero_mass_and_log_fallback():
    cost = torch.rand(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = torch.tensor([0.3, 0.0, 0.2, 0.2, 0.0, 0.3], dtype=torch.float64)
    ours = fixed_sinkhorn(cost, a, epsilon=0.1, iterations=500).plan
    ref = log_sinkhorn(cost, a, epsilon=0.1, iterations=500).plan
    assert float(ours[1].abs().max()) == 0.0 and float(ours[4].abs().max()) == 0.0
    assert torch.allclose(ours, ref, atol=1e-12)
    assert fixed_sinkhorn(cost, epsilon=0.1, iterations=5, domain="log").domain == "log"
    with pytest.raises(ValueError, match="domain"):
        fixed_sinkhorn(cost, domain="plain")


def test_fixed_sinkhorn_non_finite_scalings_fall_back_to_the_log_domain(monkeypatch):
    """Every marginal positive: the check reads the extreme scalings (`torch.aminmax`). A zero, an
    infinite or a nan extreme means a non-finite log scaling, and the result is `log_sinkhorn`'s."""
    import ftbench.kernels.feature_transport as ft

    cost = torch.rand(2, 24, 20, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    reference = ft.log_sinkhorn(cost, None, None, 0.05, 30)
    assert ft.fixed_sinkhorn(cost, epsilon=0.05, iterations=30).domain == "scaling"
    monkeypatch.setattr(ft, "_NUMPY_ON_CPU", False)  # the torch loop (CUDA's)
    real = torch.aminmax
    for extremes in ((0.0, 1.0), (1.0, math.inf), (math.nan, 1.0), (1.0, math.nan)):
        monkeypatch.setattr(ft.torch, "aminmax", lambda x, e=extremes: tuple(torch.tensor(v) for v in e))
        ours = ft.fixed_sinkhorn(cost, epsilon=0.05, iterations=30)
        monkeypatch.setattr(ft.torch, "aminmax", real)
        assert ours.domain == "log" and torch.equal(ours.plan, reference.plan), extremes


def test_numpy_sweeps_equal_the_torch_loop_and_fall_back(monkeypatch):
    """On CPU the sweeps run in numpy: the same iterate as the torch loop (float64 round-off),
    with repeated absorptions (a cost range of 2000 eps); a non-finite scaling gives `log_sinkhorn`."""
    import ftbench.kernels.feature_transport as ft

    cost = 20.0 * torch.rand(2, 64, 48, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    ours = ft.fixed_sinkhorn(cost, epsilon=0.01, iterations=100)
    monkeypatch.setattr(ft, "_NUMPY_ON_CPU", False)
    ref = ft.fixed_sinkhorn(cost, epsilon=0.01, iterations=100)
    monkeypatch.setattr(ft, "_NUMPY_ON_CPU", True)
    scale = ref.plan.abs().amax()
    assert float((ours.plan - ref.plan).abs().max() / scale) <= 1e-12
    for mine, theirs in zip(ours.potentials, ref.potentials):
        assert torch.allclose(mine, theirs, rtol=1e-12, atol=1e-12)

    class ZeroProducts:  # numpy whose products vanish: the first scaling is infinite
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def matmul(x, y):
            return np.zeros(np.matmul(x, y).shape)

    monkeypatch.setattr(ft, "np", ZeroProducts())
    fallback = ft.fixed_sinkhorn(cost, epsilon=0.01, iterations=100)
    assert fallback.domain == "log" and torch.equal(fallback.plan, ft.log_sinkhorn(cost, None, None, 0.01, 100).plan)


def test_fixed_sinkhorn_first_sweep_where_a_column_underflows(monkeypatch):
    """The first sweep's one-exponential form needs every column of exp(log_k - row max) to keep
    some mass; a column 1000 eps above every row's cheapest entry underflows float64 there, and
    the log-domain first sweep takes over: the same iterate as the float64 log domain."""
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(2, 12, 10, generator=g, dtype=torch.float64)
    cost[:, :, 4] += 10.0  # eps = 0.01: 1000 eps
    calls = []
    logsumexp = torch.logsumexp
    monkeypatch.setattr(torch, "logsumexp", lambda *a, **k: calls.append(1) or logsumexp(*a, **k))
    fixed_sinkhorn(cost.clone().uniform_(), epsilon=0.01, iterations=3)
    assert not calls, "the one-exponential first sweep was not used"
    for iterations in (1, 5, 40):
        exact = log_sinkhorn(cost, epsilon=0.01, iterations=iterations).plan
        ours = fixed_sinkhorn(cost, epsilon=0.01, iterations=iterations).plan
        scale = exact.abs().amax(dim=(-1, -2), keepdim=True)
        assert float(((ours - exact).abs() / scale).max()) <= 1e-9
        assert torch.allclose(ours.sum(-2), torch.full((2, 10), 0.1, dtype=torch.float64), atol=1e-12)
    assert calls, "the log-domain first sweep was not used"
