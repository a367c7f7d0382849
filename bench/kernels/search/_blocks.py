"""Block primitives shared by every scan: score blocks, the threshold filter, candidate reservoirs.

A score block is S = Q_c X_c^T for a block of query rows and a block of items (`_score_block`,
through numpy's BLAS on CPU). `_admit` returns the entries of S above a per-row threshold, skipping
whole groups of columns through their maxima; `_Reservoir` keeps each row's admitted candidates
and reduces them to the exact top-k (`_select_topk`, `lexicographic_topk`: higher score first,
ties by lower item index). The fp32, bf16 and low-rank scans are built from these.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_SENTINEL = torch.iinfo(torch.int64).max

#: Defaults tuned on a 2-core AVX-512 CPU (1M x 256 items, k=500; see `ftbench cost --search-bench`).
DEFAULT_QUERY_CHUNK = {"cpu": 1024, "cuda": 2048}
DEFAULT_ITEM_CHUNK = {"cpu": 16384, "cuda": 32768}
DEFAULT_GROUP_SIZE = 16
_NUMPY_NONZERO = (
    True  # CPU: the filter through numpy (flatnonzero, maxima, comparisons); tests switch it off to run the CUDA code path
)
# CPU score blocks through numpy's matmul (OpenBLAS), measured faster than torch.mm for these shapes
# (docs/perf/index.md, "Evaluation at catalog scale"). Tests switch it off to compare paths.
_NUMPY_MATMUL = True


def _score_block(q: torch.Tensor, item_block: torch.Tensor, out: torch.Tensor) -> None:
    """out[R, w] = q [R, d] @ item_block[w, d]^T, through numpy's BLAS on CPU where it is faster."""
    if (
        _NUMPY_MATMUL
        and out.device.type == "cpu"
        and out.dtype in (torch.float32, torch.float64)
        and q.dtype == out.dtype
        and item_block.dtype == out.dtype
    ):
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
        raise ValueError(f"{what}: queries have dimension {queries.shape[1]} but items have dimension {items.shape[1]}")
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
            assert second is not None  # a reservoir that keeps a second value is always given one
            self.second.view(-1).index_copy_(0, flat, second)
        self.fill = new_fill
        self.fill_max = need

    def retain(self, keep: torch.Tensor) -> None:
        """Keep only the entries where `keep` [R, fill_max] is True, packed to the front of each row
        in their order (the rest padded again); fill and fill_max follow."""
        width = self.fill_max
        flat = _flatnonzero(keep)  # row-major positions of the kept entries
        kept = {
            name: getattr(self, name)[:, :width].reshape(-1).index_select(0, flat)
            for name, _ in self._STORES
            if getattr(self, name) is not None
        }
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
    """`_admit` on CPU through numpy, step for step: lower per-call overhead than torch on these
    small operations, and faster strided maxima and comparisons (docs/perf/index.md)."""
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
