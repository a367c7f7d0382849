"""`ftbench.kernels.sinkhorn`: POT as the oracle (same iterates, same values), the eps -> 0 limit against
the exact `ot.emd2`, zero-mass padding, envelope gradients (gradcheck), domains and chunking."""

import math

import numpy as np
import ot
import pytest
import torch
from ftbench.kernels.sinkhorn import plain_domain_limit, sinkhorn


def _problems(N=40, n=5, m=7, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(N, n, m, generator=g, dtype=dtype) * scale
    a = torch.rand(N, n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(N, m, generator=g, dtype=dtype) + 0.1
    return C, a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)


@pytest.mark.parametrize("domain", ["plain", "log"])
@pytest.mark.parametrize("method", ["sinkhorn", "log_sinkhorn"])
def test_fixed_iterations_equal_pot_solve_batch(domain, method):
    C, a, b = _problems()
    ours = sinkhorn(C, a, b, 0.1, iterations=37, tol=0.0, domain=domain)
    pot = ot.solve_batch(C, 0.1, a, b, max_iter=37, tol=0.0, method=method, grad="detach")
    assert ours.iterations == 37 and ours.domain == domain
    # same iterates from g = 1: equal to float64 round-off
    assert torch.allclose(ours.plan, pot.plan, rtol=0, atol=1e-12)
    assert torch.allclose(ours.value, pot.value, rtol=0, atol=1e-12)
    assert torch.allclose(ours.transport_cost, pot.value_linear, rtol=0, atol=1e-12)


def test_converged_equals_ot_sinkhorn_and_sinkhorn2():
    C, a, b = _problems(N=6, seed=1)
    ours = sinkhorn(C, a, b, 0.2, iterations=20000, tol=1e-12)
    assert ours.marginal_error < 1e-11
    for k in range(len(C)):
        Ck, ak, bk = C[k].numpy(), a[k].numpy(), b[k].numpy()
        plan = ot.sinkhorn(ak, bk, Ck, 0.2, stopThr=1e-13, numItermax=20000)
        assert np.allclose(ours.plan[k].numpy(), plan, rtol=0, atol=1e-9)
        assert abs(float(ours.transport_cost[k]) - float(ot.sinkhorn2(ak, bk, Ck, 0.2, stopThr=1e-13, numItermax=20000))) < 1e-9
        entropic = float((plan * Ck).sum() + 0.2 * (plan * np.log(plan)).sum())
        assert abs(float(ours.value[k]) - entropic) < 1e-9


def test_float32_agrees_with_pot_to_1e5():
    C, a, b = _problems(N=300, n=8, m=8, seed=2, dtype=torch.float32)
    ours = sinkhorn(C, a, b, 0.05, iterations=50, tol=0.0)
    pot = ot.solve_batch(C, 0.05, a, b, max_iter=50, tol=0.0, method="sinkhorn", grad="detach")
    assert ours.domain == "plain"
    assert float((ours.value - pot.value).abs().max()) < 1e-5
    assert float((ours.plan - pot.plan).abs().max()) < 1e-5


@pytest.mark.parametrize("eps", [3e-2, 1e-2, 3e-3])
def test_small_eps_brackets_exact_ot(eps):
    # W_0 - eps log(nm) <= W_eps <= W_0 and W_0 <= <P_eps, C> <= W_0 + eps log(nm)
    C, a, b = _problems(N=8, n=4, m=5, seed=3)
    res = sinkhorn(C, a, b, eps, iterations=50000, tol=1e-11, domain="log")
    assert res.marginal_error < 1e-10
    bound = eps * math.log(4 * 5)
    for k in range(len(C)):
        exact = float(ot.emd2(a[k].numpy(), b[k].numpy(), C[k].numpy()))
        assert exact - bound - 1e-9 <= float(res.value[k]) <= exact + 1e-9
        assert exact - 1e-9 <= float(res.transport_cost[k]) <= exact + bound + 1e-9


def test_eps_to_zero_converges_to_emd2():
    C, a, b = _problems(N=5, n=4, m=4, seed=4)
    exact = torch.tensor([float(ot.emd2(a[k].numpy(), b[k].numpy(), C[k].numpy())) for k in range(5)], dtype=torch.float64)
    results = [sinkhorn(C, a, b, eps, iterations=50000, tol=1e-11) for eps in (1e-1, 1e-2, 1e-3)]
    assert results[2].domain == "log"  # auto: cost range / eps ~ 2000 > 354 (float64)
    gaps = [float((r.transport_cost - exact).abs().max()) for r in results]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3 * math.log(16) + 1e-9


def test_zero_mass_padding_equals_unpadded_problem():
    C, a, b = _problems(N=4, n=3, m=4, seed=5)
    Cp = torch.full((4, 5, 6), float("nan"), dtype=torch.float64)  # padding may hold anything
    Cp[:, 2, :] = float("inf")
    Cp[:, :, 5] = -1e9
    rows, cols = [0, 1, 3], [0, 2, 3, 4]
    Cp[:, torch.tensor(rows)[:, None], torch.tensor(cols)] = C
    ap = torch.zeros(4, 5, dtype=torch.float64)
    bp = torch.zeros(4, 6, dtype=torch.float64)
    ap[:, rows], bp[:, cols] = a, b
    for domain in ("plain", "log"):
        full = sinkhorn(C, a, b, 0.1, iterations=500, tol=0.0, domain=domain)
        padded = sinkhorn(Cp, ap, bp, 0.1, iterations=500, tol=0.0, domain=domain)
        assert torch.allclose(padded.plan[:, torch.tensor(rows)[:, None], torch.tensor(cols)], full.plan, atol=1e-13)
        assert padded.plan[:, [2, 4], :].abs().max() == 0 and padded.plan[:, :, [1, 5]].abs().max() == 0
        assert torch.allclose(padded.value, full.value, atol=1e-13)
        assert torch.allclose(padded.transport_cost, full.transport_cost, atol=1e-13)
        assert torch.isfinite(padded.value).all() and torch.isfinite(padded.entropy).all()


def test_problem_without_mass_gives_zero_plan_value_and_gradient():
    C, a, b = _problems(N=3, n=3, m=3, seed=6)
    a, b = a.clone(), b.clone()
    a[1] = 0.0
    b[1] = 0.0
    C[1] = float("nan")
    C = C.clone().requires_grad_()
    for domain in ("plain", "log"):
        res = sinkhorn(C, a, b, 0.1, iterations=100, tol=0.0, domain=domain)
        assert float(res.value.detach()[1]) == 0.0 and float(res.plan[1].abs().max()) == 0.0
        assert torch.isfinite(res.value).all()
        (grad,) = torch.autograd.grad(res.value.sum(), C)
        assert torch.isfinite(grad).all() and float(grad[1].abs().max()) == 0.0
        other = sinkhorn(C.detach()[[0, 2]], a[[0, 2]], b[[0, 2]], 0.1, iterations=100, tol=0.0, domain=domain)
        assert torch.allclose(res.value.detach()[[0, 2]], other.value, atol=1e-13)


def test_gradient_is_the_plan():
    C, a, b = _problems(N=10, seed=7)
    C.requires_grad_()
    res = sinkhorn(C, a, b, 0.1, iterations=60, tol=0.0)
    weights = torch.arange(10, dtype=torch.float64)
    (grad,) = torch.autograd.grad((weights * res.value).sum(), C)
    assert torch.equal(grad, weights.view(-1, 1, 1) * res.plan)
    assert not res.plan.requires_grad


@pytest.mark.parametrize("domain", ["plain", "log"])
def test_envelope_gradient_passes_gradcheck(domain):
    C, a, b = _problems(N=3, n=3, m=4, seed=8)
    a[0, 1] = 0.0  # a zero-mass row, renormalised
    a = a / a.sum(1, keepdim=True)
    C.requires_grad_()

    def value(cost):
        return sinkhorn(cost, a, b, 0.5, iterations=5000, tol=1e-14, domain=domain).value

    assert torch.autograd.gradcheck(value, (C,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_potentials_give_the_plan():
    C, a, b = _problems(N=6, seed=9)
    for domain in ("plain", "log"):
        res = sinkhorn(C, a, b, 0.1, iterations=80, tol=0.0, domain=domain)
        alpha, beta = res.potentials
        rebuilt = torch.exp((alpha[:, :, None] + beta[:, None, :] - C) / 0.1)
        assert torch.allclose(rebuilt, res.plan, rtol=1e-10, atol=1e-14)
        entropy = -(res.plan * res.plan.log()).sum((1, 2))
        assert torch.allclose(res.entropy, entropy, atol=1e-10)


def test_auto_domain_follows_the_cost_range():
    assert abs(plain_domain_limit(torch.float32) - 0.5 * 87.3365) < 1e-3
    C, a, b = _problems(N=5, seed=10, dtype=torch.float32)  # range <= 2
    assert sinkhorn(C, a, b, 0.05, iterations=5).domain == "plain"  # 2 / 0.05 = 40 <= 43.7
    assert sinkhorn(C, a, b, 0.04, iterations=5).domain == "log"  # 50 > 43.7
    assert sinkhorn(C.double(), a.double(), b.double(), 0.01, iterations=5).domain == "plain"  # 200 <= 354
    mixed = C.clone()
    mixed[:2] *= 0.1  # range 0.2 in the first two problems
    assert sinkhorn(mixed, a, b, 0.01, iterations=5, chunk_size=2).domain == "mixed"


def test_tolerance_stops_early_and_reports():
    C, a, b = _problems(N=20, seed=11)
    res = sinkhorn(C, a, b, 0.5, iterations=10000, tol=1e-9, check_every=10)
    assert 0 < res.iterations < 10000 and res.iterations % 10 == 0
    assert res.marginal_error < 1e-9 * 1.01
    fixed = sinkhorn(C, a, b, 0.5, iterations=3, tol=1e-9)  # cap below the first check
    assert fixed.iterations == 3 and fixed.marginal_error > 1e-9


def test_chunks_and_workers_do_not_change_results():
    C, a, b = _problems(N=50, seed=12)
    a[3, 0] = 0.0
    a = a / a.sum(1, keepdim=True)
    one = sinkhorn(C, a, b, 0.1, iterations=40, tol=0.0, chunk_size=50)
    for chunk, workers in ((7, 1), (7, 2), (1, 2)):
        other = sinkhorn(C, a, b, 0.1, iterations=40, tol=0.0, chunk_size=chunk, workers=workers)
        assert torch.allclose(other.plan, one.plan, rtol=0, atol=1e-15)
        assert torch.allclose(other.value, one.value, rtol=0, atol=1e-14)
    threads = torch.get_num_threads()
    sinkhorn(C, a, b, 0.1, iterations=5, chunk_size=7, workers=2)
    assert torch.get_num_threads() == threads  # restored


def test_uniform_marginals_by_default():
    C, _, _ = _problems(N=4, seed=13)
    res = sinkhorn(C, eps=0.2, iterations=200, tol=0.0)
    assert torch.allclose(res.plan.sum(2), torch.full((4, 5), 0.2, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(res.plan.sum(1), torch.full((4, 7), 1 / 7, dtype=torch.float64), atol=1e-12)


def test_invalid_inputs_are_named():
    C, a, b = _problems(N=2)
    with pytest.raises(ValueError, match=r"cost must be \[N, n, m\]"):
        sinkhorn(C[0], a, b)
    with pytest.raises(ValueError, match="marginals must be"):
        sinkhorn(C, a[:, :3], b)
    with pytest.raises(ValueError, match="eps must be > 0"):
        sinkhorn(C, a, b, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        sinkhorn(C, -a, b)
    with pytest.raises(ValueError, match="domain must be one of"):
        sinkhorn(C, a, b, domain="exp")
    with pytest.raises(ValueError, match="constants"):
        sinkhorn(C, a.clone().requires_grad_(), b)
