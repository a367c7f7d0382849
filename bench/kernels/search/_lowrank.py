"""Certified-exact top-k search with a low-rank scoring pass and an exact re-score of the candidates.

Learned embeddings are rarely isotropic: most of a catalog's energy often lies in a few principal
directions. The catalog can then be scanned at rank r instead of d - a d / (r + 1) times smaller
matrix product - while the returned top-k stays the exact fp32 one.

Notes
-----
With U [d, r] the top-r eigenvectors of the items' second moment X^T X / N (float64), for a query q
and item x, by Cauchy-Schwarz on the residuals q_R = q - U U^T q, x_R = x - U U^T x,

    lb = p - sigma rho  <=  q.x  <=  p + sigma rho = ub,   p = (U^T q).(U^T x), rho = ||x_R||, sigma = ||q_R||.

The scan computes ub as ONE fp32 product of augmented vectors [U^T q, sigma] . [U^T x, rho].
Every fp32 rounding (Higham, *Accuracy and Stability of Numerical Algorithms*, sec. 3.1,
gamma_n = n u / (1 - n u), u = 2^-24; the terms are listed in `LowRankCatalog`) adds to one
absolute slack per query, with eta the non-orthogonality of the fp32 basis and X = max_j ||x_j||,

    A = (2 gamma_{r+1} + 8 u + gamma_d sqrt(r) (1 + eta) + 2 eta (1 + eta) + 1e-12) ||q|| X,

so every item satisfies ub~ + A >= q.x >= ub~ - 2 sigma~ rho~ - A =: lb~ (~: computed values). If k
items have lb~ >= t, only items with ub~ >= t - A - 2^-22 |t| can be in the top-k; `lowrank_topk_chunk`
keeps that threshold per query row while it scans. The result is the exact top-k of the fp32-rounded
inner products, ties by lower index - the same as the bf16 path, and equal to an fp32 BLAS search up
to BLAS summation order.

`fit_rank` picks the smallest r (a multiple of 16, at most d / 4) whose residual holds at most
`MAX_RESIDUAL_ENERGY` of the second moment; catalogs with fewer than `MIN_ITEMS` items, or with no
low-rank structure, are scanned in fp32. A row that needs more than `ADMIT_FRACTION` of the catalog
as candidates falls back to the fp32 path (same result, slower; `exact_topk`'s info says so).
Memory: the augmented catalog 4 N (r + 1) bytes; per query block a score block and about
max(`LIMIT` k, 1024) candidates per row (16 bytes each); never Q x N. Measurements: docs/perf/index.md.

References
----------
R. Guo et al., "Quantization based Fast Inner Product Search", AISTATS 2016 (residual bounds for
maximum inner product search); the block filter and candidate buffers are those of `_blocks`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._blocks import _SENTINEL, _admit, _Reservoir, _score_block, lexicographic_topk
from ._rounding import _U32, _exact_scores, _gamma, _round_toward_minus_inf, _round_toward_plus_inf

#: catalogs smaller than this are scanned in fp32 (the fp32 scan is fast and the setup would not pay)
MIN_ITEMS = 65_536
#: largest fraction of the items' second moment the discarded dimensions may hold for `fit_rank`
MAX_RESIDUAL_ENERGY = 0.01
#: a query block falls back to the fp32 scan once a row keeps more candidates than this fraction of the
#: catalog (each kept item costs an exact re-score of ~1 us; the fp32 scan ~4 ns an item)
ADMIT_FRACTION = 1 / 128
#: candidates per row (in units of k) that trigger a compaction, which raises the threshold
LIMIT = 4
#: columns per group maximum when filtering a bound block (`_blocks._admit`); 8 was ~6% faster than
#: the fp32 scan's 16 on the paper-scale embeddings (2 workers, interleaved runs), 32 slower
GROUP = 8
#: rows sampled to estimate the second moment (evenly spaced; the bound never depends on it)
SAMPLE_ROWS = 65_536


class TooManyCandidates(RuntimeError):
    """A query block's candidates exceeded the cap: the caller searches it with the fp32 path."""


