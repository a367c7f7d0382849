"""Certified-exact top-k search with a bfloat16 scoring pass and an fp32 re-score of the candidates.

The catalog is scanned once with bf16 inputs (the pass that matrix units such as AMX or tensor
cores run several times faster than fp32); an error bound then says which items could still be in
the fp32 top-k, only those are re-scored in fp32, and the exact top-k (ties by lower index) is
taken among them. The result is guaranteed by the bound, not by luck.

The error bound and the candidate rule are derived in the Notes of `bf16_topk_chunk`.

Memory: the bf16 copy of the catalog (2 * N * d bytes) plus, per query block, a score block and a
candidate buffer of a few k entries per row; never Q x N.
"""

from __future__ import annotations

import math

import torch

from ._blocks import _SENTINEL, _admit, lexicographic_topk
from ._rounding import _U32, _exact_scores, _gamma, _round_toward_minus_inf

_C_OUT = 2.0**-8 / (1.0 - 2.0**-8)


class BF16Catalog:
    """The bf16 copy of a catalog and the per-catalog constants of the error bound."""

    def __init__(self, items: torch.Tensor, chunk: int = 65536):
        if items.dtype != torch.float32:
            raise ValueError(f"bf16 search needs float32 items, got {items.dtype}")
        self.items = items
        self.bf16 = torch.empty(items.shape, dtype=torch.bfloat16, device=items.device)
        err_max = norm_max = norm_bf16_max = 0.0
        for s in range(0, items.shape[0], chunk):
            x = items[s : s + chunk]
            xb = x.to(torch.bfloat16)
            self.bf16[s : s + chunk] = xb
            xd, xbd = x.double(), xb.double()
            err_max = max(err_max, float(torch.linalg.vector_norm(xbd - xd, dim=1).max()))
            norm_max = max(norm_max, float(torch.linalg.vector_norm(xd, dim=1).max()))
            norm_bf16_max = max(norm_bf16_max, float(torch.linalg.vector_norm(xbd, dim=1).max()))
        self.err_max, self.norm_max, self.norm_bf16_max = err_max, norm_max, norm_bf16_max


def score_bounds(queries: torch.Tensor, cat: BF16Catalog) -> tuple[torch.Tensor, torch.Tensor]:
    """(q~ as bf16 [Q, d], absolute bound A [Q] float64) for the rows of `queries` (see `bf16_topk_chunk`)."""
    d = queries.shape[1]
    g = _gamma(d)
    qb = queries.to(torch.bfloat16)
    qd, qbd = queries.double(), qb.double()
    q_norm = torch.linalg.vector_norm(qd, dim=1)
    qb_norm = torch.linalg.vector_norm(qbd, dim=1)
    q_err = torch.linalg.vector_norm(qbd - qd, dim=1)
    inputs = qb_norm * cat.err_max + q_err * cat.norm_max  # (1.)
    accum = g * qb_norm * cat.norm_bf16_max  # (2.)
    rescore = g * q_norm * cat.norm_max  # (4.)
    # (2.) bounds y - q~.x~; the output rounding (3.) is relative to s~ and applied in `_threshold`.
    # The slack covers the float64 rounding of this very computation.
    a = (inputs + accum + rescore) * (1 + 1e-9) + 1e-30
    return qb, a


