"""The batched Sinkhorn divergence against geomloss's `SamplesLoss("sinkhorn")`, one call per problem.

Values: 1e-5 relative to geomloss's float32 result. Gradients (relative to their largest entry):
against geomloss run in float64 - the exact arithmetic of the same graph - no farther than
geomloss's own float32 gradient is, plus 2e-5. geomloss's float32 gradient carries round-off from
its self-distances (C_xx[i, i] = sqrt(round-off) ~ 3e-4 instead of 0, whose two gradient halves
cancel only to ~1e-3 of the largest entry); ours leaves the diagonal's exact zero gradient out
and is ~50x closer to float64 there. The annealing iterations agree to ~1e-7.
"""

import math

import ftbench.kernels.sinkhorn_divergence as kernel
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ftbench.kernels.sinkhorn_divergence import diameter, epsilon_schedule, sinkhorn_divergences
from geomloss import SamplesLoss
from geomloss._legacy.sinkhorn_divergence import epsilon_schedule as geomloss_schedule
from geomloss._legacy.sinkhorn_divergence import max_diameter

RTOL = 1e-5
# how much farther from geomloss's float64 gradient ours may be than geomloss's float32 one
GRAD_SLACK = 2e-5


def clouds(seed, n, m, dim=32, spread=1.0, offset=0.0):
    """Two correlated clouds like oat's: aligned modality (a random linear map) and unit anchors."""
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(max(n, m), dim, generator=g) + 2 * torch.randn(1, dim, generator=g), dim=-1)
    delta = (torch.rand(dim, dim, generator=g) * 2 - 1) * math.sqrt(6 / (2 * dim))
    x = spread * (z[:n] @ delta) + offset
    y = F.normalize(z[:m] + 0.5 * torch.randn(m, dim, generator=g), dim=-1)
    return x.requires_grad_(True), y.requires_grad_(True)


def relative(ours, ref):
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def check_against_geomloss(pairs, rtol=RTOL, **settings):
    p, blur, scaling, debias = (settings.get(k, d) for k, d in (("p", 1), ("blur", 0.05), ("scaling", 0.5), ("debias", True)))
    reference = SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=debias, backend="tensorized")
    values = sinkhorn_divergences(pairs, **settings)
    assert values.shape == (len(pairs),)
    for k, (x, y) in enumerate(pairs):
        ref = reference(x, y)
        ref_x, ref_y = torch.autograd.grad(ref, [x, y])
        x64, y64 = (c.detach().double().requires_grad_(True) for c in (x, y))
        exact_x, exact_y = torch.autograd.grad(reference(x64, y64), [x64, y64])
        ours_x, ours_y = torch.autograd.grad(values[k], [x, y], retain_graph=True)
        assert relative(values[k].detach(), ref.detach()) <= rtol, (k, float(values[k]), float(ref))
        for ours, ref32, exact in ((ours_x, ref_x, exact_x), (ours_y, ref_y, exact_y)):
            assert relative(ours.double(), exact) <= relative(ref32.double(), exact) + GRAD_SLACK, k
    return values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_one_geomloss_call_per_problem(seed):
    pairs = [clouds(10 * seed, 96, 96), clouds(10 * seed + 1, 96, 96)]
    values = check_against_geomloss(pairs)
    assert bool((values > 0).all())


def test_problems_of_different_sizes_and_schedules_in_one_solve():
    # different N, M (padding) and diameters 1x / 4x (schedules of different lengths)
    pairs = [clouds(3, 80, 64), clouds(4, 40, 72, spread=4.0), clouds(5, 64, 64, offset=0.3)]
    lengths = {len(epsilon_schedule(1, diameter(x.detach(), y.detach()), 0.05, 0.5)) for x, y in pairs}
    assert len(lengths) > 1
    check_against_geomloss(pairs)


def test_near_identical_clouds_small_divergence():
    # S close to 0: the three OT terms nearly cancel, the hardest case for a relative tolerance
    x, y = clouds(6, 64, 64)
    x = (y.detach() + 0.01 * torch.randn(64, 32, generator=torch.Generator().manual_seed(7))).requires_grad_(True)
    values = check_against_geomloss([(x, y)])
    assert 0 < float(values[0].detach()) < 0.2


@pytest.mark.parametrize("settings", [dict(debias=False), dict(scaling=0.7), dict(domain="log")])
def test_other_settings_equal_geomloss(settings):
    check_against_geomloss([clouds(8, 48, 56), clouds(9, 48, 48)], **settings)


def test_squared_cost_equals_geomloss_to_its_own_round_off():
    # p = 2: eps = blur^2 = 0.0025, and geomloss's float32 gradients on these problems differ from
    # its own float64 ones by ~1.3e-5 (ours, float64 iterations: ~1e-5 from either), so 3e-5 here
    check_against_geomloss([clouds(8, 48, 56), clouds(9, 48, 48)], rtol=3e-5, p=2)


