"""`exact_topk`: the public top-k search, dispatching each query block to the pass `plan_scan` picks."""

from __future__ import annotations

import threading

import torch

from . import _lowrank  # its chunk function and fallback through the module: tests substitute them
from ._bf16 import BF16Catalog, bf16_topk_chunk
from ._blocks import DEFAULT_GROUP_SIZE, _check_inputs, _chunks
from ._fp32 import _topk_query_chunk
from ._plan import plan_scan
from ._threads import _run_query_blocks


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
    group_size : columns per group maximum in the threshold filter (see `_fp32._topk_query_chunk`).
    reservoir_size : per-row candidate count that triggers a compaction (default max(2k, 64)).
    workers : CPU only: query blocks are shared among this many Python threads, each running
        single-threaded torch ops (default `torch.get_num_threads()`; 1 = the caller's thread with
        torch's own intra-op threads). Used when there are >= 2 * 128 queries; the result does not
        depend on it. The caller's `torch.get_num_threads()` is restored afterwards.
    precision : "fp32" scans the catalog in the items' dtype; "bf16" (float32 items only) scans it
        with bfloat16 inputs, keeps every item that an error bound cannot exclude from the top-k
        and re-scores those in fp32 (`ftbench.kernels.search._bf16`: the result is the exact fp32
        top-k, certified by the bound); "lowrank" (float32 items only) scans a rank-r projection
        of the catalog augmented with each item's residual norm, which bounds the rest of the
        inner product, and re-scores the items the bound cannot exclude
        (`ftbench.kernels.search._lowrank`: the same certified result); "auto" (default) takes
        lowrank where the catalog is large and nearly low-rank, else bf16 where
        `search_precision(device)` finds it faster (bf16 matrix units and a short
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
        stats = {"fallback_blocks": 0, "candidates": 0, "rows": 0}
        lock = threading.Lock()  # workers share the counters
        # workers (known by their own S buffer) whose bound stopped pruning: their later blocks go
        # straight to fp32. Per worker, not shared, so that which blocks fall back - recorded in
        # the run's counts - does not depend on how the workers' progress interleaves.
        # Keyed by the buffer's id, holding the buffer itself: a freed buffer's address can be
        # reused by a worker that starts after another finished, and would inherit its fallback.
        fell_back: dict[int, torch.Tensor] = {}

        def body_lowrank(q0: int, q1: int, buf: torch.Tensor) -> None:
            if fell_back.get(id(buf)) is not buf:
                mine: dict = {}
                try:
                    out_s[q0:q1], out_i[q0:q1] = _lowrank.lowrank_topk_chunk(queries[q0:q1], lowrank, k, ic, buf, mine)
                    with lock:
                        stats["candidates"] += mine["candidates"]
                        stats["rows"] += mine["rows"]
                    return
                except _lowrank.TooManyCandidates:
                    fell_back[id(buf)] = buf  # the bound does not prune on these data: this and later blocks in fp32
            with lock:
                stats["fallback_blocks"] += 1
            out_s[q0:q1], out_i[q0:q1] = _topk_query_chunk(queries[q0:q1], items, k, ic, group_size, limit, buf)

        _run_query_blocks(nq, qc, min(ic, n), items, workers, body_lowrank)
        if info is not None:
            info.update(
                rank=lowrank.rank,
                fallback_blocks=stats["fallback_blocks"],
                candidates_per_query=stats["candidates"] / max(1, stats["rows"]),
            )
        return out_s, out_i
    if scan == "bf16":
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
