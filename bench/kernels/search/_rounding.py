"""Rounding bounds and the exact re-score shared by the certified (bf16 and low-rank) scans.

`_gamma(n)` is Higham's gamma_n = n u / (1 - n u) for fp32 (u = 2^-24): an fp32 sum of n products
errs by at most gamma_n times the sum of their magnitudes (N. J. Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., sec. 3.1). The directed roundings keep a float64 bound a bound once
it is stored in fp32, and `_exact_scores` re-scores candidates as fl32 of the float64 inner product,
which no BLAS summation order changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._blocks import _SENTINEL

_U32 = 2.0**-24


def _gamma(d: int) -> float:
    du = d * _U32
    if du >= 1:
        raise ValueError(f"bf16 search: dimension {d} too large for the fp32 accumulation bound")
    return du / (1.0 - du)


def _round_toward_minus_inf(x: torch.Tensor) -> torch.Tensor:
    """float64 -> float32, rounded down (keeps -inf)."""
    out = x.float()
    return torch.where(out.double() > x, torch.nextafter(out, torch.full_like(out, -math.inf)), out)


def _round_toward_plus_inf(x: torch.Tensor) -> torch.Tensor:
    """float64 -> float32, rounded up (keeps +inf)."""
    out = x.float()
    return torch.where(out.double() < x, torch.nextafter(out, torch.full_like(out, math.inf)), out)


def _exact_scores(q: torch.Tensor, items: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """fl32(<q_r, x_j> in float64) for the [R, c] indices (sentinel = padding, scored -inf).

    float64 products of fp32 numbers are exact and the sum errs by ~1e-16: rounded to fp32, the
    score no longer depends on a BLAS summation order."""
    r, c = index.shape
    d = items.shape[1]
    out = torch.empty((r, c), device=items.device)
    step = max(1, (1 << 20) // max(1, c * d))  # float64 temporaries of <= 8 MiB stay in cache
    if items.device.type == "cpu":  # numpy's gather and float64 matmul: ~1.2x torch's here
        x_np, q_np, out_np = items.detach().numpy(), q.detach().double().numpy(), out.numpy()
    for r0 in range(0, r, step):
        idx = index[r0 : r0 + step]
        pad = idx == _SENTINEL
        safe = idx.masked_fill(pad, 0)
        if items.device.type == "cpu":
            cand_np = np.take(x_np, safe.numpy(), axis=0).astype(np.float64)
            out_np[r0 : r0 + step] = np.matmul(cand_np, q_np[r0 : r0 + step, :, None])[..., 0]
            out[r0 : r0 + step].masked_fill_(pad, -math.inf)
            continue
        cand = items.index_select(0, safe.reshape(-1)).view(idx.shape[0], c, d)
        s = torch.bmm(cand.double(), q[r0 : r0 + step].double().unsqueeze(2)).squeeze(2)
        out[r0 : r0 + step] = s.float().masked_fill(pad, -math.inf)
    return out
