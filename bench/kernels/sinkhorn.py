r"""Batched entropic optimal transport: N small problems solved at once, with envelope gradients.

For each problem k (cost C_k [n, m], marginals a_k, b_k of equal mass, regulariser eps > 0) it
solves POT's ``reg_type="entropy"`` problem with Sinkhorn's iterations, in POT's order, so the value,
plan and iterates agree with ``ot.solve_batch`` / ``ot.sinkhorn2`` to rounding; the value's gradient
in C is the plan (envelope theorem). The problem, the iteration, the value, the gradient, the plain
and log domains and zero mass are in the Notes of `sinkhorn`.

Problems are solved in cache-sized chunks (`_CHUNK_BYTES_CPU` of kernel on CPU, the whole batch on
CUDA) with the problem index as the innermost, contiguous axis, so each mat-vec is vectorised across
problems; on CPU the chunks are shared among ``workers`` single-threaded threads. Timings against
POT: ``ftbench cost --solver-bench`` and docs/perf/index.md.

References
----------
M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.
B. Schmitzer, "Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport
Problems", SIAM J. Sci. Comput. 2019.
G. Peyre, M. Cuturi, "Computational Optimal Transport", Found. Trends ML 2019 (sec. 4.2, 9.1).
R. Flamary et al., "POT: Python Optimal Transport", JMLR 2021 (``ot.batch.solve_batch``).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

DOMAINS = ("auto", "plain", "log")

# kernel bytes per chunk on CPU, chosen by measurement (docs/perf/index.md, "Full OT at its fastest"):
# smaller chunks are dominated by the per-op cost of the many small in-place ops, larger ones leave the cache.
_CHUNK_BYTES_CPU = 1 << 22
# smallest chunk made only to share work among CPU workers (smaller ones are overhead-bound)
_MIN_CHUNK = 1024


@dataclass
class SinkhornResult:
    """Solutions of N entropic OT problems: what `sinkhorn` (here) and `log_sinkhorn`
    (`ftbench.kernels.feature_transport`, the fixed-iteration solver of RecGOAT's feature plan)
    return.

    plan: [N, n, m] optimal plans P* (detached from `sinkhorn`; may be a non-contiguous view).
    potentials: dual potentials (alpha [N, n], beta [N, m]) with
        P_uv = exp((alpha_u + beta_v - C_uv) / eps); -inf where the mass is 0 (detached).
    marginal_error: ||P 1 - a||_1 + ||P^T 1 - b||_1, the max over problems as a float from
        `sinkhorn`; one tensor entry per problem from `log_sinkhorn` (its column marginal is exact
        after the last update, so this is the row error), which objectives log as a statistic.
    iterations: Sinkhorn iterations run (the most any chunk needed).
    domain: "plain", "log", or "mixed" (auto chose differently for different chunks).
    value: [N] W_eps = <P, C> + eps sum P log P; differentiable in C (gradient P*) when C
        required grad. None from `log_sinkhorn`, whose callers do not need it.
    transport_cost: [N] <P, C> (detached), POT's ``value_linear``; None from `log_sinkhorn`.
    entropy: [N] -sum P log P (detached); None from `log_sinkhorn`.
    """

    plan: torch.Tensor
    potentials: tuple[torch.Tensor, torch.Tensor]
    marginal_error: float | torch.Tensor
    iterations: int
    domain: str
    value: torch.Tensor | None = None
    transport_cost: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


def plain_domain_limit(dtype: torch.dtype) -> float:
    """Largest cost range / eps for which the plain domain is used by ``domain="auto"``.

    Half of -log(smallest normal number): kernel entries stay >= exp(-limit), far from underflow,
    and the scalings (bounded by about exp(limit) / mass) stay finite.
    """
    return 0.5 * -math.log(torch.finfo(dtype).tiny)


def default_chunk_size(n: int, m: int, dtype: torch.dtype, device: torch.device) -> int:
    """Problems per chunk: all of them on CUDA, about `_CHUNK_BYTES_CPU` of kernel per chunk on CPU."""
    if device.type != "cpu":
        return 1 << 62
    per_problem = max(n * m, 1) * torch.finfo(dtype).bits // 8
    return max(256, _CHUNK_BYTES_CPU // per_problem)


def _chunk_plain(K, at, bt, iterations, tol, check_every):
    """Scaling iterations on kernel K [n, m, c] (problem axis last); returns (f, g, iterations).

    A mat-vec is a chain of fused multiply-adds over contiguous [n, c] (or [m, c]) slices,
    vectorised across problems: (K g)_u = sum_v K[u, v] * g[v]. Every buffer and every slice
    view is made once per chunk and updated in place (no allocation inside the loop; the views
    follow the in-place updates). K becomes the plan diag(f) K diag(g).
    """
    n, m, c = K.shape
    f = torch.ones(n, c, dtype=K.dtype, device=K.device)
    g = torch.ones(m, c, dtype=K.dtype, device=K.device)
    Kg = torch.empty_like(f)
    Ktf = torch.empty_like(g)
    K_cols = [K[:, v] for v in range(m)]  # [n, c] each
    K_rows = [K[u] for u in range(n)]  # [m, c] each
    g_v = [g[v] for v in range(m)]
    f_u = [f[u] for u in range(n)]
    rest_v = list(zip(K_cols[1:], g_v[1:]))
    rest_u = list(zip(K_rows[1:], f_u[1:]))
    mul, div = torch.mul, torch.div
    done = 0
    for it in range(iterations):
        mul(K_cols[0], g_v[0], out=Kg)  # Kg = K g
        for Kv, gv in rest_v:
            Kg.addcmul_(Kv, gv)
        if tol > 0 and it > 0 and it % check_every == 0:
            # row marginal of the current plan is f * Kg; columns are exact after a g-update
            if float((f * Kg - at).abs().sum(0).max()) < tol:
                break
        div(at, Kg, out=f)
        mul(K_rows[0], f_u[0], out=Ktf)  # Ktf = K^T f
        for Ku, fu in rest_u:
            Ktf.addcmul_(Ku, fu)
        div(bt, Ktf, out=g)
        done = it + 1
    K.mul_(f.unsqueeze(1)).mul_(g.unsqueeze(0))
    return f, g, done


def _chunk_log(L, at, bt, iterations, tol, check_every):
    """Log-domain iterations on L = (c0 - C)/eps [n, m, c]; returns (log f, log g, iterations).

    u <- log a - LSE_v(L + v),  v <- log b - LSE_u(L + u)  (log-sum-exp over the view axes,
    vectorised across problems). L becomes the plan exp(L + u + v).
    """
    n, m, c = L.shape
    loga, logb = at.log(), bt.log()
    u = torch.zeros(n, c, dtype=L.dtype, device=L.device)
    v = torch.zeros(m, c, dtype=L.dtype, device=L.device)
    tmp = torch.empty(n, m, c, dtype=L.dtype, device=L.device)
    lse_r = torch.empty_like(u)
    lse_c = torch.empty_like(v)
    u_col, v_row = u.unsqueeze(1), v.unsqueeze(0)
    done = 0
    for it in range(iterations):
        torch.logsumexp(torch.add(L, v_row, out=tmp), dim=1, out=lse_r)
        if tol > 0 and it > 0 and it % check_every == 0:
            if float(((u + lse_r).exp() - at).abs().sum(0).max()) < tol:
                break
        torch.sub(loga, lse_r, out=u)
        torch.logsumexp(torch.add(L, u_col, out=tmp), dim=0, out=lse_c)
        torch.sub(logb, lse_c, out=v)
        done = it + 1
    L.add_(u_col).add_(v_row).exp_()
    return u, v, done


def _check(C, a, b, eps, iterations, tol, check_every, domain):
    if C.dim() != 3:
        raise ValueError(f"sinkhorn: cost must be [N, n, m], got shape {tuple(C.shape)}")
    if not C.is_floating_point():
        raise ValueError(f"sinkhorn: cost must be a floating tensor, got {C.dtype}")
    N, n, m = C.shape
    if a.shape != (N, n) or b.shape != (N, m):
        raise ValueError(
            f"sinkhorn: marginals must be a [N, n] = {[N, n]} and b [N, m] = {[N, m]}, got {list(a.shape)} and {list(b.shape)}"
        )
    if not eps > 0:
        raise ValueError(f"sinkhorn: eps must be > 0, got {eps}")
    if iterations < 0 or check_every < 1 or tol < 0:
        raise ValueError(f"sinkhorn: need iterations >= 0, tol >= 0, check_every >= 1; got {iterations}, {tol}, {check_every}")
    if domain not in DOMAINS:
        raise ValueError(f"sinkhorn: domain must be one of {DOMAINS}, got {domain!r}")
    if bool((a < 0).any()) or bool((b < 0).any()):
        raise ValueError("sinkhorn: marginals must be non-negative")


def _solve_chunk(C, a, b, s, e, eps, iterations, tol, check_every, domain, out) -> tuple[int, str]:
    """Solve problems s..e-1 and write their results into the `out` buffers (problem axis last)."""
    plan_t, alpha_t, beta_t, value, transport, errors = out
    n, m = C.shape[1], C.shape[2]
    c = e - s
    dtype, device = C.dtype, C.device
    inf = torch.tensor(math.inf, dtype=dtype, device=device)
    at = a[s:e].t().contiguous()  # [n, c]
    bt = b[s:e].t().contiguous()  # [m, c]
    pos_a, pos_b = at > 0, bt > 0
    cost = torch.empty(n, m, c, dtype=dtype, device=device)  # problem axis last, contiguous
    if C.stride(0) == 1:  # C is already problem-last (a permuted view): contiguous rows
        cost.copy_(C[s:e].permute(1, 2, 0))
    else:  # problem-first: one 2-D transposing copy
        cost.view(n * m, c).copy_(C[s:e].reshape(c, n * m).t())
    empty = None
    if bool(pos_a.all() & pos_b.all()):  # no zero mass
        c_min, c_max = cost.amin(dim=(0, 1)), cost.amax(dim=(0, 1))
    else:  # min / max over the support; off-support entries (any value) set to the minimum
        support = pos_a.unsqueeze(1) & pos_b.unsqueeze(0)  # [n, m, c]
        torch.where(support, cost, inf, out=cost)
        c_min = cost.amin(dim=(0, 1))
        empty = torch.isposinf(c_min)  # [c]: a side without mass, nothing to transport
        if bool(empty.any()):  # solve a harmless uniform zero-cost problem, zeroed below
            c_min = torch.where(empty, torch.zeros_like(c_min), c_min)
            at = torch.where(empty, torch.full_like(at, 1.0 / n), at)
            bt = torch.where(empty, torch.full_like(bt, 1.0 / m), bt)
        else:
            empty = None
        torch.where(support, cost, c_min, out=cost)
        c_max = cost.amax(dim=(0, 1))
    use_log = domain == "log" or (domain == "auto" and float((c_max - c_min).max()) / eps > plain_domain_limit(dtype))
    # the kernel, then the plan, in a contiguous chunk buffer (a slice of the output would put
    # its rows N elements apart: power-of-two strides that thrash the cache's associativity)
    P = torch.add(c_min / eps, cost, alpha=-1.0 / eps)  # (c0 - C) / eps
    if use_log:
        log_f, log_g, done = _chunk_log(P, at, bt, iterations, tol, check_every)
    else:
        f, g, done = _chunk_plain(P.exp_(), at, bt, iterations, tol, check_every)
        log_f, log_g = f.log(), g.log()
    rows, cols = P.sum(1), P.sum(0)  # [n, c], [m, c]
    # eps (<r, log f> + <s, log g>) + c0 sum P, with 0 log 0 = 0
    zero = torch.zeros((), dtype=dtype, device=device)
    dual = torch.where(rows > 0, rows * log_f, zero).sum(0) + torch.where(cols > 0, cols * log_g, zero).sum(0)
    value[s:e] = eps * dual + c_min * rows.sum(0)
    errors[s:e] = (rows - at).abs().sum(0) + (cols - bt).abs().sum(0)
    alpha_t[:, s:e] = eps * log_f + c_min
    beta_t[:, s:e] = eps * log_g
    if empty is not None:
        keep = (~empty).to(dtype)
        P.mul_(keep)
        value[s:e] *= keep
        errors[s:e] = torch.where(empty, (a[s:e].sum(1) + b[s:e].sum(1)).to(dtype), errors[s:e])
        alpha_t[:, s:e] = torch.where(empty, -inf, alpha_t[:, s:e])
        beta_t[:, s:e] = torch.where(empty, -inf, beta_t[:, s:e])
    plan_t[:, :, s:e] = P
    transport[s:e] = torch.mul(P, cost, out=cost).sum(dim=(0, 1))
    return done, "log" if use_log else "plain"


@torch.no_grad()
def _solve(C, a, b, eps, iterations, tol, check_every, domain, chunk_size, workers) -> SinkhornResult:
    N, n, m = C.shape
    dtype, device = C.dtype, C.device
    a = a.to(dtype)
    b = b.to(dtype)
    out = (
        torch.empty(n, m, N, dtype=dtype, device=device),  # plan, problem axis last
        torch.empty(n, N, dtype=dtype, device=device),  # alpha
        torch.empty(m, N, dtype=dtype, device=device),  # beta
        torch.empty(N, dtype=dtype, device=device),  # value
        torch.empty(N, dtype=dtype, device=device),  # transport cost
        torch.empty(N, dtype=dtype, device=device),  # marginal error
    )
    if workers is None:
        workers = torch.get_num_threads() if device.type == "cpu" else 1
    workers = max(1, int(workers))
    chunk = chunk_size or default_chunk_size(n, m, dtype, device)
    if chunk_size is None and device.type == "cpu" and workers > 1:
        # enough chunks to keep every worker busy, none below _MIN_CHUNK problems
        chunk = max(min(chunk, -(-N // workers)), min(_MIN_CHUNK, chunk))
    bounds = [(s, min(s + chunk, N)) for s in range(0, N, chunk)]

    def run(bound):
        return _solve_chunk(C, a, b, bound[0], bound[1], eps, iterations, tol, check_every, domain, out)

    if device.type == "cpu":
        # chunks run on `workers` threads, each with single-threaded kernels: the per-chunk
        # tensors are too small for intra-op parallelism to pay (and on a loaded machine every
        # parallel region waits for its slowest thread); the thread count is restored after
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if workers > 1 and len(bounds) > 1:
                with ThreadPoolExecutor(max_workers=min(workers, len(bounds))) as pool:
                    results = list(pool.map(run, bounds))
            else:
                results = [run(bd) for bd in bounds]
        finally:
            torch.set_num_threads(previous)
    else:
        results = [run(bd) for bd in bounds]
    plan_t, alpha_t, beta_t, value, transport, errors = out
    domains = {d for _, d in results}
    entropy = (transport - value) / eps
    return SinkhornResult(
        plan=plan_t.permute(2, 0, 1),
        value=value,
        transport_cost=transport,
        entropy=entropy,
        potentials=(alpha_t.t(), beta_t.t()),
        iterations=max((d for d, _ in results), default=0),
        marginal_error=float(errors.max()) if N else 0.0,
        domain=domains.pop() if len(domains) == 1 else ("mixed" if domains else "plain"),
    )


class EntropicOTValue(torch.autograd.Function):
    """value = W_eps(C) per problem; backward: dW/dC = P* (envelope theorem), no unrolling.

    forward(C, a, b, eps, options, out) -> value [N]; ``out`` is a list that receives the
    `SinkhornResult` (plan, statistics) of the solve.
    """

    @staticmethod
    def forward(ctx, C, a, b, eps, options, out):
        result = _solve(C.detach(), a, b, eps, **options)
        out.append(result)
        ctx.save_for_backward(result.plan)
        return result.value.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value):
        (plan,) = ctx.saved_tensors
        return grad_value.view(-1, 1, 1) * plan, None, None, None, None, None


def sinkhorn(
    C: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    eps: float = 0.05,
    iterations: int = 1000,
    tol: float = 1e-6,
    check_every: int = 10,
    domain: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
) -> SinkhornResult:
    r"""Solve N entropic OT problems at once (the problem and iteration: Notes).

    Parameters
    ----------
    C : [N, n, m] costs (float32 or float64, any device).
    a, b : [N, n], [N, m] non-negative marginals of equal mass per problem (zeros allowed);
        None means uniform (1/n, 1/m). Treated as constants (no gradient).
    eps : regulariser epsilon > 0.
    iterations : maximum number of Sinkhorn iterations (one f- and one g-update each);
        with ``tol=0`` exactly this many are run (no convergence check).
    tol : stop when the largest L1 row-marginal error ||f * Kg - a||_1 over the chunk's
        problems falls below tol, checked every ``check_every`` iterations (columns are exact
        after each g-update). POT checks the L2 norm; L1 is the stricter.
    domain : "auto" (plain where the cost range / eps allows it, else log), "plain" or "log".
    chunk_size : problems per chunk (default: cache-sized on CPU, all on CUDA).
    workers : CPU threads solving chunks concurrently (default: ``torch.get_num_threads()``);
        during the solve, kernels are single-threaded (``torch.set_num_threads(1)``, restored
        afterwards), as the chunks are far too small for intra-op parallelism to pay.

    Returns
    -------
    `SinkhornResult`; ``result.value`` is differentiable in C with gradient P* when C requires
    grad (envelope theorem), through `EntropicOTValue`.

    Notes
    -----
    **Problem and iteration.** For each problem k = 1..N, with cost :math:`C_k \in \mathbb{R}^{n \times m}`, marginals
    :math:`a_k \in \mathbb{R}_+^n`, :math:`b_k \in \mathbb{R}_+^m` of equal mass and regulariser
    :math:`\varepsilon > 0`, we solve

    .. math::
        W_\varepsilon(C_k) = \min_{P \ge 0,\ P 1 = a_k,\ P^\top 1 = b_k}
            \langle P, C_k \rangle + \varepsilon \sum_{uv} P_{uv} \log P_{uv}

    (POT's ``reg_type="entropy"``: the value equals ``ot.solve_batch(...).value`` up to POT's
    ``+1e-16`` inside its logarithm, and the transport cost :math:`\langle P^*, C\rangle` equals
    ``value_linear`` and ``ot.sinkhorn2``). The minimiser has the form
    :math:`P^* = \mathrm{diag}(f) K \mathrm{diag}(g)` with the Gibbs kernel
    :math:`K = \exp(-(C - c_0)/\varepsilon)`, where :math:`c_0` is the problem's smallest cost on its
    support (a shift that changes the scalings, never the plan). Sinkhorn's algorithm alternates

    .. math::
        f \leftarrow a \oslash (K g), \qquad g \leftarrow b \oslash (K^\top f)

    starting from :math:`g = 1` (Cuturi 2013), exactly like POT's batched solvers, so that with the
    same number of iterations the iterates agree with POT's to rounding. After a g-update the
    column marginals are exact; the row marginal of the current plan is :math:`f \odot K g`.

    **Value without an elementwise logarithm.** Since :math:`\log P_{uv} = \log f_u + \log g_v +
    (c_0 - C_{uv})/\varepsilon`, with row sums r and column sums s of P,

    .. math::
        \langle P, C\rangle + \varepsilon \sum P \log P
          = \varepsilon (\langle r, \log f\rangle + \langle s, \log g\rangle) + c_0 \textstyle\sum P ,

    (with 0 log 0 = 0) which at convergence is the dual value :math:`\langle \alpha, a\rangle +
    \langle \beta, b\rangle`, :math:`\alpha = \varepsilon \log f + c_0`, :math:`\beta = \varepsilon
    \log g`.

    **Gradient (envelope theorem).** :math:`W_\varepsilon` is a minimum over P of a function linear
    in C, and the minimiser is unique (strictly convex objective), so by Danskin's / the envelope
    theorem :math:`\partial W_\varepsilon / \partial C = P^*`. This is exactly the gradient
    `EntropicOTValue` returns: no backpropagation through the iterations, memory O(N n m).
    The gradient is exact at convergence; after a fixed number of iterations it is the gradient at
    the returned plan (the same approximation POT's ``grad="envelope"`` makes). Note that it is
    :math:`W_\varepsilon` - not the transport cost :math:`\langle P^*, C\rangle` alone - whose
    gradient is exactly :math:`P^*`. Marginals are treated as constants (their gradient, the dual
    potentials, is only defined up to a constant on balanced problems); passing marginals that
    require grad is an error.

    **Domains.** *plain*: the scaling iterations above on :math:`K` (two batched mat-vecs per
    iteration, no transcendental function). Safe when :math:`K` neither underflows nor makes the
    scalings overflow: we require the problem's cost range on its support,
    :math:`(\max C - \min C)/\varepsilon`, to be at most half of :math:`-\log` of the smallest
    normal number of the dtype (43.7 in float32, 354 in float64) - e.g. costs in [0, 2] at
    eps >= 0.046 in float32. *log*: the same iterations on the potentials with log-sum-exp
    (Schmitzer 2019, sec. 3.1; POT's ``method="log_sinkhorn"``), valid for any eps, slower on CPU
    (an exp per entry per half-iteration). *auto* (default) picks plain where that bound holds and
    log elsewhere, per chunk of problems.

    **Zero mass.** Entries with :math:`a_u = 0` or :math:`b_v = 0` (padded views) are handled
    exactly: their scalings are 0 (plain) or :math:`-\infty` (log), their plan rows/columns are 0,
    and their cost entries never enter (they may hold any value, even inf or nan). A problem whose
    a or b has zero total mass gets a zero plan, value 0 and zero gradient. Masses are not rescaled:
    if :math:`\sum a \ne \sum b` the final plan matches b, and ``marginal_error`` shows the gap.
    """
    N, n, m = C.shape if C.dim() == 3 else (0, 0, 0)
    if a is None:
        a = torch.full((N, n), 1.0 / max(n, 1), dtype=C.dtype, device=C.device)
    if b is None:
        b = torch.full((N, m), 1.0 / max(m, 1), dtype=C.dtype, device=C.device)
    _check(C, a, b, eps, iterations, tol, check_every, domain)
    if a.requires_grad or b.requires_grad:
        raise ValueError(
            "sinkhorn: marginals a, b are constants here (their gradient, the dual potentials, "
            "is defined only up to a constant on balanced problems); pass a.detach(), b.detach()"
        )
    options = dict(
        iterations=int(iterations),
        tol=float(tol),
        check_every=int(check_every),
        domain=domain,
        chunk_size=chunk_size,
        workers=workers,
    )
    if C.requires_grad and torch.is_grad_enabled():
        out: list[SinkhornResult] = []
        value = EntropicOTValue.apply(C, a, b, float(eps), options, out)
        result = out[0]
        result.value = value
        return result
    return _solve(C, a, b, float(eps), **options)


def entropic_ot_value(C: torch.Tensor, a=None, b=None, eps: float = 0.05, **options) -> torch.Tensor:
    """W_eps per problem [N], differentiable in C with gradient P* (see `sinkhorn`)."""
    value = sinkhorn(C, a, b, eps, **options).value
    assert value is not None  # `sinkhorn` always sets it
    return value
