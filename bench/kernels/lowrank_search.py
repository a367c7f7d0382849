"""Certified-exact top-k search with a low-rank scoring pass and an exact re-score of the candidates.

Learned embeddings are rarely isotropic: a catalog's item vectors often keep almost all of their
energy in a few principal directions (the trained embeddings of the 1M-item synthetic marketplace
keep 97.9% of it in 32 of 256 dimensions). Then the inner product splits into a cheap part and a
small, bounded one, and the catalog can be scanned at rank r instead of d - a d / (r + 1) times
smaller matrix product - while the returned top-k stays the exact fp32 one.

Decomposition. Let U [d, r] hold orthonormal columns (the top-r eigenvectors of the items' second
moment X^T X / N, float64). For a query q and item x,

    q.x = (U^T q).(U^T x) + q_R.x_R,    q_R = q - U U^T q,  x_R = x - U U^T x,
    |q_R.x_R| <= ||q_R|| ||x_R||                                    (Cauchy-Schwarz)

so with p = (U^T q).(U^T x), rho = ||x_R|| (per item) and sigma = ||q_R|| (per query)

    lb = p - sigma rho  <=  q.x  <=  p + sigma rho = ub.

The scan computes ub directly as ONE fp32 matrix product of augmented vectors,
[U^T q, sigma] . [U^T x, rho] (rank r + 1), so the per-item bound costs nothing extra; lb of the few
admitted candidates is ub - 2 sigma rho.

Rounding. The projections are computed in fp32 and the identity is kept exact by taking the
residual of the *stored* coefficients (`LowRankCatalog`); sigma and rho are upper bounds rounded
*up* to fp32 (so sigma rho only grows); the fp32 product of r + 1 terms errs by at most
gamma_{r+1} sum |terms| <= 2 gamma_{r+1} ||q|| X (X = max_j ||x_j||; Higham, *Accuracy and
Stability of Numerical Algorithms*, sec. 3.1, gamma_n = n u / (1 - n u), u = 2^-24); the rounding
of the fp32 coefficients, the non-orthogonality eta of the fp32 basis and the fp32 error of X W
add the terms listed in `LowRankCatalog`. All of it is one absolute slack per query,

    A = (2 gamma_{r+1} + 8 u + gamma_d sqrt(r) (1 + eta) + 2 eta (1 + eta) + 1e-12) ||q|| X,

and every item satisfies ub~ + A >= q.x >= ub~ - 2 sigma~ rho~ - A =: lb~ (~: the computed values).

Candidate rule. If L is the k-th largest lb~ known, k items have q.x >= L, so the k-th largest exact
score is >= L and no item with ub~ + A < L - (rounding of the re-score) can be in the top-k. The
scan admits an item when ub~ >= thr(L) = L - 2^-22 |L| - A (the 2^-22 |L| covers the fp32
rounding of the re-scored values and of this very computation), rounded down to fp32. L starts
at the k-th largest lb~ of the first block and only rises as candidates arrive (candidates are
pruned to the new threshold, as in `bf16_search`). The candidates are re-scored as
fl32(<q, x> in float64) and the top-k taken in the order (-score, index): the exact top-k over the
whole catalog of the fp32-rounded inner products, ties by lower index, certified by the bound -
the same result as the bf16 path, and equal to an fp32 BLAS search up to BLAS summation order.

When it pays. The scan costs (r + 1) / d of the fp32 one plus the re-score of the candidates,
whose number depends on how much of q.x the residual can hide: on the paper-scale trained
embeddings ~800 per query at r = 32 for k = 500 (of 1M items); on isotropic data (random
Gaussian vectors) no small r captures the energy and the fp32 scan is used. `fit_rank` picks the
smallest r (a multiple of 8, at most d / 4) whose residual holds at most `MAX_RESIDUAL_ENERGY` of
the second moment; catalogs with fewer than `MIN_ITEMS` items are scanned in fp32 (the setup would
not pay). Should the candidates of a query block still exceed `max_candidates` per row (a catalog
whose queries look unlike its items), the block is searched by the fp32 path instead: the result
is the same, only slower, and the stats say so.

Memory: the augmented catalog 4 N (r + 1) bytes and the residual norms 8 N bytes (float64); per
query block a score block and a candidate buffer of a few k entries per row; never Q x N.

References: the bound is the one of certified low-rank / PCA pre-filtering for maximum inner
product search, e.g. R. Guo et al., "Quantization based Fast Inner Product Search" (AISTATS 2016)
for residual bounds; the scan and candidate handling follow `bf16_search` in this package.
"""

from __future__ import annotations

import math

import torch

from .bf16_search import _SENTINEL, _U32, _Candidates, _gamma, _rescore_topk, _round_toward_minus_inf

