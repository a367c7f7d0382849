"""Certified-exact top-k search with a low-rank scoring pass and an exact re-score of the candidates.

Learned embeddings are rarely isotropic: a catalog's item vectors often keep almost all of their
energy in a few principal directions (the trained embeddings of the 1M-item synthetic marketplace
keep 97.9% of it in 32 of 256 dimensions, 99.2% in 64). Then the inner product splits into a
cheap part and a small, bounded one, and the catalog can be scanned at rank r instead of d - a d / (r + 1) times
smaller matrix product - while the returned top-k stays the exact fp32 one.

Decomposition. Let U [d, r] hold orthonormal columns (the top-r eigenvectors of the items' second
moment X^T X / N, float64). For a query q and item x,

    q.x = (U^T q).(U^T x) + q_R.x_R,    q_R = q - U U^T q,  x_R = x - U U^T x,
    |q_R.x_R| <= ||q_R|| ||x_R||                                    (Cauchy-Schwarz)

so with p = (U^T q).(U^T x), rho = ||x_R|| (per item) and sigma = ||q_R|| (per query)

    lb = p - sigma rho  <=  q.x  <=  p + sigma rho = ub.

The scan computes ub directly as ONE fp32 matrix product of augmented vectors,
[U^T q, sigma] . [U^T x, rho] (rank r + 1), so the per-item bound costs nothing extra.

Rounding. The projections are computed in fp32 and the identity is kept exact by taking the
residual of the *stored* coefficients (`LowRankCatalog`); sigma and rho are upper bounds rounded
*up* to fp32 (so sigma rho only grows); the fp32 product of r + 1 terms errs by at most
gamma_{r+1} sum |terms| <= 2 gamma_{r+1} ||q|| X (X = max_j ||x_j||; Higham, *Accuracy and
Stability of Numerical Algorithms*, sec. 3.1, gamma_n = n u / (1 - n u), u = 2^-24); the rounding
of the fp32 coefficients, the non-orthogonality eta of the fp32 basis and the fp32 error of X W
add the terms listed in `LowRankCatalog`. All of it is one absolute slack per query,

    A = (2 gamma_{r+1} + 8 u + gamma_d sqrt(r) (1 + eta) + 2 eta (1 + eta) + 1e-12) ||q|| X,

and every item satisfies ub~ + A >= q.x >= ub~ - 2 sigma~ rho~ - A =: lb~ (~: the computed values).

Candidate rule (two steps per query block). (1) The exact reservoir selection of `search` keeps,
per query, the M largest ub~ (M = 4k by default) over the augmented catalog. (2) The k items of
largest ub~ are re-scored exactly; their k-th score L is a lower bound of the k-th largest score
over the catalog (k items reach it). No item with ub~ + A < L - (rounding) can be in the top-k, so
every possible member has ub~ >= thr = L - A - 2^-22 |L| (rounded down to fp32; the 2^-22 |L|
covers the fp32 rounding of the re-scored values and of this very computation). Where the M-th
largest ub~ is below thr, all such items are among the M kept; rows where it is not (the bound too
loose for M) are searched again with 2M. The items with ub~ >= thr are re-scored as
fl32(<q, x> in float64) and the top-k taken in the order (-score, index): the exact top-k over the
whole catalog of the fp32-rounded inner products, ties by lower index, certified by the bound -
the same result as the bf16 path, and equal to an fp32 BLAS search up to BLAS summation order.

When it pays. The scan costs (r + 1) / d of the fp32 one's arithmetic (its time is then mostly
writing and filtering the score blocks) plus the exact re-score of the candidates, whose number
depends on how much of q.x the residual can hide: on the paper-scale trained embeddings ~700 per
query at r = 64 for k = 500 (of 1M items); on isotropic data (random Gaussian vectors) no small r
captures the energy and the fp32 scan is used. `fit_rank` picks the smallest r (a multiple of 16,
at most d / 4) whose residual holds at most `MAX_RESIDUAL_ENERGY` of the second moment; catalogs
with fewer than `MIN_ITEMS` items are scanned in fp32 (the set-up would not pay). Should a row need
a reservoir above `ADMIT_FRACTION` of the catalog (queries unlike the items), the block is searched
by the fp32 path instead: the result is the same, only slower, and `exact_topk`'s info says so.

Memory: the augmented catalog 4 N (r + 1) bytes; per query block a score block and the reservoir
of M entries per row; never Q x N.

References: the bound is the one of certified low-rank / PCA pre-filtering for maximum inner
product search, e.g. R. Guo et al., "Quantization based Fast Inner Product Search" (AISTATS 2016)
for residual bounds; the scan and candidate handling follow `bf16_search` in this package.
"""

