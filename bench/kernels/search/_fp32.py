"""The fp32 scan of `exact_topk`: blocked matmul and a reservoir selection.

Items are scanned in score blocks; per query row a reservoir of candidates and a running threshold
let most entries of a block be skipped after one read (the rule and its invariant: Notes of
`_topk_query_chunk`).

Memory bound (float32 scores, int64 indices), independent of N and of Q, per worker:
    4 * query_chunk * item_chunk              (score block S, reused)
  + 4 * query_chunk * item_chunk / group_size (group maxima)
  + 12 * query_chunk * (reservoir_size + c)   (reservoir; c = candidates admitted from one block,
                                               at most item_chunk, in practice a few hundred)
  + O(query_chunk * k) for the result of the chunk and the selection temporaries,
plus the output 12 * Q * k bytes. The full Q x N score matrix is never built. With the CPU
defaults (1024 x 16384) the S buffer is 64 MiB; BLAS packing buffers and allocator slack come on
top (`ftbench cost --search-bench` measures the peak; docs/perf/index.md).

References: J. Johnson, M. Douze, H. Jegou, "Billion-scale similarity search with GPUs" (2017) and
the faiss source (IndexFlat / ReservoirBlockResultHandler) for the blocked matmul + threshold
selection scheme.
"""

from __future__ import annotations

import torch

from ._blocks import _admit, _Reservoir, _score_block, lexicographic_topk


def _topk_query_chunk(
    q: torch.Tensor, items: torch.Tensor, k: int, item_chunk: int, group: int, limit: int, buf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k (scores, indices) of the query rows `q` over `items`, scanned in blocks of `item_chunk`.

    Notes
    -----
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
    """
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
                raise ValueError("exact_topk: some scores are NaN (the items contain NaN/inf values, or products overflow)")
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