#: catalogs smaller than this are scanned in fp32 (the fp32 scan is fast and the setup would not pay)
MIN_ITEMS = 65_536
#: largest fraction of the items' second moment the discarded dimensions may hold for `fit_rank`
MAX_RESIDUAL_ENERGY = 0.03
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
    """Smallest r in {8, 16, ...} <= d / 4 with 1 - energy[r - 1] <= max_residual, else None."""
    d = energy.shape[0]
    for r in range(8, d // 4 + 1, 8):
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
            self.augmented[s : s + chunk, r] = _round_up(rho)
        if not math.isfinite(norm_max):
            raise ValueError("exact_topk: items contain NaN or infinite values")
        self.residual = self.augmented[:, r].double()
        self.norm_max = norm_max
        # per unit of ||q|| X: the scan's fp32 sum (2 gamma_{r+1}), the roundings of qp, xp and of
        # sigma rho (8 u), qp.(W^T e) (gamma_d sqrt(r)(1+eta) + eta (1+eta)), float64 set-up (1e-12)
        self.slack_factor = (2 * _gamma(r + 1) + 8 * _U32 + _gamma(d) * sqrt_r * (1 + 1e-6)
                             + self.eta * (1 + self.eta) * 2 + 1e-12)

    @classmethod
    def fit(cls, items: torch.Tensor, max_residual: float = MAX_RESIDUAL_ENERGY) -> "LowRankCatalog | None":
        """The catalog at `fit_rank` of its principal energy, or None where no small rank qualifies."""
        basis, energy = principal_basis(items)
        r = fit_rank(energy, max_residual)
        return None if r is None else cls(items, basis[:, :r])

    def query_side(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(augmented queries [R, r+1] fp32 = [qp, sigma], sigma float64 [R], slack A float64 [R])."""
        qp = (q.double() @ self.basis).float()
        sigma = _round_up(torch.linalg.vector_norm(q.double() - qp.double() @ self.basis.T, dim=1) * (1 + 1e-12))
        aug = torch.cat([qp, sigma.unsqueeze(1)], dim=1).contiguous()
        slack = self.slack_factor * torch.linalg.vector_norm(q.double(), dim=1) * self.norm_max + 1e-30
        return aug, sigma.double(), slack


def _round_up(x: torch.Tensor) -> torch.Tensor:
    """float64 -> float32, rounded towards +inf (non-negative inputs)."""
    out = x.float()
    return torch.where(out.double() < x, torch.nextafter(out, torch.full_like(out, math.inf)), out)


def admission_threshold(kth_lower: torch.Tensor, slack: torch.Tensor) -> torch.Tensor:
    """thr(L) = L - 2^-22 |L| - A, rounded down to fp32 (-inf where L is -inf); see the module doc."""
    thr = kth_lower - 2.0**-22 * kth_lower.abs() - slack
    thr = torch.where(torch.isinf(kth_lower), kth_lower, thr)
    return _round_toward_minus_inf(thr)


class _LowRankCandidates(_Candidates):
    """`bf16_search`'s candidate buffers, with the threshold from the k-th largest *lower bound*."""

    def __init__(self, rows: int, k: int, sigma: torch.Tensor, slack: torch.Tensor, residual: torch.Tensor,
                 device: torch.device, max_candidates: int):
        super().__init__(rows, k, slack, device)
        self.sigma, self.residual, self.max_candidates = sigma, residual, max_candidates

    def lower_bounds(self, ub: torch.Tensor, index: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """lb~ = ub~ - 2 sigma rho - A (float64; -inf at padding)."""
        sigma = self.sigma if rows is None else self.sigma.index_select(0, rows)
        slack = self.a if rows is None else self.a.index_select(0, rows)
        pad = index == _SENTINEL
        rho = self.residual.index_select(0, index.masked_fill(pad, 0).reshape(-1)).view(index.shape)
        lb = ub.double() - 2.0 * sigma.unsqueeze(1) * rho - slack.unsqueeze(1)
        return lb.masked_fill(pad, -math.inf)

    def raise_from_lower(self, kth_lower: torch.Tensor) -> None:
        self.threshold = torch.maximum(self.threshold, admission_threshold(kth_lower, self.a))

    def prune(self) -> None:
        width = int(self.fill.max())
        if width >= self.k:
            lb = self.lower_bounds(self.scores[:, :width], self.index[:, :width])
            self.raise_from_lower(torch.topk(lb, self.k, dim=1, sorted=False).values.amin(dim=1))
        if width:
            self._drop_below_threshold(width)
        if int(self.fill.max()) > self.max_candidates:
            raise TooManyCandidates(int(self.fill.max()))


def lowrank_topk_chunk(q: torch.Tensor, cat: LowRankCatalog, k: int, item_chunk: int, buf: torch.Tensor,
                       stats: dict | None = None, max_candidates: int | None = None):
    """Certified top-k for one block of query rows (fp32 [R, d]); see the module docstring.

    Raises `TooManyCandidates` when a row's candidates exceed `max_candidates` (default
    max(64 k, 65536)) - the bound does not prune on these data - so that the caller can fall back.
    """
    from .search import _admit, _score_block

    n = cat.augmented.shape[0]
    r = q.shape[0]
    aug, sigma, slack = cat.query_side(q)
    cap = max(64 * k, 65536) if max_candidates is None else int(max_candidates)
    cands = _LowRankCandidates(r, k, sigma, slack, cat.residual, q.device, cap)
    for start in range(0, n, item_chunk):
        w = min(item_chunk, n - start)
        block = buf[: r * w].view(r, w)
        _score_block(aug, cat.augmented[start : start + w], block)  # ub~
        if start == 0 and w >= k:  # first block: threshold from its own k-th lower bound
            lb = block.double() - 2.0 * sigma.unsqueeze(1) * cat.residual[start : start + w].unsqueeze(0)
            cands.raise_from_lower(torch.topk(lb, k, dim=1, sorted=False).values.amin(dim=1) - slack)
        got = _admit(block, cands.threshold, 16, False)
        if got is not None:
            rows, cols, vals = got
            if torch.isnan(vals).any():
                raise ValueError("exact_topk: some scores are NaN (the items contain NaN/inf values, or products overflow)")
            cands.append(rows, cols + start, vals)
        if int(cands.fill.max()) > cands.limit:
            cands.prune()
    cands.prune()
    width = int(cands.fill.max())
    if stats is not None:
        stats["candidates"] = stats.get("candidates", 0) + int(cands.fill.sum())
        stats["rows"] = stats.get("rows", 0) + r
    return _rescore_topk(q, cat.items, cands.index[:, :width], k)