def _threshold(kth: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Smallest bf16 score that may still be in the top-k: hi^{-1}(lo(kth)), rounded down to fp32.

    kth float32 [R] (-inf where fewer than k items are known), a float64 [R].
    """
    t = kth.double()
    lo = t - _C_OUT * t.abs() - a
    v = lo - a
    thr = torch.where(v >= 0, v / (1 + _C_OUT), v / (1 - _C_OUT))
    thr = thr - 1e-12 * thr.abs() - 1e-30  # round down in float64 first
    return torch.where(torch.isinf(kth), kth, _round_toward_minus_inf(thr))


class _Candidates:
    """Per-row candidate buffers, pruned to the bound's threshold instead of to exactly k."""

    def __init__(self, rows: int, k: int, a: torch.Tensor, device: torch.device):
        self.k = k
        self.a = a
        self.scores = torch.full((rows, 0), -math.inf, device=device)
        self.index = torch.full((rows, 0), _SENTINEL, device=device, dtype=torch.int64)
        self.fill = torch.zeros(rows, device=device, dtype=torch.int64)
        self.threshold = torch.full((rows,), -math.inf, device=device)
        self.limit = max(4 * k, 256)

    def append(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor) -> None:
        n_rows = self.fill.shape[0]
        counts = torch.bincount(rows, minlength=n_rows)
        new_fill = self.fill + counts
        need = int(new_fill.max())
        if need > self.scores.shape[1]:
            cap = max(need, self.scores.shape[1] * 3 // 2)
            gs = torch.full((n_rows, cap), -math.inf, device=vals.device)
            gi = torch.full((n_rows, cap), _SENTINEL, device=vals.device, dtype=torch.int64)
            w = self.scores.shape[1]
            gs[:, :w] = self.scores
            gi[:, :w] = self.index
            self.scores, self.index = gs, gi
        base = self.fill - (torch.cumsum(counts, 0) - counts)
        slot = base.index_select(0, rows) + torch.arange(rows.numel(), device=rows.device)
        flat = rows * self.scores.shape[1] + slot
        self.scores.view(-1).index_copy_(0, flat, vals)
        self.index.view(-1).index_copy_(0, flat, cols)
        self.fill = new_fill

    def raise_threshold(self, kth: torch.Tensor) -> None:
        self.threshold = torch.maximum(self.threshold, _threshold(kth, self.a))

    def prune(self) -> None:
        """Raise the thresholds from the k-th score held and drop the entries below them."""
        width = int(self.fill.max())
        if width < self.k:
            return
        s, i = self.scores[:, :width], self.index[:, :width]
        kth = torch.topk(s, self.k, dim=1, sorted=False).values.amin(dim=1)  # -inf if fill < k
        self.raise_threshold(kth)
        keep = (s >= self.threshold.unsqueeze(1)) & (i != _SENTINEL)
        counts = keep.sum(dim=1)
        new_w = int(counts.max())
        order = torch.sort(keep.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :new_w]
        live = torch.arange(new_w, device=s.device).unsqueeze(0) < counts.unsqueeze(1)
        ns = torch.where(live, s.gather(1, order), torch.full_like(s[:, :new_w], -math.inf))
        ni = torch.where(live, i.gather(1, order), torch.full_like(i[:, :new_w], _SENTINEL))
        self.scores[:, :new_w] = ns
        self.index[:, :new_w] = ni
        self.scores[:, new_w:width] = -math.inf
        self.index[:, new_w:width] = _SENTINEL
        self.fill = counts
        # the bound, not the buffer, decides how many candidates there are: make room for them
        self.limit = max(self.limit, 2 * new_w)


def _admit_ge(block: torch.Tensor, threshold: torch.Tensor):
    """(rows, cols, vals) of the entries >= threshold per row, NaN included (so that it is reported)."""
    return _admit(block, threshold, 16, False)


def _bf16_mm(qb: torch.Tensor, xb: torch.Tensor, out: torch.Tensor) -> None:
    if out.device.type == "cuda":
        old = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        try:
            torch.mm(qb, xb.T, out=out)
        finally:
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = old
    else:
        torch.mm(qb, xb.T, out=out)


def _rescore_topk(q: torch.Tensor, items: torch.Tensor, index: torch.Tensor, k: int):
    """Each row's candidates (sentinel = padding) re-scored as fl32(<q, x> in float64), then the
    lexicographic top-k.

    Two steps, so that only about k candidates per row take the float64 route: an fp32 score s32
    of every candidate (|s32 - s| <= E = gamma_d ||q|| X, X the largest candidate norm; Higham
    sec. 3.1), then, with v the k-th largest s32 of the row, the exact score of the candidates with
    s32 >= v - 2E - 2^-22 |v|. Every item of the exact top-k is among them: k candidates have
    s >= v - E, so the k-th largest s is >= v - E, and an item at or above it has s32 >= v - 2E (the
    2^-22 |v| covers the fp32 rounding of the final scores and of this test).
    """
    r, c = index.shape
    d = items.shape[1]
    out_s = torch.empty((r, k), device=items.device)
    out_i = torch.empty((r, k), device=items.device, dtype=torch.int64)
    g = _gamma(d)
    rb = max(1, (1 << 23) // max(1, c * d))  # gathered fp32 candidates <= 32 MiB at a time
    for r0 in range(0, r, rb):
        # ascending indices per row (sentinels last): the gathers below walk the catalog forwards
        idx = index[r0 : r0 + rb].sort(dim=1).values
        qr = q[r0 : r0 + rb]
        pad = idx == _SENTINEL
        cand = items.index_select(0, idx.masked_fill(pad, 0).reshape(-1)).view(idx.shape[0], c, d)
        s32 = torch.bmm(cand, qr.unsqueeze(2)).squeeze(2).masked_fill(pad, -math.inf)
        if c > k:
            norms = torch.linalg.vector_norm(cand, dim=2).amax(dim=1).double() * (1 + 4 * d * _U32)
            e = g * torch.linalg.vector_norm(qr.double(), dim=1) * norms + 1e-30
            v = torch.topk(s32, k, dim=1, sorted=False).values.amin(dim=1).double()
            floor = _round_toward_minus_inf(v - 2 * e - 2.0**-22 * v.abs())
            width = int((s32 >= floor.unsqueeze(1)).sum(dim=1).max())
            keep = torch.topk(s32, width, dim=1, sorted=False).indices
            idx = idx.gather(1, keep)
        out_s[r0 : r0 + rb], out_i[r0 : r0 + rb] = lexicographic_topk(_exact_scores(qr, items, idx), idx, k)
    return out_s, out_i


def bf16_topk_chunk(q: torch.Tensor, cat: BF16Catalog, k: int, item_chunk: int, stats: dict | None = None):
    """Certified top-k for one block of query rows (fp32 [R, d]).

    Notes
    -----
    Error bound. Let q, x be fp32 vectors of dimension d, q~ = bf16(q), x~ = bf16(x) (round to
    nearest), s = <q, x> the exact inner product and s~ the value the bf16 pass returns. Three errors:

    1. Input rounding (exact identity, then Cauchy-Schwarz)::

           q~.x~ - q.x = q~.(x~ - x) + (q~ - q).x
           |q~.x~ - q.x| <= ||q~|| ||x~ - x|| + ||q~ - q|| ||x||

       The rounding errors ||q~ - q|| and ||x~ - x|| are measured (per query; the maximum over items),
       not estimated: about 2^-8 / sqrt(3) of the norm for typical data, at most 2^-8 of it.
    2. Accumulation: a bf16 x bf16 product has 16 significant bits, so it is exact in fp32; summing d
       of them in fp32, in any order or blocking, errs by at most gamma_d sum_i |q~_i x~_i| <=
       gamma_d ||q~|| ||x~|| with gamma_d = d u / (1 - d u), u = 2^-24 (Higham, *Accuracy and
       Stability of Numerical Algorithms*, 2nd ed., section 3.1). This assumes fp32 accumulation, which
       oneDNN/AMX and cuBLAS use (on CUDA the bf16 reduced-precision reduction is switched off while
       the pass runs).
    3. Output rounding: the pass writes bf16, |s~ - y| <= 2^-8 |y| <= c |s~| with c = 2^-8 / (1 - 2^-8),
       where y is the fp32 accumulator.

    The re-score r of a candidate is its inner product in float64 (products of fp32 numbers are exact
    there) rounded to fp32: |r - s| <= 2^-24 |s| + 2^-53 d ||q|| ||x|| (1 + o(1)), which the fp32
    summation bound gamma_d ||q|| ||x|| (4.) covers. With
    A = (1.) + (2.) + (2.) applied to the output + (4.) as an absolute term (maxima over the catalog),
    every item satisfies

        lo(s~) := s~ - c|s~| - A  <=  r  <=  s~ + c|s~| + A =: hi(s~).

    Candidate rule. If t~ is the k-th largest bf16 score of a row, k items have r >= lo(t~). An item
    with hi(s~_j) < lo(t~) therefore has r_j below k other items and cannot be in the top-k; every
    other item is a candidate. hi is increasing, so the rule is a threshold on the bf16 score,
    s~_j >= hi^{-1}(lo(t~)), computed in float64 and rounded down. While the catalog is scanned, t~ is
    the k-th largest bf16 score seen so far (a lower bound of the final one, so the rule only admits
    more). The candidates are re-scored and the top-k taken in the order (-r, index): the result is
    the exact top-k, over the whole catalog, of the fp32-rounded inner products, ties by lower index -
    independent of any summation order. An fp32 BLAS search (`precision="fp32"`) can differ from it
    only between items whose scores agree to within fp32 summation error (gamma_d ||q|| ||x||), as
    any two BLAS libraries differ from each other.
    """
    items, xb = cat.items, cat.bf16
    n = items.shape[0]
    qb, a = score_bounds(q, cat)
    cands = _Candidates(q.shape[0], k, a, items.device)
    r = q.shape[0]
    bf = torch.empty(r * min(item_chunk, n), dtype=torch.bfloat16, device=items.device)
    blk32 = torch.empty(bf.shape, dtype=torch.float32, device=items.device)
    for start in range(0, n, item_chunk):
        w = min(item_chunk, n - start)
        block_bf = bf[: r * w].view(r, w)
        _bf16_mm(qb, xb[start : start + w], block_bf)
        block = blk32[: r * w].view(r, w)
        block.copy_(block_bf)  # exact: every bf16 value is an fp32 value
        if start == 0 and w >= k:  # first block: threshold from its own k-th score
            cands.raise_threshold(torch.topk(block, k, dim=1, sorted=False).values.amin(dim=1))
        got = _admit_ge(block, cands.threshold)
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
        stats["rows"] = stats.get("rows", 0) + q.shape[0]
    return _rescore_topk(q, items, cands.index[:, :width], k)