def test_underflowing_kernel_falls_back_to_the_log_domain(monkeypatch):
    # cost / eps up to ~3000: exp(-C / eps) underflows float64, the scaling loop must hand over;
    # at this cost range geomloss's float32 iterations carry ~1e-5 round-off (ours are float64)
    x, y = clouds(11, 32, 32, spread=40.0)
    calls = []
    log_loop = kernel._log_loop
    monkeypatch.setattr(kernel, "_log_loop", lambda *a: calls.append(1) or log_loop(*a))
    check_against_geomloss([(x, y)], rtol=5e-5)
    assert calls, "the log-domain loop was not used"


def test_schedule_and_diameter_are_geomlosss():
    x, y = clouds(12, 50, 60)
    x, y = x.detach(), y.detach()
    assert diameter(x, y) == max_diameter(x, y)
    for p, d, blur, scaling in ((1, diameter(x, y), 0.05, 0.5), (2, 3.7, 0.01, 0.8), (1, 0.04, 0.05, 0.5)):
        assert np.array_equal(epsilon_schedule(p, d, blur, scaling), geomloss_schedule(p, d, blur, scaling))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(p=3), "p must be 1 or 2"),
        (dict(blur=0.0), "blur must be positive"),
        (dict(scaling=1.0), "scaling must be in"),
        (dict(domain="plain"), "domain must be one of"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sinkhorn_divergences([clouds(0, 8, 8)], **kwargs)


def test_bad_clouds_are_named():
    with pytest.raises(ValueError, match="no pairs"):
        sinkhorn_divergences([])
    with pytest.raises(ValueError, match=r"pair 1 must be two non-empty \[N, D\], \[M, D\] clouds, got \(8, 32\) and \(8, 16\)"):
        sinkhorn_divergences([clouds(0, 8, 8), (torch.zeros(8, 32), torch.zeros(8, 16))])


def test_larger_blur_within_geomlosss_own_round_off():
    # at blur = 0.1 the gradient is dominated by float32 round-off: geomloss's float32 gradient
    # differs from its own float64 one by ~8e-4 (the self-distance noise, see the module
    # docstring), ours by ~4e-4; values still agree to 1e-5
    x, y = clouds(8, 48, 56)
    reference = SamplesLoss("sinkhorn", p=1, blur=0.1, scaling=0.7, backend="tensorized")
    value = sinkhorn_divergences([(x, y)], blur=0.1, scaling=0.7)[0]
    ref = reference(x, y)
    assert relative(value.detach(), ref.detach()) <= RTOL
    ours = torch.autograd.grad(value, [x])[0]
    ref32 = torch.autograd.grad(ref, [x])[0]
    x64, y64 = x.detach().double().requires_grad_(True), y.detach().double()
    ref64 = torch.autograd.grad(reference(x64, y64), [x64])[0]
    assert relative(ours.double(), ref64) <= 0.6 * relative(ref32.double(), ref64)


def test_cost_benchmark_variant_uses_the_geomloss_path():
    # `ftbench cost --objective oat-geomloss-w1` measures the previous W1 path beside `oat`
    from ftbench.cost import scaling
    from ftbench.objectives.oat import Oat

    assert scaling._base_objective("oat-geomloss-w1") == "oat"
    assert scaling._objective_sets("oat-geomloss-w1", ["wasserstein_blur=0.1"]) == ["wasserstein_blur=0.1"]
    variant = scaling.objective_class("oat-geomloss-w1")
    assert issubclass(variant, Oat) and variant.wasserstein_solver == "geomloss"
    assert Oat.wasserstein_solver == "batched"  # the registered objective is left as it is


def test_closed_form_gradient_equals_autograd_through_geomlosss_graph():
    """`_LastUpdate`'s hand-written backward against autograd through geomloss's last update
    (its `distances` and `softmin_tensorized`, transcribed), the diagonals of C_xx and C_yy passing
    no gradient (their exact gradient is 0), from the same detached potentials."""
    x, y = clouds(21, 40, 36)
    eps = 0.05
    schedule = epsilon_schedule(1, diameter(x.detach(), y.detach()), eps, 0.5)
    a, b = torch.full((40,), 1 / 40), torch.full((36,), 1 / 36)
    with torch.no_grad():
        costs = kernel._Costs(x.detach(), y.detach(), 1, True, {})
        pots = kernel._annealing([(costs, a, b, schedule)], True, "auto")[0]

    def cost(u, v, self_cost):
        c = torch.sqrt(torch.clamp_min((u * u).sum(-1, keepdim=True) - 2 * u @ v.t() + (v * v).sum(-1), 1e-8))
        return c - torch.diag(c.diagonal()) + torch.diag(c.diagonal().detach()) if self_cost else c

    def softmin(c, h):
        return -eps * (h.view(1, -1) - c / eps).logsumexp(1)

    f_ba = softmin(cost(x, y.detach(), False), b.log() + pots["g_ab"] / eps)
    g_ab = softmin(cost(y, x.detach(), False), a.log() + pots["f_ba"] / eps)
    f_aa = softmin(cost(x, x.detach(), True), a.log() + pots["f_aa"] / eps)
    g_bb = softmin(cost(y, y.detach(), True), b.log() + pots["g_bb"] / eps)
    reference = (a * (f_ba - f_aa)).sum() + (b * (g_ab - g_bb)).sum()
    ours = kernel._LastUpdate.apply(x, y, costs, a, b, pots, eps, True)
    assert relative(ours.detach(), reference.detach()) <= 1e-6
    for o, r in zip(torch.autograd.grad(ours, (x, y)), torch.autograd.grad(reference, (x, y))):
        assert relative(o, r) <= 1e-5
    # coincident points: the clamped entries (sqrt(1e-8)) pass no gradient, as torch's clamp_min.
    # Coordinates on a 2^-6 grid make every product and sum of their squared distance exact in
    # float32, so it is 0 - clamped - on every CPU, whatever the summation order. sqrt(1e-8) is
    # 1e-4 only up to float32 rounding: 9.9999997e-05 correctly rounded, 1.0000000e-04 from some
    # vectorised sqrt; hence the floor a few ulps below 1e-4.
    xc = (torch.round(x.detach() * 64) / 64).requires_grad_(True)
    y2 = torch.cat([y.detach(), xc[:3].detach()]).requires_grad_(True)
    costs2 = kernel._Costs(xc.detach(), y2.detach(), 1, True, {})
    coincident = (torch.arange(3), 36 + torch.arange(3))
    assert not bool(costs2.kept["xy"][coincident].any())
    assert float(costs2["xy"].min()) >= 1e-4 * (1 - 2.0**-20)
    value = sinkhorn_divergences([(xc, y2)])[0]
    assert all(bool(torch.isfinite(g).all()) for g in torch.autograd.grad(value, (xc, y2)))


def test_reused_annealing_buffers_give_the_same_values():
    """The annealing buffers are kept between calls: a padded solve after an unpadded one of the
    same shape (stale entries in the padding) and after other shapes gives the same bits."""
    padded = [clouds(2, 20, 12), clouds(3, 16, 20)]
    first = sinkhorn_divergences(padded).detach()
    sinkhorn_divergences([clouds(4, 20, 20, spread=3.0), clouds(5, 20, 20)])  # same [2, 4, 20, 20] buffers
    sinkhorn_divergences([clouds(6, 9, 7)])
    assert torch.equal(sinkhorn_divergences(padded).detach(), first)


def test_a_cloud_in_several_pairs_has_its_self_cost_computed_once(monkeypatch):
    """oat passes its anchor as the second cloud of both problems: its self-cost C_yy is computed
    once, with the same values and gradients as two separate copies of the cloud."""
    (x1, y), (x2, _) = clouds(31, 40, 36), clouds(32, 40, 36)
    y2 = y.detach().clone().requires_grad_(True)
    separate = sinkhorn_divergences([(x1, y), (x2, y2)])
    ref = torch.autograd.grad(separate.sum(), (x1, x2, y, y2))
    calls = []
    squared = kernel._squared_distances
    monkeypatch.setattr(kernel, "_squared_distances", lambda u, v: calls.append(1) or squared(u, v))
    shared = sinkhorn_divergences([(x1, y), (x2, y)])
    assert len(calls) == 5  # C_xy and C_xx of each pair, C_yy once
    assert torch.equal(shared.detach(), separate.detach())
    ours = torch.autograd.grad(shared.sum(), (x1, x2, y))
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    assert torch.allclose(ours[2], ref[2] + ref[3], rtol=0, atol=1e-9)


def test_workspace_reused_across_problem_sizes(monkeypatch):
    """The annealing's float64 buffers are kept by capacity: a smaller solve after a larger one runs
    in views of the larger buffers and gives bit for bit what a fresh workspace gives."""
    small = [clouds(31, 20, 17), clouds(32, 19, 20)]
    large = [clouds(33, 40, 36), clouds(34, 38, 40)]

    def solve(pairs):
        values = sinkhorn_divergences(pairs)
        return values.detach(), torch.autograd.grad(values.sum(), [pairs[0][0], pairs[1][1]])

    monkeypatch.setattr(kernel, "_WORKSPACE", kernel._Workspace())
    fresh_small = solve(small)
    monkeypatch.setattr(kernel, "_WORKSPACE", kernel._Workspace())
    fresh_large = solve(large)
    capacity = kernel._WORKSPACE.buffers[0].numel()
    reused_small = solve(small)  # in views of the large buffers, which still hold large's costs
    assert kernel._WORKSPACE.buffers[0].numel() == capacity
    for got, want in ((reused_small, fresh_small), (solve(large), fresh_large)):
        assert torch.equal(got[0], want[0])
        assert all(torch.equal(g, w) for g, w in zip(got[1], want[1]))
