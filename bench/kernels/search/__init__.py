"""Exact inner-product search over a catalog, chunked so that memory never grows with Q x N.

Exact search is chunked matmul + top-k with ties broken by the lower item index; faiss is an
optional backend and a test oracle.

Ordering. For a query q with scores s_j = <q, x_j> over items j = 0..N-1, the ranked list is the
order of the pairs (-s_j, j) ascending, i.e. higher score first and, among equal scores, the lower
item index first. `exact_topk` returns the first k entries of that list exactly (including when
equal scores straddle the k-th position or chunk boundaries); `rank_of_targets` returns the
1-based position of one given item in that list when its own score is replaced.

The search is split by concern, one private module each, on top of one another:

- `_blocks` (score blocks, the threshold filter, candidate reservoirs) and `_rounding` (error
  bounds, directed roundings, the exact re-score) at the bottom;
- the scans of one query block: `_fp32` (reservoir selection), `_bf16` (bfloat16 first pass
  certified by an error bound) and `_lowrank` (rank-r first pass certified by a residual bound);
- `_plan` (which scan `precision="auto"` takes, `SEARCH_ENV`, the bf16 hardware decision) and
  `_threads` (query blocks on worker threads);
- `_topk` (`exact_topk`, the dispatcher), `_ranks` (`rank_of_targets`) and `_faiss` (the
  optional faiss backend and test oracle).

Each module's docstring states its algorithm, bounds and references.
"""

from ._bf16 import BF16Catalog, bf16_topk_chunk, score_bounds
from ._blocks import DEFAULT_GROUP_SIZE, DEFAULT_ITEM_CHUNK, DEFAULT_QUERY_CHUNK, lexicographic_topk
from ._blocks import _chunks as _chunks  # re-exported for callers that chunk as the scans do
from ._faiss import faiss_available, faiss_topk
from ._lowrank import LowRankCatalog, TooManyCandidates, fit_rank, lowrank_topk_chunk, principal_basis
from ._plan import SCANS, SEARCH_ENV, forced_scan, measured_speedup, plan_scan, search_precision
from ._ranks import rank_of_targets
from ._threads import effective_workers
from ._topk import exact_topk

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_ITEM_CHUNK",
    "DEFAULT_QUERY_CHUNK",
    "SCANS",
    "SEARCH_ENV",
    "BF16Catalog",
    "LowRankCatalog",
    "TooManyCandidates",
    "bf16_topk_chunk",
    "effective_workers",
    "exact_topk",
    "faiss_available",
    "faiss_topk",
    "fit_rank",
    "forced_scan",
    "lexicographic_topk",
    "lowrank_topk_chunk",
    "measured_speedup",
    "plan_scan",
    "principal_basis",
    "rank_of_targets",
    "score_bounds",
    "search_precision",
]
