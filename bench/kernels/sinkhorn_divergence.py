"""Debiased Sinkhorn divergences between point clouds, several problems in one solve.

`sinkhorn_divergences` gives, for each pair of clouds, what geomloss's `SamplesLoss("sinkhorn", p,
blur, scaling, debias, backend="tensorized")` gives (geomloss 0.3): oat's 1-Wasserstein term
(docs/method.md#oat). All problems share one float64 annealing loop; the value is geomloss's to
float32 round-off and the gradient is computed in closed form. The definition, the algorithm and
the one deliberate difference from geomloss are in the function's Notes. Timings against
geomloss: docs/perf/index.md.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
import torch

DOMAINS = ("auto", "log")
# log weight of an empty (padding) point, as geomloss's `log_weights` (its exp is exactly 0)
_EMPTY_LOG_WEIGHT = -100000.0
# a float64 row sum below this has lost the terms within 1e-16 of its largest one: use the log domain
_SMALLEST_SUM = 1e-290


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i|^2 - 2 x_i.y_j + |y_j|^2 [N, M]: geomloss's float32 arithmetic for its ground costs."""
    return (x * x).sum(-1).unsqueeze(-1) - 2 * (x @ y.t()) + (y * y).sum(-1).unsqueeze(-2)


class _Costs:
    """The float32 cost matrices C_xy, C_yx (= C_xy^T), C_xx, C_yy of one problem, computed once
    without gradient (the annealing reads them, the last update differentiates through them by
    hand); for p = 1 also where the distance was not clamped (where it passes a gradient)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, p: int, debias: bool, self_costs: dict):
        """x, y: the pair's clouds (detached here). `self_costs`: {id(cloud): (C, kept)} of the
        clouds whose self-cost an earlier pair of the same solve computed; a cloud given in several
        pairs (oat's anchor in both of its problems) is looked up there, not recomputed, and this
        pair's own self-costs are added to it."""
        self.p = p
        self.cost, self.kept = {}, {}
        for key, u, v in [("xy", x, y)] + ([("xx", x, x), ("yy", y, y)] if debias else []):
            shared = u is v
            if shared and id(u) in self_costs:
                self.cost[key], self.kept[key] = self_costs[id(u)]
                continue
            squared = _squared_distances(u.detach(), v.detach())
            if p == 1:  # |x - y| = sqrt(max(squared, 1e-8)), geomloss's `distances`
                self.kept[key] = squared >= 1e-8
                self.cost[key] = torch.sqrt(torch.clamp_min(squared, 1e-8))
            else:  # |x - y|^2 / 2
                self.kept[key] = None
                self.cost[key] = squared / 2
            if shared:
                self_costs[id(u)] = self.cost[key], self.kept[key]
        # the distance is symmetric: C(y, x) is C(x, y)^T (geomloss computes y x^T again)
        self.cost["yx"] = self.cost["xy"].t().contiguous()
        self.kept["yx"] = self.kept["xy"].t() if p == 1 else None

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.cost[key]

    def gradient_weights(self, key: str, grad_cost: torch.Tensor) -> torch.Tensor:
        """g with d/du_i sum_j grad_cost_ij C(u_i, v_j) = 2 u_i sum_j g_ij - 2 (g v)_i: autograd's
        arithmetic through geomloss's cost (p = 1: grad / (2 C) where unclamped, else 0; p = 2:
        grad / 2), except on the diagonal of C_xx and C_yy, whose exact gradient is 0 (u_i - u_i).

        There geomloss's float32 graph passes round-off: |x_i|^2 - 2 x_i.x_i + |x_i|^2 comes out
        at ~1e-7 rather than 0, above the 1e-8 clamp, so C_ii ~ 3e-4 and the two halves of the zero
        gradient, 2 x_i g_ii and 2 g_ii x_i with g_ii ~ 1 / C_ii, cancel only to their round-off:
        ~1e-3 of the gradient's largest entry at blur = 0.05 against geomloss in float64.
        """
        if self.p == 1:
            g = torch.where(self.kept[key], grad_cost / (2 * self.cost[key]), 0.0)
        else:
            g = grad_cost / 2
        if key in ("xx", "yy"):
            g.fill_diagonal_(0.0)
        return g


class _LastUpdate(torch.autograd.Function):
    """The last, differentiable update at eps = blur^p from the detached potentials, and the
    divergence it gives, with the gradient in closed form.

    Each potential is a softmin f_i = -eps log sum_j exp(h_j - C_ij / eps) (h detached), so
    d f_i / d C_ij = P_ij = exp(h_j - C_ij / eps + f_i / eps), the row-softmax that autograd's
    log-sum-exp backward computes, and

        dS / dC_xy = a_i P^ba_ij,  dS / dC_yx = b_j P^ab_ji,  dS / dC_xx = -a_i P^aa_ik,  dS / dC_yy = -b_j P^bb_jl.

    Through C(x_i, y_j) (the second argument detached, as geomloss) the gradient in x_i is
    2 x_i sum_j g_ij - 2 (g y)_i with g from `_Costs.gradient_weights`, and x's two terms (C_xy
    and C_xx) go through one product [g_xy | g_xx] [y; x]. The same arithmetic as autograd through
    geomloss's graph up to the order of float32 sums, in one exponential per entry instead of two
    and without the graph's temporaries.
    """

    @staticmethod
    def forward(ctx, x, y, costs: _Costs, a, b, pots, eps: float, debias: bool):
        a_log, b_log = a.log(), b.log()
        # (cost key, h, row weights, sign of the term in S, the cloud the rows belong to)
        slots = [("xy", b_log + pots["g_ab"] / eps, a, 1.0, 0), ("yx", a_log + pots["f_ba"] / eps, b, 1.0, 1)]
        if debias:
            slots += [("xx", a_log + pots["f_aa"] / eps, a, -1.0, 0), ("yy", b_log + pots["g_bb"] / eps, b, -1.0, 1)]
        exponents, potentials = [], []
        for key, h, *_ in slots:
            t = h.unsqueeze(0) - costs[key] / eps
            lse = t.logsumexp(1)
            exponents.append((t, lse))
            potentials.append(-eps * lse)
        if debias:
            f_ba, g_ab, f_aa, g_bb = potentials
            value = (a * (f_ba - f_aa)).sum() + (b * (g_ab - g_bb)).sum()
        else:
            f_ba, g_ab = potentials
            value = (a * f_ba).sum() + (b * g_ab).sum()
        ctx.slots, ctx.exponents, ctx.costs = slots, exponents, costs
        ctx.save_for_backward(x, y)
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        clouds = (x, y)
        weights, partners = ([], []), ([], [])
        for (key, _, w, sign, side), (t, lse) in zip(ctx.slots, ctx.exponents):
            if not ctx.needs_input_grad[side]:
                continue
            grad_cost = (grad * sign * w).unsqueeze(1) * torch.exp(t - lse.unsqueeze(1))
            weights[side].append(ctx.costs.gradient_weights(key, grad_cost))
            # the columns of C_xy and C_yy are y's points, those of C_yx and C_xx x's
            partners[side].append(y if key in ("xy", "yy") else x)
        grads = []
        for side in (0, 1):
            if not weights[side]:
                grads.append(None)
                continue
            g = torch.cat(weights[side], dim=1)
            grads.append(2 * clouds[side] * g.sum(-1, keepdim=True) - 2 * (g @ torch.cat(partners[side])))
        return grads[0], grads[1], None, None, None, None, None, None


def diameter(x: torch.Tensor, y: torch.Tensor) -> float:
    """Length of the diagonal of the bounding box of both clouds [N, D], [M, D]: geomloss's upper
    bound on the largest distance, the first temperature of the annealing."""
    if x.device.type == "cpu" and not (x.requires_grad or y.requires_grad):
        # numpy's column minima and maxima (exact, so the same values): ~4x torch's dim-0 reductions here
        xs, ys = x.numpy(), y.numpy()
        mins = torch.from_numpy(np.minimum(xs.min(axis=0), ys.min(axis=0)))
        maxs = torch.from_numpy(np.maximum(xs.max(axis=0), ys.max(axis=0)))
    else:
        mins = torch.stack((x.min(dim=0)[0], y.min(dim=0)[0])).min(dim=0)[0]
        maxs = torch.stack((x.max(dim=0)[0], y.max(dim=0)[0])).max(dim=0)[0]
    return (maxs - mins).norm().item()


def epsilon_schedule(p: int, diameter: float, blur: float, scaling: float) -> list[float]:
    """Temperatures of the annealing: diameter^p, then divided by scaling^-p each step down to blur^p
    (Feydy 2020, sec. 3.3.3), exactly as geomloss (numpy float64 arithmetic)."""
    return [diameter**p] + [np.exp(e) for e in np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))] + [blur**p]


