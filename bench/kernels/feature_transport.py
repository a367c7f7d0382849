"""Small log-domain Sinkhorn solver and RecGOAT's feature-dimension transport.

Entropic optimal transport between discrete measures a (n) and b (m) with cost C (n x m):

    P* = argmin_{P >= 0, P 1 = a, P^T 1 = b}  <P, C> - eps H(P),   H(P) = - sum_pq P_pq (log P_pq - 1)

whose solution is P* = diag(u) K diag(v) with the Gibbs kernel K = exp(-C / eps) and scalings
u, v found by Sinkhorn's alternating projections u <- a / (K v), v <- b / (K^T u)
(Cuturi, "Sinkhorn Distances", NeurIPS 2013). With small eps (RecGOAT's code uses eps = 0.01 on
costs scaled by s = 100) K underflows to 0 in floating point and the plain iteration divides by 0;
the log-domain form keeps log u, log v and evaluates every product with log-sum-exp
(Peyre & Cuturi, "Computational Optimal Transport", 2019, §4.4; POT `ot.sinkhorn(...,
method="sinkhorn_log")`):

    log u_p = log a_p - LSE_q(-C_pq / eps + log v_q)
    log v_q = log b_q - LSE_p(-C_pq / eps + log u_p)
    log P_pq = log u_p - C_pq / eps + log v_q.

The iteration starts from v = 1/m and updates u then v, exactly RecGOAT's order
(6lyc/RecGOAT-WSDM2027, model_v1.py, `FusionModule.sinkhorn`), so a fixed number of iterations gives
the same iterate as the released plain-domain code wherever that code does not underflow (the
released code adds 1e-8 to its denominators; the log domain needs no such guard). After the last
v-update the column marginal is exact and the row marginal error measures convergence. Cost:
O(iterations * n * m); the log-sum-exp keeps exp out of the subnormal range (see `_logsumexp`),
which would otherwise dominate the run time at RecGOAT's eps.

RecGOAT's optimal adaptive transport (OAT) works on *feature dimensions*, not samples: for a batch
of modality embeddings Z_m [B, d] and anchor embeddings Z_a [B, d] the d x d cost is

    C_pq = s * mean_i (Z_m[i, p] - Z_a[i, q])^2                                   (`feature_cost`)

with uniform marginals 1/d, and the aligned modality is Z_m (T + Delta_m) with T the plan (detached)
and Delta_m a learnable residual (see objectives/oat.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .sinkhorn import SinkhornResult


def _checked_marginals(cost, a, b, epsilon, iterations, dtype):
    """Validate eps and the sweep count; the marginals in `dtype` (uniform where not given)."""
    if epsilon <= 0:
        raise ValueError(f"Sinkhorn epsilon must be positive, got {epsilon}")
    if iterations < 1:
        raise ValueError(f"Sinkhorn iterations must be >= 1, got {iterations}")
    n, m = cost.shape[-2], cost.shape[-1]
    batch = cost.shape[:-2]
    a = torch.full((*batch, n), 1.0 / n, dtype=dtype, device=cost.device) if a is None else a.to(dtype)
    b = torch.full((*batch, m), 1.0 / m, dtype=dtype, device=cost.device) if b is None else b.to(dtype)
    return a, b


def log_sinkhorn(
    cost: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    epsilon: float = 0.01,
    iterations: int = 100,
) -> SinkhornResult:
    """Entropic OT plan by `iterations` log-domain Sinkhorn sweeps (u then v), from v = 1/m.

    cost [..., n, m] (leading dimensions are independent problems); a [..., n], b [..., m]
    marginals (default uniform; zero entries give zero rows/columns). Returns the plan
    P = exp(log u - C/eps + log v) (entries below the dtype's smallest normal number set to 0), the
    dual potentials (eps log u, eps log v) and the row-marginal L1 error per problem. Each half-iteration is one log-sum-exp over the n x m
    matrix: O(iterations * n * m). Differentiable, but callers that use the envelope theorem (or
    detach the plan, as RecGOAT) should call it under `torch.no_grad()`.
    """
    a, b = _checked_marginals(cost, a, b, epsilon, iterations, cost.dtype)
    n, m = cost.shape[-2], cost.shape[-1]
    batch = cost.shape[:-2]
    log_a, log_b = torch.log(a), torch.log(b)
    log_k = -cost / epsilon
    log_v = torch.full((*batch, m), -math.log(m), dtype=cost.dtype, device=cost.device)
    log_u = torch.zeros((*batch, n), dtype=cost.dtype, device=cost.device)
    for _ in range(iterations):
        log_u = log_a - _logsumexp(log_k + log_v.unsqueeze(-2), dim=-1)
        log_v = log_b - _logsumexp(log_k + log_u.unsqueeze(-1), dim=-2)
    plan = _exp_flushed(log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2))
    marginal_error = (plan.sum(-1) - a).abs().sum(-1)
    return SinkhornResult(
        plan=plan,
        potentials=(epsilon * log_u, epsilon * log_v),
        marginal_error=marginal_error,
        iterations=iterations,
        domain="log",
    )


DOMAINS = ("auto", "log")
# |log| of a scaling above which it is folded into the potentials (float64 holds e^+-709; a
# margin of 10 orders of magnitude on each side of e^+-50 leaves the products far from overflow)
_ABSORB_AT = 50.0
# CPU sweeps with positive marginals through numpy (`_numpy_sweeps`); False: the torch loop
_NUMPY_ON_CPU = True


def fixed_sinkhorn(
    cost: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    epsilon: float = 0.01,
    iterations: int = 100,
    domain: str = "auto",
    check_every: int = 5,
) -> SinkhornResult:
    """The iterate of `log_sinkhorn` after `iterations` sweeps, by the fastest exact route.

    domain="log": `log_sinkhorn` itself. domain="auto" (default): the same iterations as scalings
    in float64 with absorption (Schmitzer 2019, sec. 3.2; POT's ``sinkhorn_stabilized``): the
    first sweep is a log-domain sweep, which gives potentials (alpha, beta); then

        K~ = exp((alpha_p + beta_q - C_pq) / eps),   u <- a / (K~ v),   v <- b / (K~^T u),

    two matrix-vector products per sweep and no exponential, with u = v = 1 after each absorption
    alpha += eps log u, beta += eps log v (one exponential of the n x m kernel). The plan after
    iteration t is diag(u) K~ diag(v) = exp((alpha + eps log u + beta + eps log v - C) / eps), the
    log-domain iterate exactly; absorbing whenever |log u| or |log v| exceeds 50 (checked every
    `check_every` sweeps) keeps every float64 product finite for any cost range and eps, and an
    entry of K~ that underflows is a plan entry below e^-600. The leading dimensions are batched
    (one solve for several problems). If a scaling comes out non-finite all the same, the result
    is recomputed by `log_sinkhorn`, so "auto" never fails where "log" succeeds. float64
    arithmetic is more accurate than the float32 log domain; the two agree to float32 round-off
    (tests/bench/kernels/test_feature_transport.py). On CPU it is much faster than `log_sinkhorn`,
    whose cost is one exponential per entry per half-sweep (docs/perf/index.md, "Kernel choices").
    """
    if domain not in DOMAINS:
        raise ValueError(f"Sinkhorn domain must be one of {DOMAINS}, got {domain!r}")
    if domain == "log":
        return log_sinkhorn(cost, a, b, epsilon, iterations)
    f64 = torch.float64
    a64, b64 = _checked_marginals(cost, a, b, epsilon, iterations, f64)
    m = cost.shape[-1]
    # in place where it can be: a fresh [2, 256, 256] float64 temporary costs ~250 page faults
    log_k = cost.to(f64, copy=True).div_(-epsilon)
    has_a, has_b = a64 > 0, b64 > 0
    zero = torch.zeros((), dtype=f64, device=cost.device)

    def absorbed(alpha, beta):
        # entries below e^-600 are set to 0: they are negligible plan entries, and as float64
        # subnormals (below e^-708, reached in products with the scalings) they are slow
        exponent = torch.add(log_k, alpha.unsqueeze(-1)).add_(beta.unsqueeze(-2))
        return exponent.masked_fill_(exponent < -600.0, -math.inf).exp_()

    # first sweep, from v = 1/m (as `log_sinkhorn`): alpha = log a - LSE_q(log_k - log m), beta =
    # log b - LSE_p(log_k + alpha), and the kernel exp(log_k + alpha + beta), from one exponential
    # E = exp(log_k - max_q log_k) instead of three (two log-sum-exps and the kernel's): the row
    # sums r of E give alpha; exp(log_k + alpha) = E w with w = a m / r; its column sums c give
    # beta = log(b / c); the kernel is E w (b / c). Where a column of E w underflows (an entry
    # e^-700 below its row's largest), the log-domain sweep instead.
    top = log_k.amax(dim=-1, keepdim=True)
    e = torch.sub(log_k, top).exp_()
    row = e.sum(dim=-1)  # >= 1: each row holds its maximum, exp(0) = 1
    alpha = torch.log(a64) - (top.squeeze(-1) + torch.log(row) - math.log(m))
    weighted = e.mul_((a64 * m / row).unsqueeze(-1))
    column = weighted.sum(dim=-2)
    if bool((column > 1e-290).all()):
        beta = torch.log(b64) - torch.log(column)
        kernel = weighted.mul_((b64 / column).unsqueeze(-2))
        kernel.masked_fill_(kernel < math.exp(-600.0), 0.0)
    else:
        beta = torch.log(b64) - torch.logsumexp(log_k + alpha.unsqueeze(-1), dim=-2)
        kernel = absorbed(alpha, beta)
    # both products as (row vector) @ (row-major matrix): the fastest batched mat-vec on CPU
    kernel_t = kernel.transpose(-1, -2).contiguous()
    u = torch.ones_like(a64).unsqueeze(-2)  # [..., 1, n]
    v = torch.ones_like(b64).unsqueeze(-2)  # [..., 1, m]
    a_row, b_row = a64.unsqueeze(-2), b64.unsqueeze(-2)
    all_mass = bool(has_a.all()) and bool(has_b.all())
    if all_mass and cost.device.type == "cpu" and _NUMPY_ON_CPU:
        # the same sweeps through numpy (its BLAS): at these sizes the loop is dominated by
        # per-operation overhead, which is smaller in numpy than in torch
        scalings = _numpy_sweeps(kernel, kernel_t, a_row, b_row, alpha, beta, absorbed, iterations, check_every)
        if scalings is None:
            return log_sinkhorn(cost, a, b, epsilon, iterations)
        u, v, alpha, beta, kernel = scalings
        iterations_left = 0
    else:
        iterations_left = iterations
    for it in range(1, iterations_left):
        if all_mass:
            u = torch.div(a_row, torch.matmul(v, kernel_t))
            v = torch.div(b_row, torch.matmul(u, kernel))
        else:  # zero-mass rows/columns keep a zero scaling (0 / 0 would be nan)
            u = torch.where(has_a.unsqueeze(-2), a_row / torch.matmul(v, kernel_t), zero)
            v = torch.where(has_b.unsqueeze(-2), b_row / torch.matmul(u, kernel), zero)
        if it % check_every == 0 or it == iterations - 1:
            if all_mass:  # max |log| from the extreme scalings: two small ops instead of eight
                low_t, high_t = torch.aminmax(torch.cat((u, v), dim=-1))
                low, high = float(low_t), float(high_t)
                # nan fails both tests; 0 or inf gives an infinite largest |log|
                largest = max(math.log(high), -math.log(low)) if low > 0 and high > 0 else math.inf
            else:
                log_u = torch.where(has_a.unsqueeze(-2), u, 1.0).log()
                log_v = torch.where(has_b.unsqueeze(-2), v, 1.0).log()
                largest = float(torch.maximum(log_u.abs().amax(), log_v.abs().amax()))
            if not math.isfinite(largest):
                return log_sinkhorn(cost, a, b, epsilon, iterations)
            if largest > _ABSORB_AT and it < iterations - 1:
                log_u = torch.where(has_a.unsqueeze(-2), u, 1.0).log()
                log_v = torch.where(has_b.unsqueeze(-2), v, 1.0).log()
                alpha, beta = alpha + log_u.squeeze(-2), beta + log_v.squeeze(-2)
                kernel = absorbed(alpha, beta)
                kernel_t = kernel.transpose(-1, -2).contiguous()
                u, v = torch.ones_like(u), torch.ones_like(v)
    u, v = u.squeeze(-2), v.squeeze(-2)
    plan64 = kernel.mul_(u.unsqueeze(-1)).mul_(v.unsqueeze(-2))  # the kernel is not used again
    log_u = torch.where(has_a, u, 1.0).log()
    log_v = torch.where(has_b, v, 1.0).log()
    # as `_exp_flushed`: entries below sqrt(smallest normal number) of the output dtype are 0
    floor = math.sqrt(torch.finfo(cost.dtype).tiny)
    plan = plan64.masked_fill_(plan64 < floor, 0.0).to(cost.dtype)
    a_out = a64.to(cost.dtype)
    marginal_error = (plan.sum(-1) - a_out).abs().sum(-1)
    potentials = (epsilon * (alpha + log_u)).to(cost.dtype), (epsilon * (beta + log_v)).to(cost.dtype)
    return SinkhornResult(
        plan=plan, potentials=potentials, marginal_error=marginal_error, iterations=iterations, domain="scaling"
    )


def _numpy_sweeps(kernel, kernel_t, a_row, b_row, alpha, beta, absorbed, iterations, check_every):
    """`fixed_sinkhorn`'s sweeps 2..iterations for positive marginals on CPU, in numpy: the same
    products, divisions, checks and absorptions (`absorbed(alpha, beta)` gives the new kernel).
    Returns (u, v, alpha, beta, kernel) as tensors, or None if a scaling is not finite."""
    # an overflow or a zero product is detected at the next check, as in torch: no warnings
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return _numpy_sweeps_in(kernel, kernel_t, a_row, b_row, alpha, beta, absorbed, iterations, check_every)


def _numpy_sweeps_in(kernel, kernel_t, a_row, b_row, alpha, beta, absorbed, iterations, check_every):
    k, k_t = kernel.numpy(), kernel_t.numpy()
    a_np, b_np = a_row.numpy(), b_row.numpy()
    u, v = np.ones(a_np.shape), np.ones(b_np.shape)
    for it in range(1, iterations):
        u = a_np / np.matmul(v, k_t)
        v = b_np / np.matmul(u, k)
        if it % check_every == 0 or it == iterations - 1:
            low, high = float(min(u.min(), v.min())), float(max(u.max(), v.max()))
            # nan fails both tests; 0 or inf gives an infinite largest |log|
            largest = max(math.log(high), -math.log(low)) if low > 0 and high > 0 else math.inf
            if not math.isfinite(largest):
                return None
            if largest > _ABSORB_AT and it < iterations - 1:
                alpha = alpha + torch.from_numpy(np.log(u)).squeeze(-2)
                beta = beta + torch.from_numpy(np.log(v)).squeeze(-2)
                kernel = absorbed(alpha, beta)
                k, k_t = kernel.numpy(), kernel.transpose(-1, -2).contiguous().numpy()
                u, v = np.ones_like(u), np.ones_like(v)
    return torch.from_numpy(u), torch.from_numpy(v), alpha, beta, kernel


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log sum exp(x) along `dim`, max-shifted, with shifted exponents clamped below at log(tiny)/2.

    tiny is the dtype's smallest normal number (float32: 1.2e-38), so exp stays far from the
    subnormal range, where CPU exp is an order of magnitude slower: at RecGOAT's eps = 0.01 most kernel
    entries lie 80-400 below the row maximum, where `torch.logsumexp` would spend most of its time
    (docs/perf/index.md, "Kernel choices"). A clamped term adds at most sqrt(tiny) (float32: 1.1e-19) to a sum that is >= 1, so for
    n terms the result equals `torch.logsumexp` to n * 1.1e-19 relative (float32), far below
    machine precision. (A row that is entirely -inf, which positive marginals never produce, would
    come out finite.)
    """
    top = x.amax(dim=dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    floor = 0.5 * math.log(torch.finfo(x.dtype).tiny)
    return torch.log(torch.exp((x - top).clamp_min_(floor)).sum(dim=dim)) + top.squeeze(dim)


def _exp_flushed(exponent: torch.Tensor) -> torch.Tensor:
    """exp, with results below sqrt(smallest normal number) set to exactly 0.

    Subnormal floats make CPU arithmetic on the plan much slower; the dropped entries are
    < 1.1e-19 (float32) each, negligible against plan entries of order 1/n.
    """
    floor = 0.5 * math.log(torch.finfo(exponent.dtype).tiny)
    return torch.exp(exponent.masked_fill(exponent < floor, float("-inf")))


def feature_cost(
    z_modality: torch.Tensor, z_anchor: torch.Tensor, scale: float = 100.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """RecGOAT's d x d cost C_pq = s * sum_i w_i (Z_m[i,p] - Z_a[i,q])^2 / sum_i w_i.

    z_modality, z_anchor [B, d]; weight [B] (default 1: the batch mean; 0 leaves an item out).
    Computed by expanding the square, s * (E[Z_m[:,p]^2] + E[Z_a[:,q]^2] - 2 E[Z_m[:,p] Z_a[:,q]]),
    in O(B d^2) time and O(d^2) memory instead of the released code's [B, d, d] difference tensor;
    clamped at 0 against round-off. With no weighted item the cost is 0 (uniform plan).
    """
    if z_modality.shape != z_anchor.shape or z_modality.ndim != 2:
        raise ValueError(f"feature_cost expects two [B, d] tensors, got {tuple(z_modality.shape)} and {tuple(z_anchor.shape)}")
    if weight is None:
        weight = torch.ones(z_modality.shape[0], dtype=z_modality.dtype, device=z_modality.device)
    weight = weight.to(z_modality.dtype)
    w = weight / weight.sum().clamp_min(torch.finfo(weight.dtype).tiny)  # all zero -> cost 0
    m2 = (w.unsqueeze(1) * z_modality * z_modality).sum(0)  # [d] over p
    a2 = (w.unsqueeze(1) * z_anchor * z_anchor).sum(0)  # [d] over q
    cross = (z_modality * w.unsqueeze(1)).t() @ z_anchor  # [d, d]
    return (scale * (m2.unsqueeze(1) + a2.unsqueeze(0) - 2.0 * cross)).clamp_min(0.0)


def feature_plan(
    z_modality: torch.Tensor,
    z_anchor: torch.Tensor,
    *,
    scale: float = 100.0,
    epsilon: float = 0.01,
    iterations: int = 100,
    weight: torch.Tensor | None = None,
) -> SinkhornResult:
    """RecGOAT's OAT plan between feature dimensions: log-domain Sinkhorn, uniform marginals 1/d,
    on `feature_cost(z_modality, z_anchor, scale, weight)`. Computed without gradient (the released
    code detaches T)."""
    with torch.no_grad():
        cost = feature_cost(z_modality.detach(), z_anchor.detach(), scale, weight)
        return log_sinkhorn(cost, epsilon=epsilon, iterations=iterations)
