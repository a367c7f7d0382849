"""Exact inner-product search over a catalog, chunked so that memory never grows with Q x N.

Exact search is chunked matmul + top-k with ties broken by the lower item index; faiss is an
optional backend and a test oracle.

Ordering. For a query q with scores s_j = <q, x_j> over items j = 0..N-1, the ranked list is the
order of the pairs (-s_j, j) ascending, i.e. higher score first and, among equal scores, the lower
item index first. `exact_topk` returns the first k entries of that list exactly (including when
equal scores straddle the k-th position or chunk boundaries); `rank_of_targets` returns the
1-based position of one given item in that list when its own score is replaced.

Algorithm of `exact_topk` (a vectorised form of the "reservoir" selection faiss uses for large k,
see faiss `ReservoirBlockResultHandler`; written independently here). Queries are processed in
chunks of `query_chunk` rows, items in chunks of `item_chunk` columns, in increasing item index.
Per query row we keep a reservoir of candidates and a threshold t with the invariant

    the reservoir holds at least k items, all of LOWER index than any item not yet seen,
    whose score is >= t, and it contains the exact top-k of the items seen so far.

Any later item j with s_j <= t is then beaten by k earlier items (higher score, or equal score and
lower index) and can never enter the top-k, so only s_j > t (strict) is admitted. For each score
block S = Q_c X_c^T (one `torch.mm` into a reused buffer) we take, per row, the maximum of every
group of `group_size` columns (group g = columns g, g + m, g + 2m, ... with m = item_chunk /
group_size; one read of S) and gather only the few groups whose maximum exceeds t; their entries
are compared and appended. While candidates are dense (the first blocks, where more than a quarter
of the groups would survive) the whole block is compared directly instead. When a row's reservoir
exceeds `reservoir_size` entries it is compacted to its exact top-k (torch.topk, then a
lexicographic (-score, index) sort for the rows where more than k entries are >= the k-th score,
i.e. where topk's choice among ties would be arbitrary) and t becomes its k-th score. Before the
reservoir first holds k items, the threshold for the first block is the k-th largest of its group
maxima (k distinct items are >= it), with >= admitted. Expected candidates per row over the whole
catalog: about k (1 + ln(N / item_chunk)) plus what compaction delays add.

On CPU the query blocks are shared among `workers` Python threads (default: torch's thread count),
each running single-threaded torch ops: the matmul parallelises well inside torch, the many small
selection ops do not, and this way both run on every core (torch releases the GIL).

Memory bound (float32 scores, int64 indices), independent of N and of Q, per worker:
    4 * query_chunk * item_chunk              (score block S, reused)
  + 4 * query_chunk * item_chunk / group_size (group maxima)
  + 12 * query_chunk * (reservoir_size + c)   (reservoir; c = candidates admitted from one block,
                                               at most item_chunk, in practice a few hundred)
  + O(query_chunk * k) for the result of the chunk and the selection temporaries,
plus the output 12 * Q * k bytes. The full Q x N score matrix is never built. With the CPU
defaults (1024 x 16384) the S buffer is 64 MiB; the measured rise of the process's peak resident
memory is about 0.2 GiB per worker (S, BLAS packing buffers, candidate temporaries of the first,
dense blocks, allocator slack), 0.4 GiB with 2 workers, whatever N and Q
(`ftbench cost --search-bench` reports it).

References: J. Johnson, M. Douze, H. Jegou, "Billion-scale similarity search with GPUs" (2017) and
the faiss source (IndexFlat / ReservoirBlockResultHandler) for the blocked matmul + threshold
selection scheme.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_SENTINEL = torch.iinfo(torch.int64).max

#: Defaults tuned on a 2-core AVX-512 CPU (1M x 256 items, k=500; see `ftbench cost --search-bench`).
DEFAULT_QUERY_CHUNK = {"cpu": 1024, "cuda": 2048}
DEFAULT_ITEM_CHUNK = {"cpu": 16384, "cuda": 32768}
DEFAULT_GROUP_SIZE = 16
_MIN_ROWS_PER_WORKER = 128
_NUMPY_NONZERO = True  # CPU: the filter through numpy (flatnonzero, maxima, comparisons); tests switch it off to run the CUDA code path
# CPU score blocks through numpy's matmul (OpenBLAS): on the project machine 1024 x 256 by
# 256 x 16384 float32 blocks run at 3.15 ms per query (1M items, 2 threads) against 4.10 ms with
# torch.mm, and faiss IndexFlatIP takes 3.9-4.2 ms in all. Tests switch it off to compare paths.
_NUMPY_MATMUL = True


def _score_block(q: torch.Tensor, item_block: torch.Tensor, out: torch.Tensor) -> None:
    """out[R, w] = q [R, d] @ item_block[w, d]^T, through numpy's BLAS on CPU where it is faster."""
    if (_NUMPY_MATMUL and out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64)
            and q.dtype == out.dtype and item_block.dtype == out.dtype):
        np.matmul(q.detach().numpy(), item_block.detach().numpy().T, out=out.numpy())
    else:
        torch.mm(q, item_block.T, out=out)