def sinkhorn_divergences(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    p: int = 1,
    blur: float = 0.05,
    scaling: float = 0.5,
    debias: bool = True,
    domain: str = "auto",
) -> torch.Tensor:
    """Sinkhorn divergences S_{blur^p}(x, y) [len(pairs)] for uniform clouds (x [N, D], y [M, D]).

    Equal to `[geomloss.SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=debias,
    backend="tensorized")(x, y) for x, y in pairs]` in value and gradient (w.r.t. both clouds of
    every pair) up to round-off, computed with one batched annealing loop for all pairs.
    debias=False gives the entropic cost OT_eps(x, y). domain="log" runs the iterations in the
    float64 log domain instead of as scalings (the same values; slower).

    Notes
    -----
    For uniform measures alpha = (1/N) sum_i delta_{x_i}, beta = (1/M) sum_j delta_{y_j} in R^D and the
    ground cost C(x, y) = |x - y|^p / p (p = 1: the Euclidean distance, p = 2: half its square)::

        S_eps(alpha, beta) = OT_eps(alpha, beta) - 1/2 OT_eps(alpha, alpha) - 1/2 OT_eps(beta, beta),
        OT_eps(alpha, beta) = min_{pi in Pi(alpha, beta)} <pi, C> + eps KL(pi | alpha (x) beta),

    with eps = blur^p; for p = 1 it approximates W_1 as blur -> 0. At the dual optimum
    OT_eps(alpha, beta) = <alpha, f> + <beta, g>, so S_eps = <alpha, f_ba - f_aa> + <beta, g_ab - g_bb>,
    each potential a fixed point of the soft C-transform::

        softmin_eps(C, h)_i = -eps log sum_j exp(h_j - C_ij / eps),
        f_ba = softmin(C_xy, log beta + g_ab / eps),   g_ab = softmin(C_yx, log alpha + f_ba / eps),
        f_aa = softmin(C_xx, log alpha + f_aa / eps),  g_bb = softmin(C_yy, log beta + g_bb / eps).

    As geomloss (`_legacy/sinkhorn_samples.py`, `_legacy/sinkhorn_divergence.py`; Feydy 2020,
    Algorithm 3.5): (1) epsilon-scaling, each problem's own schedule from its own diameter
    d = |max - min| of both clouds: eps_0 = d^p, then exp(e) for e in arange(p log d, p log blur,
    p log scaling), then blur^p (`epsilon_schedule`); (2) initial potentials softmin at eps_0 with
    h = log weights, then one symmetric update f <- (f + softmin(...)) / 2 of all four potentials per
    eps; (3) a last, differentiable update at blur^p on cost matrices with the second cloud detached
    (C_xy = C(x, y.detach()), ...), from the detached potentials: by the envelope theorem the gradient
    of S needs no backpropagation through the iterations.

    Step 2 differs only in round-off: the problems are padded to one size (padding weight 0, log
    weight -1e5 as geomloss) and solved together in float64 as scalings,
    softmin(C, h)_i = -eps (log sum_j K_ij exp(h_j - max h) + max h) with K = exp(-C / eps) (a
    matrix-vector product instead of a log-sum-exp per entry); a problem whose schedule is shorter
    stops updating. If a sum underflows (cost ranges / eps beyond ~600) the iterations are redone in
    the float64 log domain. Step 3 uses geomloss's float32 cost matrices (C_yx is C_xy^T; a cloud
    given in several pairs, as oat's anchor, has its self-cost computed once) and float32 softmin,
    with the gradient in closed form (`_LastUpdate`).

    One difference is deliberate: on the diagonals of C_xx and C_yy the exact gradient is 0
    (x_i - x_i), but geomloss's float32 graph passes round-off there (|x_i|^2 - 2 x_i.x_i + |x_i|^2
    comes out ~1e-7, above the 1e-8 clamp, so C_ii ~ 3e-4 and the two halves of a zero gradient, each
    ~1 / C_ii, cancel only to their round-off); those terms are left out. Values equal geomloss's
    float32 result to ~1e-7 relative; gradients are ~50x closer to geomloss in float64 than its own
    float32 gradient is (~3e-5 against ~1.6e-3 of the largest entry at blur = 0.05;
    tests/bench/kernels/test_sinkhorn_divergence.py).

    References
    ----------
    Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn Divergences",
    AISTATS 2019. Feydy, "Geometric data analysis, beyond convolutions", PhD thesis, 2020.
    """
    if p not in (1, 2):
        raise ValueError(f"Sinkhorn divergence: p must be 1 or 2, got {p}")
    if blur <= 0:
        raise ValueError(f"Sinkhorn divergence: blur must be positive, got {blur}")
    if not 0.0 < scaling < 1.0:
        raise ValueError(f"Sinkhorn divergence: scaling must be in (0, 1), got {scaling}")
    if domain not in DOMAINS:
        raise ValueError(f"Sinkhorn divergence: domain must be one of {DOMAINS}, got {domain!r}")
    if not pairs:
        raise ValueError("Sinkhorn divergence: no pairs of point clouds given")
    for k, (x, y) in enumerate(pairs):
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) == 0 or len(y) == 0:
            raise ValueError(
                f"Sinkhorn divergence: pair {k} must be two non-empty [N, D], [M, D] clouds, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )

    # float32 cost matrices exactly as geomloss (one problem's C_xy, C_yx, C_xx, C_yy), no graph
    problems = []
    self_costs: dict = {}  # id(cloud) -> its self-cost, for a cloud given in several pairs
    for x, y in pairs:
        with torch.no_grad():
            costs = _Costs(x, y, p, debias, self_costs)
        a = torch.ones(len(x)).type_as(x) / len(x)
        b = torch.ones(len(y)).type_as(y) / len(y)
        schedule = epsilon_schedule(p, diameter(x.detach(), y.detach()), blur, scaling)
        problems.append((costs, a, b, schedule))

    with torch.no_grad():
        potentials = _annealing(problems, debias, domain)

    eps = blur**p  # the last temperature of every schedule
    return torch.stack(
        [
            _LastUpdate.apply(x, y, costs, a, b, pots, eps, debias)
            for (x, y), (costs, a, b, _), pots in zip(pairs, problems, potentials)
        ]
    )


class _Workspace:
    """The two float64 [P, S, L, L] buffers of the annealing (costs, kernel), kept between calls.

    A fresh 4 MB tensor per call (two problems of 256 points) costs ~1000 page faults on CPU,
    several ms per training step: the heap returns such blocks to the system between steps. The
    largest pair asked for so far is kept (16 L^2 P S bytes), a call gets views of its first
    P S L^2 entries, and one solve at a time holds them (the lock); their contents never outlive a
    call.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.key, self.buffers = None, None

    def get(self, shape, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        # kept by capacity, not by shape: oat's problems change size with every batch (the items
        # that have the modality), and a buffer per size was a fresh 4 MB pair at almost every step
        numel = math.prod(shape)
        key = (dtype, torch.device(device))
        if self.key != key or self.buffers[0].numel() < numel:
            self.key, self.buffers = key, tuple(torch.empty(numel, dtype=dtype, device=device) for _ in range(2))
        return tuple(buffer[:numel].view(shape) for buffer in self.buffers)


_WORKSPACE = _Workspace()


def _annealing(problems, debias: bool, domain: str) -> list[dict[str, torch.Tensor]]:
    with _WORKSPACE.lock:
        return _annealing_in(problems, debias, domain)


def _annealing_in(problems, debias: bool, domain: str) -> list[dict[str, torch.Tensor]]:
    """The detached potentials after each problem's epsilon-scaling loop (float32, unpadded).

    All problems padded to one size L and stacked as [P, S, L, L] (S = 4 slots: C_xy, C_yx, C_xx, C_yy,
    or 2 without debiasing), float64. Slot s is updated from the potential `source[s]` of the
    slot its softmin reads (f_ba reads g_ab, g_ab reads f_ba, f_aa and g_bb read themselves).
    """
    names = ("f_ba", "g_ab", "f_aa", "g_bb") if debias else ("f_ba", "g_ab")
    keys = ("xy", "yx", "xx", "yy")[: len(names)]
    source = [1, 0, 2, 3][: len(names)]
    f64 = torch.float64
    device = problems[0][0]["xy"].device
    sizes = [(len(a), len(b)) for _, a, b, _ in problems]
    size = max(max(n, m) for n, m in sizes)
    count, slots = len(problems), len(names)
    # the transposed costs C^T (see `_scaling_loop`), written straight into one float64 buffer
    # (large temporaries cost page faults on CPU); padding entries are 0 (a finite kernel). The
    # distance is symmetric, so C_xy^T is C_yx (and C_xx^T is C_xx) up to float32 round-off of the
    # distances: a contiguous copy of the partner's matrix instead of a strided transposed copy
    # (~5x slower at 256 x 256). Only the detached annealing sees the difference, in round-off.
    partner = {"xy": "yx", "yx": "xy", "xx": "xx", "yy": "yy"}
    padded = any(n != size or m != size for n, m in sizes)
    cost_t, kernel_t = _WORKSPACE.get((count, slots, size, size), f64, device)
    if padded:
        cost_t.zero_()
    # log weights of the points each slot's softmin sums over (its columns), and which rows are points
    log_w = torch.full((count, slots, size), _EMPTY_LOG_WEIGHT, dtype=f64, device=device)
    rows = torch.zeros(count, slots, size, dtype=torch.bool, device=device)
    for k, (costs, a, b, _) in enumerate(problems):
        n, m = sizes[k]
        for s, key in enumerate(keys):
            c = costs[partner[key]]  # C_key^T [columns, rows]
            cost_t[k, s, : c.shape[0], : c.shape[1]].copy_(c)
        log_a, log_b = a.log(), b.log()
        column_log_w = (log_b, log_a, log_a, log_b)
        row_count = (n, m, n, m)
        for s in range(slots):
            log_w[k, s, : len(column_log_w[s])] = column_log_w[s]
            rows[k, s, : row_count[s]] = True
    schedules = [schedule for *_, schedule in problems]
    length = max(len(s) for s in schedules)
    # a finished problem keeps its last temperature (and no longer updates)
    eps_table = torch.tensor([s + [s[-1]] * (length - len(s)) for s in schedules], dtype=f64, device=device)
    active = torch.tensor([[i < len(s) for i in range(length)] for s in schedules], device=device)
    first = eps_table[:, 0]

    solve = _scaling_loop if domain == "auto" else _log_loop
    pot = solve(cost_t, kernel_t, log_w, rows, source, first, eps_table, active)
    if pot is None:  # a sum underflowed: the same iterations in the log domain
        pot = _log_loop(cost_t, kernel_t, log_w, rows, source, first, eps_table, active)
    out = []
    for k, (costs, a, b, _) in enumerate(problems):
        n, m = len(a), len(b)
        lengths = (n, m, n, m)
        dtype = costs["xy"].dtype
        out.append({name: pot[k, s, : lengths[s]].to(dtype) for s, name in enumerate(names)})
    return out


def _scaling_loop(cost_t, kernel_t, log_w, rows, source, first, eps_table, active):
    """Potentials [P, S, L] by scalings: softmin = -eps (log(K e) + max h), K = exp(-C / eps),
    e = exp(h - max h); None if a row sum of a point underflows (then the log domain is needed)."""
    smallest = torch.full((), math.inf, dtype=cost_t.dtype, device=cost_t.device)
    # K e as (row vector) @ K^T, the fast batched mat-vec on CPU (about 5x the column form)
    # kernel_t: a buffer of cost_t's shape, updated in place

    # without padding every row is a point: the masks below are identities and are skipped
    padded = not bool(rows.all())

    def softmin(eps, h):
        top = h.amax(-1, keepdim=True)
        sums = torch.matmul(torch.exp(h - top).unsqueeze(-2), kernel_t).squeeze(-2)
        nonlocal smallest
        if not padded:
            smallest = torch.minimum(smallest, sums.amin())
            return -eps * (torch.log(sums) + top)
        smallest = torch.minimum(smallest, torch.where(rows, sums, math.inf).amin())
        return torch.where(rows, -eps * (torch.log(sums) + top), 0.0)

    def kernel_at(eps):
        torch.mul(cost_t, (-1.0 / eps).view(-1, 1, 1, 1), out=kernel_t)
        kernel_t.exp_()

    # consecutive temperatures of a schedule are equal (the first two) or in the ratio scaling^-p
    # (2 for geomloss's default p = 1, scaling = 0.5), except at its last one: there the kernel is
    # reused or squared, exp(-C / (eps / 2)) = exp(-C / eps)^2, instead of recomputed - a
    # multiplication instead of an exponential per entry, equal to ~1e-14 relative after the few
    # squarings of a schedule
    ratios = torch.cat([eps_table[:, :1] / first.unsqueeze(1), eps_table[:, :-1] / eps_table[:, 1:]], dim=1)
    same = ((ratios - 1.0).abs() < 1e-12).all(0).tolist()
    halved = ((ratios - 2.0).abs() < 1e-12).all(0).tolist()
    everyone = active.all(0).tolist()  # the steps at which no schedule has ended
    source = torch.tensor(source, device=cost_t.device)
    kernel_at(first)
    pot = softmin(first.view(-1, 1, 1), log_w)
    for i in range(eps_table.shape[1]):
        eps = eps_table[:, i].view(-1, 1, 1)
        if halved[i]:
            kernel_t.mul_(kernel_t)
        elif not same[i]:
            kernel_at(eps_table[:, i])
        update = softmin(eps, log_w + pot.index_select(1, source) / eps)
        if everyone[i]:
            pot = 0.5 * (pot + update)
        else:
            pot = torch.where(active[:, i].view(-1, 1, 1), 0.5 * (pot + update), pot)
    if not bool(smallest > _SMALLEST_SUM):
        return None
    return pot


def _log_loop(cost_t, kernel_t, log_w, rows, source, first, eps_table, active):
    """Potentials [P, S, L] by float64 log-sum-exp (geomloss's arithmetic, batched and padded);
    kernel_t (the scaling loop's buffer) is not used."""

    def softmin(eps, h):  # the sum runs over the rows of C^T
        value = -eps * (h.unsqueeze(-1) - cost_t / eps.unsqueeze(-1)).logsumexp(-2)
        return torch.where(rows, value, 0.0)

    eps = first.view(-1, 1, 1)
    pot = softmin(eps, log_w)
    for i in range(eps_table.shape[1]):
        eps = eps_table[:, i].view(-1, 1, 1)
        update = softmin(eps, log_w + pot[:, source] / eps)
        pot = torch.where(active[:, i].view(-1, 1, 1), 0.5 * (pot + update), pot)
    return pot