from __future__ import annotations

import math

import torch

from .bf16_search import _SENTINEL, _U32, _exact_scores, _gamma, _round_toward_minus_inf, _round_toward_plus_inf
from .search import lexicographic_topk

#: catalogs smaller than this are scanned in fp32 (the fp32 scan is fast and the setup would not pay)
MIN_ITEMS = 65_536
#: largest fraction of the items' second moment the discarded dimensions may hold for `fit_rank`
MAX_RESIDUAL_ENERGY = 0.01
#: a query block falls back to the fp32 scan once a row needs a reservoir above this fraction of the
#: catalog (each kept item costs an exact re-score of ~1 us; the fp32 scan ~4 ns an item)
ADMIT_FRACTION = 1 / 128
#: rows sampled to estimate the second moment (evenly spaced; the bound never depends on it)
SAMPLE_ROWS = 65_536


class TooManyCandidates(RuntimeError):
    """A query block's candidates exceeded the cap: the caller searches it with the fp32 path."""


def principal_basis(items: torch.Tensor, sample_rows: int = SAMPLE_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """(U [d, d] float64 eigenvectors of the sampled second moment, by decreasing eigenvalue;
    cumulative energy fraction [d]). Rows are sampled evenly (deterministic)."""
    n = items.shape[0]
    step = max(1, n // sample_rows)
    x = items[::step].double()
    moment = x.T @ x / max(1, x.shape[0])
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

    Set-up in fp32 (two N x d x r products): W = fp32(U) [d, r], xp = fl(X W), e = X - W xp (the
    residual *of the stored coefficients*: q.x = (W^T q).xp + q.e holds exactly for any xp), and rho
    an upper bound of ||e|| (the computed norm plus the fp32 error of computing e, Higham sec. 3.5).
    With eta >= ||I - W^T W|| (measured, float64) and qp = fl(W^T q), q.e = (q - W qp).e + qp.(W^T e)
    and ||W^T e|| <= gamma_d sqrt(r) (1 + eta) ||x|| + eta ||xp||; that term and the roundings go
    into the per-query slack (`query_side`).
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
        norm_max = 0.0
        for s in range(0, n, chunk):
            x = items[s : s + chunk]
            xp = x @ self.basis32
            e = x - xp @ self.basis32.T
            # fl(xp W^T) errs by gamma_r |xp| |W|^T (norm <= gamma_r sqrt(r)(1+eta) ||xp||), the
            # subtraction and the norm by a few u relative
            rho = (torch.linalg.vector_norm(e, dim=1).double() * (1 + 4 * d * _U32)
                   + _gamma(r) * sqrt_r * torch.linalg.vector_norm(xp, dim=1).double() * (1 + 4 * r * _U32))
            norm_max = max(norm_max, float(torch.linalg.vector_norm(x, dim=1).max()) * (1 + 4 * d * _U32))
            self.augmented[s : s + chunk, :r] = xp
            self.augmented[s : s + chunk, r] = _round_toward_plus_inf(rho)
        if not math.isfinite(norm_max):
            raise ValueError("exact_topk: items contain NaN or infinite values")
        self.norm_max = norm_max
        # per unit of ||q|| X: the scan's fp32 sum (2 gamma_{r+1}), the roundings of qp, xp and of
        # sigma rho (8 u), qp.(W^T e) (gamma_d sqrt(r)(1+eta) + eta (1+eta)), float64 set-up (1e-12)
        self.slack_factor = (2 * _gamma(r + 1) + 8 * _U32 + _gamma(d) * sqrt_r * (1 + 1e-6)
                             + self.eta * (1 + self.eta) * 2 + 1e-12)

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


def lowrank_topk_chunk(q: torch.Tensor, cat: LowRankCatalog, k: int, item_chunk: int, buf: torch.Tensor,
                       stats: dict | None = None, max_candidates: int | None = None, reservoir: int | None = None):
    """Certified top-k for one block of query rows (fp32 [R, d]); see the module docstring.

    Pass 1 keeps, per row, the `reservoir` (default 4k) largest upper bounds ub~ (the exact
    reservoir selection of `search._topk_query_chunk`, run on the augmented rank-(r+1) catalog).
    The exact scores of the k best of them give L (k items have a score >= L), hence the
    admission threshold thr = L - A - 2^-22 |L| on ub~. Where the reservoir's smallest ub~ is below
    thr, every item with ub~ >= thr is in it; other rows are searched again with a reservoir twice
    as large. The items with ub~ >= thr are re-scored exactly and the top-k taken in the order
    (-score, index).

    Raises `TooManyCandidates` when the reservoir a row needs exceeds `max_candidates` (default
    max(16 k, N * `ADMIT_FRACTION`)) - the bound does not prune on these data - so that the caller
    can fall back to the fp32 scan.
    """
    from .search import _topk_query_chunk

    items = cat.items
    n = items.shape[0]
    cap = max(16 * k, int(n * ADMIT_FRACTION)) if max_candidates is None else int(max_candidates)
    size = min(n, 4 * k if reservoir is None else max(k, int(reservoir)))
    aug, _, slack = cat.query_side(q)
    out_s = torch.empty((q.shape[0], k), device=items.device)
    out_i = torch.empty((q.shape[0], k), device=items.device, dtype=torch.int64)
    rows = torch.arange(q.shape[0], device=items.device)
    scored = 0
    while rows.numel():
        if size > cap:
            raise TooManyCandidates(size)
        ub, index = _topk_query_chunk(aug.index_select(0, rows), cat.augmented, size, item_chunk, 16,
                                      max(2 * size, 64), buf)
        sub_q = q.index_select(0, rows)
        exact = _exact_scores(sub_q, items, index[:, :k])  # fl32(exact) of the k best bounds
        threshold = _lower(exact.amin(dim=1).double(), slack.index_select(0, rows))
        complete = (ub[:, -1] < threshold) | (size == n)
        done = torch.nonzero(complete).squeeze(1)
        if done.numel():
            ub_d, index_d, exact_d, thr_d = ub[done], index[done], exact[done], threshold[done]
            extra = ub_d[:, k:] >= thr_d.unsqueeze(1)  # ub~ sorted descending: a prefix per row
            width = int(extra.sum(dim=1).max()) if extra.numel() else 0
            cand_i = index_d[:, k : k + width].masked_fill(~extra[:, :width], _SENTINEL)
            cand_s = _exact_scores(q.index_select(0, rows[done]), items, cand_i)
            scored += done.numel() * k + int(extra.sum())
            top_s, top_i = lexicographic_topk(torch.cat([exact_d, cand_s], 1), torch.cat([index_d[:, :k], cand_i], 1), k)
            out_s[rows[done]], out_i[rows[done]] = top_s, top_i
        rows = rows[~complete]
        size = min(n, 2 * size)
    if stats is not None:
        stats["candidates"] = stats.get("candidates", 0) + scored
        stats["rows"] = stats.get("rows", 0) + q.shape[0]
    return out_s, out_i