def _check_inputs(queries: torch.Tensor, items: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes and dtypes; queries must be finite. Items are checked through the scores (NaN)."""
    if items.dim() != 2:
        raise ValueError(f"{what}: items must be a 2-D tensor [N, d], got shape {tuple(items.shape)}")
    if queries.dim() != 2:
        raise ValueError(f"{what}: queries must be a 2-D tensor [Q, d], got shape {tuple(queries.shape)}")
    if queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"{what}: queries have dimension {queries.shape[1]} but items have dimension {items.shape[1]}"
        )
    if not items.is_floating_point():
        raise ValueError(f"{what}: items must be floating point, got {items.dtype}")
    queries = queries.to(device=items.device, dtype=items.dtype)
    if not torch.isfinite(queries).all():
        raise ValueError(f"{what}: queries contain NaN or infinite values")
    return queries.contiguous(), items.contiguous()


def _chunks(query_chunk: int | None, item_chunk: int | None, device: torch.device) -> tuple[int, int]:
    kind = "cuda" if device.type == "cuda" else "cpu"
    qc = DEFAULT_QUERY_CHUNK[kind] if query_chunk is None else int(query_chunk)
    ic = DEFAULT_ITEM_CHUNK[kind] if item_chunk is None else int(item_chunk)
    if qc < 1 or ic < 1:
        raise ValueError(f"query_chunk and item_chunk must be positive, got {qc} and {ic}")
    return qc, ic


def lexicographic_topk(scores: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the first k entries of (scores, index) in the order (-score, index) ascending.

    scores, index: [R, C] (C >= k). Implemented as a sort by index followed by a *stable* sort by
    descending score, which is the lexicographic order (higher score first, ties by lower index).
    Duplicated index values (padding sentinels) keep an arbitrary relative order.
    """
    order = torch.argsort(index, dim=1)
    scores = scores.gather(1, order)
    index = index.gather(1, order)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), index.gather(1, order)


