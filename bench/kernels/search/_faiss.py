"""faiss `IndexFlatIP` as an optional backend and a test oracle (`pip install 'ftbench[faiss]'`)."""

from __future__ import annotations

import numpy as np
import torch


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401 - optional dependency, imported only where asked for
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
        import faiss  # optional dependency (see faiss_available)
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
