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

import torch

from .sinkhorn import SinkhornResult


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
    if epsilon <= 0:
        raise ValueError(f"Sinkhorn epsilon must be positive, got {epsilon}")
    if iterations < 1:
        raise ValueError(f"Sinkhorn iterations must be >= 1, got {iterations}")
    n, m = cost.shape[-2], cost.shape[-1]
    batch = cost.shape[:-2]
    if a is None:
        a = torch.full((*batch, n), 1.0 / n, dtype=cost.dtype, device=cost.device)
    if b is None:
        b = torch.full((*batch, m), 1.0 / m, dtype=cost.dtype, device=cost.device)
    a, b = a.to(cost.dtype), b.to(cost.dtype)
    log_a, log_b = torch.log(a), torch.log(b)
    log_k = -cost / epsilon
    log_v = torch.full((*batch, m), -math.log(m), dtype=cost.dtype, device=cost.device)
    log_u = torch.zeros((*batch, n), dtype=cost.dtype, device=cost.device)
    for _ in range(iterations):
        log_u = log_a - _logsumexp(log_k + log_v.unsqueeze(-2), dim=-1)
        log_v = log_b - _logsumexp(log_k + log_u.unsqueeze(-1), dim=-2)
    plan = _exp_flushed(log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2))
    marginal_error = (plan.sum(-1) - a).abs().sum(-1)
    return SinkhornResult(plan=plan, potentials=(epsilon * log_u, epsilon * log_v), marginal_error=marginal_error,
                          iterations=iterations, domain="log")


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log sum exp(x) along `dim`, max-shifted, with shifted exponents clamped below at log(tiny)/2.

    tiny is the dtype's smallest normal number (float32: 1.2e-38), so exp stays far from the
    subnormal range, where CPU exp is 10-50x slower: at RecGOAT's eps = 0.01 most kernel entries lie
    80-400 below the row maximum, and `torch.logsumexp` took ~3-7 ms instead of ~0.2 ms per 256 x 256
    matrix. A clamped term adds at most sqrt(tiny) (float32: 1.1e-19) to a sum that is >= 1, so for
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