def _select_topk(scores: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact lexicographic top-k *set* of each row (unordered), and the k-th score.

    torch.topk picks k entries >= the k-th value v but may pick any of several entries equal to v.
    Where exactly k entries are >= v the set is unique; other rows (boundary ties) are redone with
    `lexicographic_topk`. Cheap in the common no-tie case (one compare pass over [R, C]).
    """
    vals, pos = torch.topk(scores, k, dim=1, sorted=False)
    kth = vals.amin(dim=1)
    idx = index.gather(1, pos)
    if scores.device.type == "cpu":  # numpy's boolean row sums: ~10x torch's count_nonzero(dim=1)
        n_ge = torch.from_numpy((scores.numpy() >= kth.unsqueeze(1).numpy()).sum(axis=1, dtype=np.int64))
    else:
        n_ge = torch.count_nonzero(scores >= kth.unsqueeze(1), dim=1)
    tied = torch.nonzero(n_ge > k).squeeze(1)
    if tied.numel():
        s2, i2 = lexicographic_topk(scores.index_select(0, tied), index.index_select(0, tied), k)
        vals[tied] = s2
        idx[tied] = i2
    return vals, idx, kth


class _Reservoir:
    """Per-row candidate buffers ([R, capacity] scores and indices, padded with -inf / sentinel)."""

    # the per-entry stores and their padding values (`second` only when asked for)
    _STORES = (("scores", -math.inf), ("index", _SENTINEL), ("second", -math.inf))

    def __init__(self, rows: int, k: int, limit: int, device: torch.device, dtype: torch.dtype, second: bool = False):
        self.k, self.limit = k, limit
        cap = limit + max(k, 256)
        self.scores = torch.full((rows, cap), -math.inf, device=device, dtype=dtype)
        self.index = torch.full((rows, cap), _SENTINEL, device=device, dtype=torch.int64)
        # optional second value per entry, kept beside `scores` by `append` (the low-rank search's lb~)
        self.second = torch.full((rows, cap), -math.inf, device=device, dtype=dtype) if second else None
        self.fill = torch.zeros(rows, device=device, dtype=torch.int64)
        self.threshold = torch.full((rows,), -math.inf, device=device, dtype=dtype)
        self.fill_max = 0  # host copy of fill.max()

    def append(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, second: torch.Tensor | None = None) -> None:
        """Append candidates; `rows` must be non-decreasing (row-major order)."""
        n_rows = self.fill.shape[0]
        counts = torch.bincount(rows, minlength=n_rows)
        new_fill = self.fill + counts
        need = int(new_fill.max())
        if need > self.scores.shape[1]:
            cap = max(need, self.scores.shape[1] + self.scores.shape[1] // 2)
            for name, pad in self._STORES:
                old = getattr(self, name)
                if old is not None:
                    grown = torch.full((n_rows, cap), pad, device=old.device, dtype=old.dtype)
                    grown[:, : self.fill_max] = old[:, : self.fill_max]
                    setattr(self, name, grown)
        # slot of each candidate: fill[row] + its position among this call's candidates of that row
        base = self.fill - (torch.cumsum(counts, 0) - counts)
        slot = base.index_select(0, rows) + torch.arange(rows.numel(), device=rows.device)
        flat = rows * self.scores.shape[1] + slot
        self.scores.view(-1).index_copy_(0, flat, vals)
        self.index.view(-1).index_copy_(0, flat, cols)
        if self.second is not None:
            self.second.view(-1).index_copy_(0, flat, second)
        self.fill = new_fill
        self.fill_max = need

    def retain(self, keep: torch.Tensor) -> None:
        """Keep only the entries where `keep` [R, fill_max] is True, packed to the front of each row
        in their order (the rest padded again); fill and fill_max follow."""
        width = self.fill_max
        flat = _flatnonzero(keep)  # row-major positions of the kept entries
        kept = {name: getattr(self, name)[:, :width].reshape(-1).index_select(0, flat)
                for name, _ in self._STORES if getattr(self, name) is not None}
        for name, pad in self._STORES:
            if getattr(self, name) is not None:
                getattr(self, name)[:, :width] = pad
        self.fill.zero_()
        self.fill_max = 0
        self.append(torch.div(flat, width, rounding_mode="floor"), kept["index"], kept["scores"], kept.get("second"))

    def compact(self, rows: torch.Tensor | None = None) -> None:
        """Reduce `rows` (default: all) to their exact top-k; their threshold becomes the k-th score."""
        width = self.fill_max
        if rows is None:
            s, i = self.scores[:, :width], self.index[:, :width]
        else:
            s, i = self.scores.index_select(0, rows)[:, :width], self.index.index_select(0, rows)[:, :width]
        vals, idx, kth = _select_topk(s, i, self.k)
        if rows is None:
            self.scores[:, : self.k] = vals
            self.index[:, : self.k] = idx
            self.scores[:, self.k : width] = -math.inf
            self.index[:, self.k : width] = _SENTINEL
            self.fill.fill_(self.k)
            self.threshold = kth
            self.fill_max = self.k
        else:
            pad_s = torch.full((rows.numel(), width - self.k), -math.inf, device=s.device, dtype=s.dtype)
            pad_i = torch.full((rows.numel(), width - self.k), _SENTINEL, device=s.device, dtype=torch.int64)
            self.scores[rows, :width] = torch.cat([vals, pad_s], 1)
            self.index[rows, :width] = torch.cat([idx, pad_i], 1)
            self.fill[rows] = self.k
            self.threshold[rows] = kth
            self.fill_max = int(self.fill.max())

    def maybe_compact(self) -> None:
        if self.fill_max > self.limit:
            over = torch.nonzero(self.fill > self.limit).squeeze(1)
            self.compact(None if over.numel() * 2 > self.fill.shape[0] else over)


def _flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """Flat positions of the True entries of a contiguous bool tensor (ascending, int64).

    On CPU numpy's flatnonzero is several times faster than torch.nonzero (measured on torch 2.13);
    the result is the same.
    """
    if _NUMPY_NONZERO and mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.reshape(-1)).squeeze(1)


def _admit(block: torch.Tensor, threshold: torch.Tensor, group: int, strict: bool, dense: bool = False):
    """Entries of `block` [R, w] above `threshold` [R] (strictly, or >= when not `strict`), and NaNs.

    Returns (rows, cols, vals) with rows non-decreasing, or None. Sparse path: the maximum of each
    group of `group` columns (strided, see module docstring) skips groups with nothing above the
    threshold, and only the surviving groups are gathered and compared. Dense path (when `dense`,
    when w is not a multiple of `group`, or when more than a quarter of the groups survive, as in
    the first blocks): one comparison over the whole block.
    The tests are written as not(s <= t) (resp. not(s < t)) so that NaN scores are admitted too
    (amax propagates NaN) and can be reported by the caller, at no extra pass over the block.
    """
    if _NUMPY_NONZERO and block.device.type == "cpu":
        return _admit_numpy(block, threshold, group, strict, dense)
    r, w = block.shape
    ng = w // group
    if not dense and ng and w == ng * group:
        # group g of a row holds the columns g, g + ng, g + 2 ng, ... (a strided view: the maximum
        # over the middle axis reads contiguous rows, which is faster than short contiguous groups)
        fg = _not_below(block.view(r, group, ng), threshold.unsqueeze(1), strict, group_max=True)
        if fg.numel() == 0:
            return None
        if 4 * fg.numel() <= r * ng:
            gr = torch.div(fg, ng, rounding_mode="floor")  # row of each surviving group
            first = gr * w + (fg - gr * ng)  # flat position of the group's first column
            pos = first.unsqueeze(1) + torch.arange(0, w, ng, device=block.device)  # [n, group]
            sub = block.view(-1).index_select(0, pos.view(-1)).view(pos.shape)
            keep = _not_below(sub, threshold.index_select(0, gr).unsqueeze(1), strict)
            flat = pos.view(-1).index_select(0, keep)
            rows = torch.div(flat, w, rounding_mode="floor")
            return rows, flat - rows * w, sub.view(-1).index_select(0, keep)
    flat = _not_below(block, threshold.unsqueeze(1), strict)
    if flat.numel() == 0:
        return None
    rows = torch.div(flat, w, rounding_mode="floor")
    return rows, flat - rows * w, block.view(-1).index_select(0, flat)


def _admit_numpy(block: torch.Tensor, threshold: torch.Tensor, group: int, strict: bool, dense: bool):
    """`_admit` on CPU through numpy, step for step (its per-call overhead is ~1 us against
    torch's 5-10 us, and the strided maximum and comparisons run 1.7-2.5x faster here)."""
    b, t = block.numpy(), threshold.numpy()
    r, w = b.shape
    ng = w // group
    below = np.less_equal if strict else np.less

    def above(values, limit):  # flat positions of not(v <= t) / not(v < t): above, or NaN
        mask = below(values, limit)
        return np.flatnonzero(np.logical_not(mask, out=mask))

    if not dense and ng and w == ng * group:
        fg = above(b.reshape(r, group, ng).max(axis=1), t[:, None])
        if fg.size == 0:
            return None
        if 4 * fg.size <= r * ng:
            gr = fg // ng  # row of each surviving group
            pos = (gr * w + (fg - gr * ng))[:, None] + np.arange(0, w, ng)  # [n, group] flat positions
            sub = b.reshape(-1)[pos]
            keep = above(sub, t[gr][:, None])
            flat = pos.reshape(-1)[keep]
            rows = flat // w
            return torch.from_numpy(rows), torch.from_numpy(flat - rows * w), torch.from_numpy(sub.reshape(-1)[keep])
    flat = above(b, t[:, None])
    if flat.size == 0:
        return None
    rows = flat // w
    return torch.from_numpy(rows), torch.from_numpy(flat - rows * w), torch.from_numpy(b.reshape(-1)[flat])


def _not_below(values: torch.Tensor, threshold: torch.Tensor, strict: bool, group_max: bool = False) -> torch.Tensor:
    """Flat positions (ascending, int64) where not(v <= t) (strict) or not(v < t): above the
    threshold, or NaN. With `group_max`, v is the maximum over axis 1 of `values` [R, group, ng]
    (NaN if any entry is). The torch form of `_admit_numpy`'s comparisons (CUDA)."""
    if group_max:
        values = values.amax(dim=1)
    return _flatnonzero((torch.le if strict else torch.lt)(values, threshold).logical_not_())


def _topk_query_chunk(
    q: torch.Tensor, items: torch.Tensor, k: int, item_chunk: int, group: int, limit: int, buf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n = items.shape[0]
    rows_q = q.shape[0]
    res = _Reservoir(rows_q, k, limit, items.device, items.dtype)
    seen = 0
    admitted = 0  # candidates admitted from the previous block (all rows)
    for start in range(0, n, item_chunk):
        w = min(item_chunk, n - start)
        block = buf[: rows_q * w].view(rows_q, w)
        _score_block(q, items[start : start + w], block)
        if seen >= k:  # reservoir invariant holds: admit strictly above the threshold
            # skip the group maxima while the previous block admitted > 1 per 4 groups per row
            dense = 4 * admitted > rows_q * (w // group)
            got = _admit(block, res.threshold, group, True, dense=dense)
        elif seen == 0 and w >= k:
            # lower bound from the first block: the k-th largest of its group maxima (k distinct
            # items are >= it), with groups small enough that there are >= 2k of them; this admits
            # a few k per row (the exact k-th score would need a full top-k of the block)
            g0 = max(1, min(group, w // (2 * k)))
            m0 = (w // g0) * g0
            gmax = block[:, :m0].unflatten(1, (g0, w // g0)).amax(dim=1) if g0 > 1 else block
            t0 = torch.topk(gmax, k, dim=1, sorted=False).values.amin(dim=1)
            got = _admit(block, t0, group, False, dense=True)
        else:  # fewer than k items seen: keep the whole block
            rows = torch.arange(rows_q, device=items.device).repeat_interleave(w)
            cols = torch.arange(w, device=items.device).repeat(rows_q)
            got = (rows, cols, block.reshape(-1))
        if got is not None:
            rows, cols, vals = got
            if torch.isnan(vals).any():  # `_admit` lets NaN through (nonzero syncs anyway)
                raise ValueError(
                    "exact_topk: some scores are NaN (the items contain NaN/inf values, or products overflow)"
                )
            res.append(rows, cols + start, vals)
        admitted = 0 if got is None else int(got[0].numel())
        seen += w
        if seen >= k:
            if seen - w < k:  # first time the reservoir holds k items: set the thresholds
                res.compact()
            else:
                res.maybe_compact()
    res.compact()
    return lexicographic_topk(res.scores[:, :k], res.index[:, :k], k)


def exact_topk(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    query_chunk: int | None = None,
    item_chunk: int | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    reservoir_size: int | None = None,
    workers: int | None = None,
    precision: str = "auto",
    info: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k items by inner product <q, x_j>, ties broken by lower item index.

    Parameters
    ----------
    queries : Tensor [Q, d]   (moved to the device and dtype of `items`)
    items : Tensor [N, d]
    k : int, 1 <= k <= N. k > N raises ValueError (callers report K >= catalog size separately).
    query_chunk, item_chunk : block sizes (default: `DEFAULT_QUERY_CHUNK` / `DEFAULT_ITEM_CHUNK`
        for the device). Any positive values give the same result.
    group_size : columns per group maximum in the threshold filter (see module docstring).
    reservoir_size : per-row candidate count that triggers a compaction (default max(2k, 64)).
    workers : CPU only: query blocks are shared among this many Python threads, each running
        single-threaded torch ops (default `torch.get_num_threads()`; 1 = the caller's thread with
        torch's own intra-op threads). Used when there are >= 2 * 128 queries; the result does not
        depend on it. The caller's `torch.get_num_threads()` is restored afterwards.
    precision : "fp32" scans the catalog in the items' dtype; "bf16" (float32 items only) scans it
        with bfloat16 inputs, keeps every item that an error bound cannot exclude from the top-k
        and re-scores those in fp32 (`ftbench.kernels.bf16_search`: the result is the exact fp32
        top-k, certified by the bound); "lowrank" (float32 items only) scans a rank-r projection
        of the catalog augmented with each item's residual norm, which bounds the rest of the
        inner product, and re-scores the items the bound cannot exclude
        (`ftbench.kernels.lowrank_search`: the same certified result); "auto" (default) takes
        lowrank where the catalog is large and nearly low-rank, else bf16 where
        `bf16_search.search_precision(device)` finds it faster (bf16 matrix units and a short
        measurement), fp32 elsewhere (`plan_scan` says which and why); the environment variable
        `SEARCH_ENV` (FTBENCH_SEARCH_PRECISION) forces the pass "auto" takes.
    info : optional dict, filled with the scan taken ("scan"), the reason ("reason") and, for
        lowrank, the rank, the mean candidates re-scored per query and the query blocks that fell
        back to fp32 because the bound did not prune ("fallback_blocks").

    Returns
    -------
    scores : Tensor [Q, k] (items' dtype), index : LongTensor [Q, k], on the items' device. Row q
    is sorted by (-score, index): the first k entries of the exact ranking.

    Memory: at most ~ workers * [4*qc*ic*(1 + 1/group_size) + 12*qc*(reservoir_size + c)] bytes
    besides the output (qc = query_chunk, ic = item_chunk, c <= ic the candidates admitted from
    one block, a few hundred per row in practice); never Q x N.
    Queries must be finite (checked). NaN scores (from NaN items, or inf * 0) raise ValueError; they
    are detected while filtering, at no extra pass over the catalog. Scores are computed in the
    items' dtype by `torch.mm`, so they equal `queries @ items.T` up to BLAS summation order.
    """
    queries, items = _check_inputs(queries, items, "exact_topk")
    n = items.shape[0]
    k = int(k)
    if k < 1:
        raise ValueError(f"exact_topk: k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"exact_topk: k={k} exceeds the number of items N={n} (report K >= catalog size separately)")
    if group_size < 1:
        raise ValueError(f"exact_topk: group_size must be >= 1, got {group_size}")
    qc, ic = _chunks(query_chunk, item_chunk, items.device)
    limit = max(2 * k, 64) if reservoir_size is None else int(reservoir_size)
    if limit < k:
        raise ValueError(f"exact_topk: reservoir_size must be >= k={k}, got {limit}")
    nq = queries.shape[0]
    out_s = torch.empty((nq, k), device=items.device, dtype=items.dtype)
    out_i = torch.empty((nq, k), device=items.device, dtype=torch.int64)
    if nq == 0:
        return out_s, out_i
    scan, reason, lowrank = plan_scan(precision, items)
    if info is not None:
        info.update(scan=scan, reason=reason)
    if scan == "lowrank":
        from .lowrank_search import TooManyCandidates, lowrank_topk_chunk

        stats = {"fallback_blocks": 0, "candidates": 0, "rows": 0}
        lock = threading.Lock()  # workers share the counters
        # workers (known by their own S buffer) whose bound stopped pruning: their later blocks go
        # straight to fp32. Per worker, not shared, so that which blocks fall back - recorded in
        # the run's counts - does not depend on how the workers' progress interleaves.
        fell_back: set[int] = set()

        def body_lowrank(q0: int, q1: int, buf: torch.Tensor) -> None:
            if id(buf) not in fell_back:
                mine: dict = {}
                try:
                    out_s[q0:q1], out_i[q0:q1] = lowrank_topk_chunk(queries[q0:q1], lowrank, k, ic, buf, mine)
                    with lock:
                        stats["candidates"] += mine["candidates"]
                        stats["rows"] += mine["rows"]
                    return
                except TooManyCandidates:
                    fell_back.add(id(buf))  # the bound does not prune on these data: this and later blocks in fp32
            with lock:
                stats["fallback_blocks"] += 1
            out_s[q0:q1], out_i[q0:q1] = _topk_query_chunk(queries[q0:q1], items, k, ic, group_size, limit, buf)

        _run_query_blocks(nq, qc, min(ic, n), items, workers, body_lowrank)
        if info is not None:
            info.update(rank=lowrank.rank, fallback_blocks=stats["fallback_blocks"],
                        candidates_per_query=stats["candidates"] / max(1, stats["rows"]))
        return out_s, out_i
    if scan == "bf16":
        from .bf16_search import BF16Catalog, bf16_topk_chunk

        cat = BF16Catalog(items)

        def body_bf16(q0: int, q1: int, buf: torch.Tensor) -> None:
            s, i = bf16_topk_chunk(queries[q0:q1], cat, k, ic)
            out_s[q0:q1] = s
            out_i[q0:q1] = i

        _run_query_blocks(nq, qc, 1, items, workers, body_bf16)
        return out_s, out_i

    def body(q0: int, q1: int, buf: torch.Tensor) -> None:
        s, i = _topk_query_chunk(queries[q0:q1], items, k, ic, group_size, limit, buf)
        out_s[q0:q1] = s
        out_i[q0:q1] = i

    _run_query_blocks(nq, qc, min(ic, n), items, workers, body)
    return out_s, out_i


SCANS = ("auto", "fp32", "bf16", "lowrank")
#: forces the pass of every `exact_topk(precision="auto")` call (a run's evaluation and validation
#: searches): auto, fp32, bf16 or lowrank. Every pass returns the same exact top-k, so a run's
#: metrics do not depend on it; the tests set it to run each pass on every machine.
SEARCH_ENV = "FTBENCH_SEARCH_PRECISION"


def forced_scan() -> str | None:
    """The pass `SEARCH_ENV` forces on `precision="auto"` (None where unset or "auto")."""
    value = os.environ.get(SEARCH_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in SCANS:
        raise ValueError(f"{SEARCH_ENV} must be one of {', '.join(SCANS)}, got {value!r}")
    return value


def plan_scan(precision: str, items: torch.Tensor):
    """(scan, reason, low-rank catalog or None): the pass `exact_topk(precision=...)` takes, and why.

    "auto": the pass `SEARCH_ENV` names where it is set, else "lowrank" where the catalog
    qualifies (at least `lowrank_search.MIN_ITEMS` float32 items whose top r <= d/4 principal
    directions hold all but `MAX_RESIDUAL_ENERGY` of their second moment: a (r+1)/d-sized scan),
    else "bf16" where the hardware makes that pass faster (`bf16_search.search_precision`), else
    "fp32". "lowrank" requested explicitly uses the smallest qualifying rank, or d/4. Every scan
    returns the same exact top-k. The reason is a function of the inputs, the environment and the
    hardware (never of a measured time), so that a run records the same text every time.
    """
    if precision not in SCANS:
        raise ValueError(f"exact_topk: precision must be one of {', '.join(map(repr, SCANS))}, got {precision!r}")
    how = "requested"
    if precision == "auto" and forced_scan() is not None:
        precision = forced_scan()
        how = f"set by {SEARCH_ENV}={precision}"
    if precision == "fp32":
        return "fp32", how, None
    if items.dtype != torch.float32:
        if precision != "auto":
            raise ValueError(f"exact_topk: precision={precision!r} ({how}) needs float32 items, got {items.dtype}")
        return "fp32", f"items are {items.dtype}", None
    if precision == "bf16":
        return "bf16", how, None
    from .lowrank_search import MAX_RESIDUAL_ENERGY, MIN_ITEMS, LowRankCatalog, fit_rank, principal_basis

    d = items.shape[1]
    if precision == "lowrank" or (items.shape[0] >= MIN_ITEMS and d >= 32):
        basis, energy = principal_basis(items)
        rank = fit_rank(energy)
        if rank is not None or precision == "lowrank":
            rank = rank or max(1, d // 4)
            reason = f"rank {rank} of {d} holds {float(energy[rank - 1]):.1%} of the items' second moment"
            return "lowrank", reason if precision == "auto" else f"{how}; {reason}", LowRankCatalog(items, basis[:, :rank])
        not_low = f"no rank <= d/4 holds {1 - MAX_RESIDUAL_ENERGY:.0%} of the items' second moment"
    else:
        not_low = f"fewer than {MIN_ITEMS} items"
    from .bf16_search import search_precision

    scan, reason = search_precision(items.device)
    return scan, f"{reason}; not low-rank: {not_low}", None


def effective_workers(num_queries: int, device: torch.device | str, workers: int | None = None) -> int:
    """Number of worker threads `exact_topk` / `rank_of_targets` use (1 off CPU or for few queries)."""
    threads = torch.get_num_threads() if workers is None else int(workers)
    if torch.device(device).type != "cpu" or threads < 2 or num_queries < 2 * _MIN_ROWS_PER_WORKER:
        return 1
    return min(threads, num_queries // _MIN_ROWS_PER_WORKER)


def _run_query_blocks(nq: int, qc: int, width: int, items: torch.Tensor, workers: int | None, body) -> None:
    """Call body(q0, q1, buf) for every query block [q0, q1), each worker with its own S buffer.

    CPU with several threads: one Python thread per core, each running single-threaded torch ops
    on its own query blocks (torch releases the GIL), which parallelises the many small selection
    ops as well as the matmul. The caller's `torch.get_num_threads()` is restored afterwards.
    """
    threads = effective_workers(nq, items.device, workers)
    if threads > 1:
        qc = min(qc, -(-nq // threads))  # at least one block per worker
    blocks = [(q0, min(nq, q0 + qc)) for q0 in range(0, nq, qc)]

    def run(worker: int) -> None:
        buf = torch.empty(min(qc, nq) * width, device=items.device, dtype=items.dtype)
        for q0, q1 in blocks[worker::threads]:
            body(q0, q1, buf)

    if threads == 1:
        run(0)
        return
    outer = torch.get_num_threads()

    def run_single_threaded(worker: int) -> None:
        torch.set_num_threads(1)
        run(worker)

    try:
        with _single_threaded_blas(), ThreadPoolExecutor(max_workers=threads) as pool:
            for fut in [pool.submit(run_single_threaded, w) for w in range(threads)]:
                fut.result()
    finally:
        torch.set_num_threads(outer)


def _single_threaded_blas():
    """numpy's BLAS at one thread while our workers run (one worker per core already)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _assert_finite_rows(x: torch.Tensor, what: str, chunk: int = 65536) -> None:
    """Raise unless every entry of x is finite (checked in row chunks: no full-size temporary)."""
    for s in range(0, x.shape[0], chunk):
        if not torch.isfinite(x[s : s + chunk]).all():
            raise ValueError(f"{what} contain NaN or infinite values")


def _count_ranked_before(block: torch.Tensor, t: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Per row r of a score block [R, w]: #{j : s_rj > t_r} + #{j < local_r : s_rj == t_r} (int64 [R]).

    On CPU through numpy: a comparison and a row sum of its booleans, ~10 ms per 1024 x 16384 block
    on one core, against ~120 ms for torch's `count_nonzero(..., dim=1)` (about as long as the block's
    matrix product). Ties are rare: a second pass (>=) finds the rows that have any, and only those
    rows are searched for tied columns below the target's.
    """
    if block.device.type != "cpu":
        count = torch.count_nonzero(block > t, dim=1)
        eq = block == t
        if eq.any():  # ties with t count only for lower item indices
            cols = torch.arange(block.shape[1], device=block.device).unsqueeze(0)
            count += torch.count_nonzero(eq & (cols < local.unsqueeze(1)), dim=1)
        return count
    b, tn = block.numpy(), t.numpy()
    above = (b > tn).sum(axis=1, dtype=np.int64)
    tied_rows = np.flatnonzero((b >= tn).sum(axis=1, dtype=np.int64) != above)
    if len(tied_rows):
        limit = local.numpy()
        for r in tied_rows:
            above[r] += np.count_nonzero(np.flatnonzero(b[r] == tn[r, 0]) < limit[r])
    return torch.from_numpy(above)


def rank_of_targets(
    queries: torch.Tensor,
    items: torch.Tensor,
    target: torch.Tensor,
    target_score: torch.Tensor,
    *,
    query_chunk: int | None = None,
    item_chunk: int | None = None,
    workers: int | None = None,
) -> torch.Tensor:
    """1-based rank of each query's target item when the target's own score is `target_score`.

    With s_j = <q, x_j> and t = target_score[q], target index g = target[q]:

        rank = 1 + #{j != g : s_j > t} + #{j < g : s_j == t}

    i.e. the position of g in the ranking by (-score, index) after replacing s_g by t. Used by
    leave-one-out cross-view tasks, whose target embedding excludes the query view (so the row
    x_g in `items` is not the one the query is scored against).

    Chunked and multi-threaded like `exact_topk`: memory ~ workers * 6*qc*ic bytes (score block
    and boolean masks), never Q x N. Items and scores must be finite (items are checked).
    Returns LongTensor [Q] on the items' device.
    """
    queries, items = _check_inputs(queries, items, "rank_of_targets")
    n = items.shape[0]
    nq = queries.shape[0]
    target = torch.as_tensor(target, device=items.device).long().reshape(-1)
    t_all = torch.as_tensor(target_score, device=items.device, dtype=items.dtype).reshape(-1)
    if target.numel() != nq or t_all.numel() != nq:
        raise ValueError(
            f"rank_of_targets: target ({target.numel()}) and target_score ({t_all.numel()}) need one entry per query ({nq})"
        )
    if nq and (int(target.min()) < 0 or int(target.max()) >= n):
        raise ValueError(f"rank_of_targets: target indices must lie in [0, {n}), got range [{int(target.min())}, {int(target.max())}]")
    if not torch.isfinite(t_all).all():
        raise ValueError("rank_of_targets: target_score contains NaN or infinite values")
    _assert_finite_rows(items, "rank_of_targets: items")
    qc, ic = _chunks(query_chunk, item_chunk, items.device)
    ranks = torch.ones(nq, device=items.device, dtype=torch.int64)
    if nq == 0:
        return ranks

    def body(q0: int, q1: int, buf: torch.Tensor) -> None:
        q, g, t = queries[q0:q1], target[q0:q1], t_all[q0:q1].unsqueeze(1)
        rows = torch.arange(q1 - q0, device=items.device)
        count = torch.zeros(q1 - q0, device=items.device, dtype=torch.int64)
        for start in range(0, n, ic):
            w = min(ic, n - start)
            block = buf[: (q1 - q0) * w].view(q1 - q0, w)
            _score_block(q, items[start : start + w], block)
            local = g - start
            inside = (local >= 0) & (local < w)
            if inside.any():  # the target's own (replaced) score does not count
                block[rows[inside], local[inside]] = -math.inf
            count += _count_ranked_before(block, t, local)
        ranks[q0:q1] += count

    _run_query_blocks(nq, qc, min(ic, n), items, workers, body)
    return ranks


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_topk(queries, items, k: int, *, index=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k by inner product with faiss `IndexFlatIP` (exact; optional extra `ftbench[faiss]`).

    faiss does not guarantee the lower-index tie-break; use `exact_topk` for the reference order.
    `index` may be a prebuilt `faiss.IndexFlatIP` holding the items (then `items` is ignored and
    may be None). Returns CPU tensors (scores float32 [Q, k], indices int64 [Q, k]).
    """
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("faiss_topk needs faiss: pip install 'ftbench[faiss]' (faiss-cpu)") from exc
    q = np.ascontiguousarray(torch.as_tensor(queries).detach().cpu().numpy(), dtype=np.float32)
    if index is None:
        x = np.ascontiguousarray(torch.as_tensor(items).detach().cpu().numpy(), dtype=np.float32)
        if q.ndim != 2 or x.ndim != 2 or q.shape[1] != x.shape[1]:
            raise ValueError(f"faiss_topk: need queries [Q, d] and items [N, d], got {q.shape} and {x.shape}")
        n = x.shape[0]
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
    else:
        n = index.ntotal
    if not 1 <= k <= n:
        raise ValueError(f"faiss_topk: k={k} must lie in [1, N={n}]")
    d, i = index.search(q, int(k))
    return torch.from_numpy(d), torch.from_numpy(i)