def principal_basis(items: torch.Tensor, sample_rows: int = SAMPLE_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """(U [d, d] float64 eigenvectors of the sampled second moment, by decreasing eigenvalue;
    cumulative energy fraction [d]). Rows are sampled evenly (deterministic)."""
    n = items.shape[0]
    step = max(1, n // sample_rows)
    x = items[::step].float()
    # an fp32 product (~10x the float64 one): the basis only has to be good, the bound never
    # assumes it exact (its non-orthogonality is measured in `LowRankCatalog`)
    moment = (x.T @ x).double() / max(1, x.shape[0])
    values, vectors = torch.linalg.eigh(moment)
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    total = float(values.sum())
    energy = torch.cumsum(values, 0) / total if total > 0 else torch.ones_like(values)
    return vectors, energy


def fit_rank(energy: torch.Tensor, max_residual: float = MAX_RESIDUAL_ENERGY) -> int | None:
    """Smallest r in {16, 32, ...} <= d / 4 with 1 - energy[r - 1] <= max_residual, else None."""
    d = energy.shape[0]
    for r in range(16, d // 4 + 1, 16):
        if 1.0 - float(energy[r - 1]) <= max_residual:
            return r
    return None


class LowRankCatalog:
    """The augmented rank-r catalog [xp, rho] (fp32) and the constants of the bound.

    Set-up in fp32 (one N x d x r product): W = fp32(U) [d, r], xp = fl(X W) (the stored
    coefficients), e = X - W xp (the residual *of the stored coefficients*: q.x = (W^T q).xp + q.e
    holds exactly for any xp), never formed. With G = W^T W, eta >= ||I - G|| (measured, float64)
    and delta = W^T x - xp (the product's rounding: ||delta|| <= gamma_d sqrt(r) (1 + eta) ||x||,
    Higham sec. 3.5),

        ||e||^2 = ||x||^2 - 2 (W^T x).xp + xp^T G xp = ||x||^2 - ||xp||^2 - 2 delta.xp + xp^T (G - I) xp
               <= ||x||^2 - ||xp||^2 + 2 ||delta|| ||xp|| + eta ||xp||^2,

    evaluated in float64 from fp32 norms with their rounding taken the safe way (||x|| up, the
    subtracted ||xp|| down), gives rho. With qp = fl(W^T q), q.e = (q - W qp).e + qp.(W^T e) and
    ||W^T e|| = ||delta - (G - I) xp|| <= gamma_d sqrt(r) (1 + eta) ||x|| + eta ||xp||; that term
    and the roundings go into the per-query slack (`query_side`).
    """

    def __init__(self, items: torch.Tensor, basis: torch.Tensor, chunk: int = 65536):
        if items.dtype != torch.float32:
            raise ValueError(f"low-rank search needs float32 items, got {items.dtype}")
        if basis.dim() != 2 or basis.shape[0] != items.shape[1] or basis.shape[1] >= items.shape[1]:
            raise ValueError(f"low-rank search: basis must be [d, r] with r < d = {items.shape[1]}, got {tuple(basis.shape)}")
        self.items = items
        n, d = items.shape
        r = basis.shape[1]
        self.rank = r
        self.basis32 = basis.to(device=items.device, dtype=torch.float32).contiguous()
        self.basis = self.basis32.double()
        gram = self.basis.T @ self.basis
        self.eta = float(torch.linalg.matrix_norm(gram - torch.eye(r, dtype=gram.dtype, device=gram.device))) * (1 + 1e-9)
        self.augmented = torch.empty((n, r + 1), dtype=torch.float32, device=items.device)
        sqrt_r = math.sqrt(r) * (1 + self.eta)
        w_np = self.basis32.cpu().numpy()
        x_norm = torch.empty(n, dtype=torch.float32, device=items.device)
        xp_norm = torch.empty(n, dtype=torch.float32, device=items.device)
        for s in range(0, n, chunk):
            x = items[s : s + chunk]
            if x.device.type == "cpu":  # numpy's OpenBLAS beats torch's MKL for this shape on AMD CPUs (docs/perf),
                # written straight into the augmented catalog's columns (no copy of the chunk's xp)
                xp = self.augmented[s : s + chunk, :r]
                np.matmul(x.numpy(), w_np, out=xp.numpy())
            else:
                xp = x @ self.basis32
                self.augmented[s : s + chunk, :r] = xp
            torch.linalg.vector_norm(x, dim=1, out=x_norm[s : s + chunk])
            torch.linalg.vector_norm(xp, dim=1, out=xp_norm[s : s + chunk])
        # fp32 norms err by < 4 n u relative (n terms): ||x|| rounded up, ||xp|| both ways; the
        # float64 bound over all items at once (per chunk, its small temporaries cost more in page
        # faults than in arithmetic)
        x_hi = x_norm.double() * (1 + 4 * d * _U32)
        xp64 = xp_norm.double()
        xp_hi, xp_lo = xp64 * (1 + 4 * r * _U32), xp64 * (1 - 4 * r * _U32)
        rho2 = x_hi**2 - xp_lo**2 + 2 * _gamma(d) * sqrt_r * x_hi * xp_hi + self.eta * xp_hi**2
        self.augmented[:, r] = _round_toward_plus_inf(rho2.clamp_min(0.0).sqrt() * (1 + 1e-12))
        norm_max = float(x_hi.max()) if n else 0.0
        self.rho = self.augmented[:, r].contiguous()  # per-item residual norm bounds, fp32 and float64
        self.rho64 = self.rho.double()
        if not math.isfinite(norm_max):
            raise ValueError("exact_topk: items contain NaN or infinite values")
        self.norm_max = norm_max
        # per unit of ||q|| X: the scan's fp32 sum (2 gamma_{r+1}), the roundings of qp, xp and of
        # sigma rho (8 u), qp.(W^T e) (gamma_d sqrt(r)(1+eta) + eta (1+eta)), float64 set-up (1e-12)
        self.slack_factor = 2 * _gamma(r + 1) + 8 * _U32 + _gamma(d) * sqrt_r * (1 + 1e-6) + self.eta * (1 + self.eta) * 2 + 1e-12

    def query_side(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(augmented queries [R, r+1] fp32 = [qp, sigma], sigma float64 [R], slack A float64 [R])."""
        qp = (q.double() @ self.basis).float()
        sigma = _round_toward_plus_inf(torch.linalg.vector_norm(q.double() - qp.double() @ self.basis.T, dim=1) * (1 + 1e-12))
        aug = torch.cat([qp, sigma.unsqueeze(1)], dim=1).contiguous()
        slack = self.slack_factor * torch.linalg.vector_norm(q.double(), dim=1) * self.norm_max + 1e-30
        return aug, sigma.double(), slack


def _lower(x: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
    """x - by - 2^-22 |x|, rounded down to fp32: a threshold safely below the bound x (float64)."""
    return _round_toward_minus_inf(x - by - 2.0**-22 * x.abs())


def _kth_lower_bound(
    key: torch.Tensor,
    ub: torch.Tensor,
    index: torch.Tensor,
    cat: LowRankCatalog,
    sigma: torch.Tensor,
    slack: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Per row, a t (float64) such that k of the given items have a true score q.x >= t: the
    smallest lb~ = ub~ - 2 sigma~ rho~ - A (float64) of the k entries of largest `key` (an fp32
    estimate of lb~ or ub~ that only chooses them; padding: key = ub~ = -inf, any index). Rows
    with fewer than k real entries get -inf."""
    if ub.shape[1] < k:
        return torch.full((ub.shape[0],), -math.inf, dtype=torch.float64, device=ub.device)
    pos = torch.topk(key, k, dim=1, sorted=False).indices
    chosen = index.gather(1, pos).clamp_max_(cat.rho64.shape[0] - 1)
    rho = cat.rho64.index_select(0, chosen.reshape(-1)).view(chosen.shape)
    return (ub.gather(1, pos).double() - 2.0 * sigma.unsqueeze(1) * rho).amin(dim=1) - slack


def _compact(res, thr: torch.Tensor, cat: LowRankCatalog, sigma: torch.Tensor, slack: torch.Tensor, k: int) -> torch.Tensor:
    """Raise the rows' admission thresholds from their candidates' lower bounds, then drop the
    candidates below them (kept in their order; fill and padding updated). Returns the new thr."""
    width = res.fill_max
    ub, idx, lb32 = res.scores[:, :width], res.index[:, :width], res.second[:, :width]
    thr = torch.maximum(thr, _lower(_kth_lower_bound(lb32, ub, idx, cat, sigma, slack, k), slack))
    res.retain(ub >= thr.unsqueeze(1))
    return thr


def lowrank_topk_chunk(
    q: torch.Tensor,
    cat: LowRankCatalog,
    k: int,
    item_chunk: int,
    buf: torch.Tensor,
    stats: dict | None = None,
    max_candidates: int | None = None,
    reservoir: int | None = None,
):
    """Certified top-k for one block of query rows (fp32 [R, d]); the bound is in the module docstring.

    One scan of the augmented catalog in blocks of `item_chunk` items. Per row, a threshold thr on
    ub~ and the candidates seen so far with ub~ >= thr. thr comes from lower bounds: if k items
    have lb~ >= t, the k-th largest true score is >= t, so no item with ub~ < t - A - 2^-22 |t|
    can be in the top-k. The first block sets thr from its k largest lb~; afterwards an item is
    admitted when ub~ >= thr (group maxima skip most of a block), and whenever a row holds more
    than `reservoir` (default max(`LIMIT` k, 1024)) candidates, thr is raised to the bound given by the
    k-th largest lb~ among them and the candidates below it are dropped; rows whose bound keeps more
    than half of that double it instead of compacting every block. Since thr only rises and each
    value is valid, the candidates left include the whole top-k. At the end the k candidates of
    largest ub~ are re-scored exactly (fl32 of the float64 inner product); their k-th score is again
    a valid t, and the candidates still above its threshold are re-scored and the top-k taken in the
    order (-score, index).

    Raises `TooManyCandidates` when a row keeps more than `max_candidates` (default
    max(16 k, N * `ADMIT_FRACTION`)) after a compaction - the bound does not prune on these data -
    so that the caller can fall back to the fp32 scan.
    """
    items = cat.items
    n = items.shape[0]
    rows_q = q.shape[0]
    cap = max(16 * k, int(n * ADMIT_FRACTION)) if max_candidates is None else int(max_candidates)
    limit = max(LIMIT * k, 1024) if reservoir is None else max(k, int(reservoir))
    aug, sigma, slack = cat.query_side(q)
    sigma32 = sigma.float()
    res = _Reservoir(rows_q, k, limit, items.device, torch.float32, second=True)
    thr = torch.full((rows_q,), -math.inf, dtype=torch.float32, device=items.device)
    first = min(n, max(item_chunk, k))  # the first block holds at least k items
    start = 0
    while start < n:
        w = first if start == 0 else min(item_chunk, n - start)
        block = buf[: rows_q * w].view(rows_q, w) if rows_q * w <= buf.numel() else torch.empty((rows_q, w), device=items.device)
        _score_block(aug, cat.augmented[start : start + w], block)
        if start == 0:
            thr = _lower(
                _kth_lower_bound(block, block, torch.arange(w, device=items.device).expand(rows_q, w), cat, sigma, slack, k),
                slack,
            )
            got = _admit(block, thr, GROUP, False, dense=True)
        else:
            got = _admit(block, thr, GROUP, False)
        if got is not None:
            r_, c_, v_ = got
            if torch.isnan(v_).any():
                raise ValueError("exact_topk: some scores are NaN (the items contain NaN/inf values, or products overflow)")
            c_ += start
            # fp32 estimate of lb~, only to choose which k candidates set the threshold
            res.append(r_, c_, v_, v_ - 2.0 * sigma32.index_select(0, r_) * cat.rho.index_select(0, c_))
            if res.fill_max > limit:
                thr = _compact(res, thr, cat, sigma, slack, k)
                if res.fill_max > cap:
                    raise TooManyCandidates(res.fill_max)
                if res.fill_max > limit // 2:  # the bound keeps many: compact less often
                    limit = 2 * res.fill_max
        start += w
    thr = _compact(res, thr, cat, sigma, slack, k)
    width = res.fill_max
    ub, index = res.scores[:, :width], res.index[:, :width]
    # exact scores of the k largest ub~ first: their k-th, L, is a lower bound of the k-th score,
    # which drops the candidates with ub~ < L - A before the second (usually short) re-score
    first_pos = torch.topk(ub, k, dim=1, sorted=False).indices
    first_i = index.gather(1, first_pos)
    first_s = _exact_scores(q, items, first_i)
    thr = torch.maximum(thr, _lower(first_s.amin(dim=1).double(), slack))
    rest = ub.scatter(1, first_pos, -math.inf)
    keep = rest >= thr.unsqueeze(1)
    more = int(keep.sum(dim=1).max()) if width > k else 0
    rest_ub, rest_pos = torch.topk(rest, more, dim=1)
    rest_i = index.gather(1, rest_pos).masked_fill_(rest_ub < thr.unsqueeze(1), _SENTINEL)
    rest_s = _exact_scores(q, items, rest_i)
    if stats is not None:
        stats["candidates"] = stats.get("candidates", 0) + rows_q * k + int((rest_i != _SENTINEL).sum())
        stats["rows"] = stats.get("rows", 0) + rows_q
    return lexicographic_topk(torch.cat([first_s, rest_s], 1), torch.cat([first_i, rest_i], 1), k)
