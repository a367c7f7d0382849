"""`rank_of_targets`: the 1-based rank of one given item per query, chunked like the scans."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._blocks import _check_inputs, _chunks, _score_block
from ._threads import _run_query_blocks


def _assert_finite_rows(x: torch.Tensor, what: str, chunk: int = 65536) -> None:
    """Raise unless every entry of x is finite (checked in row chunks: no full-size temporary)."""
    for s in range(0, x.shape[0], chunk):
        if not torch.isfinite(x[s : s + chunk]).all():
            raise ValueError(f"{what} contain NaN or infinite values")


def _count_ranked_before(block: torch.Tensor, t: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Per row r of a score block [R, w]: #{j : s_rj > t_r} + #{j < local_r : s_rj == t_r} (int64 [R]).

    On CPU through numpy: a comparison and a row sum of its booleans, an order of magnitude faster
    than torch's `count_nonzero(..., dim=1)` on such blocks. Ties are rare: a second pass (>=) finds the rows that have any, and only those
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
        raise ValueError(
            f"rank_of_targets: target indices must lie in [0, {n}), got range [{int(target.min())}, {int(target.max())}]"
        )
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
