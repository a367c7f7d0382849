"""Which pass `exact_topk(precision="auto")` takes: low-rank, bf16 or fp32, and why.

The choice is a function of the inputs (dtype, size, the catalog's spectrum), the environment
(`SEARCH_ENV` forces a pass) and the hardware (bf16 matrix units, and a short measurement that
the bf16 score block is faster); never of a timed search, so that a run records the same reason
every time. Every pass returns the same exact top-k.
"""

from __future__ import annotations

import functools
import os
import time

import torch

from . import _lowrank
from ._bf16 import _bf16_mm
from ._blocks import _score_block
from ._lowrank import MAX_RESIDUAL_ENERGY, LowRankCatalog, fit_rank, principal_basis

#: bf16 pass must beat the fp32 one by this factor in the short measurement to be chosen
_MIN_SPEEDUP = 1.3

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
    qualifies (at least `_lowrank.MIN_ITEMS` float32 items whose top r <= d/4 principal
    directions hold all but `MAX_RESIDUAL_ENERGY` of their second moment: a (r+1)/d-sized scan),
    else "bf16" where the hardware makes that pass faster (`search_precision`), else
    "fp32". "lowrank" requested explicitly uses the smallest qualifying rank, or d/4. Every scan
    returns the same exact top-k. The reason is a function of the inputs, the environment and the
    hardware (never of a measured time), so that a run records the same text every time.
    """
    if precision not in SCANS:
        raise ValueError(f"exact_topk: precision must be one of {', '.join(map(repr, SCANS))}, got {precision!r}")
    how = "requested"
    forced = forced_scan() if precision == "auto" else None
    if forced is not None:
        precision = forced
        how = f"set by {SEARCH_ENV}={precision}"
    if precision == "fp32":
        return "fp32", how, None
    if items.dtype != torch.float32:
        if precision != "auto":
            raise ValueError(f"exact_topk: precision={precision!r} ({how}) needs float32 items, got {items.dtype}")
        return "fp32", f"items are {items.dtype}", None
    if precision == "bf16":
        return "bf16", how, None
    d = items.shape[1]
    if precision == "lowrank" or (items.shape[0] >= _lowrank.MIN_ITEMS and d >= 32):
        basis, energy = principal_basis(items)
        rank = fit_rank(energy)
        if rank is not None or precision == "lowrank":
            rank = rank or max(1, d // 4)
            reason = f"rank {rank} of {d} holds {float(energy[rank - 1]):.1%} of the items' second moment"
            return "lowrank", reason if precision == "auto" else f"{how}; {reason}", LowRankCatalog(items, basis[:, :rank])
        not_low = f"no rank <= d/4 holds {1 - MAX_RESIDUAL_ENERGY:.0%} of the items' second moment"
    else:
        not_low = f"fewer than {_lowrank.MIN_ITEMS} items"
    scan, reason = search_precision(items.device)
    return scan, f"{reason}; not low-rank: {not_low}", None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _measure_speedup(device: torch.device) -> float:
    """fp32 time / bf16 time of one score block like the search's (a few milliseconds)."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(256, 256, generator=gen).to(device)
    x = torch.randn(8192, 256, generator=gen).to(device)
    qb, xb = q.bfloat16(), x.bfloat16()
    o32 = torch.empty(256, 8192, device=device)
    ob = torch.empty(256, 8192, device=device, dtype=torch.bfloat16)

    def best(f) -> float:
        f()
        times = []
        for _ in range(3):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            f()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t)
        return min(times)

    t32 = best(lambda: _score_block(q, x, o32))
    tb = best(lambda: _bf16_mm(qb, xb, ob))
    return t32 / tb


@functools.cache
def _decide(device_type: str, device_index: int | None) -> tuple[str, str, float | None]:
    """(scan, reason, measured speed-up or None). The reason never carries the measured figure: it
    is recorded with a run's evaluation counts, which the same command must reproduce exactly; the
    figure goes to the run's timing block (`measured_speedup`)."""
    forced = forced_scan()
    if forced in ("fp32", "bf16"):  # (lowrank is no choice between these two: the hardware decides it)
        return forced, f"set by {SEARCH_ENV}={forced}", None
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    if device_type == "cpu":
        flags = _cpu_flags() & {"amx_bf16", "avx512_bf16"}
        if not flags:
            return "fp32", "the CPU has no bf16 matrix instructions (no amx_bf16 / avx512_bf16 in /proc/cpuinfo)", None
        what = "CPU flags " + ", ".join(sorted(flags))
    elif device_type == "cuda":
        if not torch.cuda.is_bf16_supported():
            return "fp32", "the GPU has no bf16 support", None
        what = "CUDA bf16"
    else:
        return "fp32", f"no bf16 path for device type {device_type}", None
    speedup = _measure_speedup(device)
    if speedup >= _MIN_SPEEDUP:
        return "bf16", f"{what}; bf16 score block measured at least {_MIN_SPEEDUP}x faster than fp32", speedup
    return "fp32", f"{what}, but the bf16 score block measured less than {_MIN_SPEEDUP}x faster than fp32", speedup


def search_precision(device: torch.device | str) -> tuple[str, str]:
    """("bf16" | "fp32", reason): the path `exact_topk(precision="auto")` takes on this device.

    bf16 where the hardware has bf16 matrix units (CPU flags amx_bf16 / avx512_bf16, or CUDA) and
    a short measurement shows the bf16 score block faster by >= 1.3x; fp32 elsewhere. Decided
    once per device and process; the environment variable FTBENCH_SEARCH_PRECISION=fp32|bf16
    overrides it (it forces `exact_topk`'s whole choice: `SEARCH_ENV`). The reason names no measured figure (`measured_speedup` gives it), so that the
    same inputs give the same text.
    """
    device = torch.device(device)
    return _decide(device.type, device.index)[:2]


def measured_speedup(device: torch.device | str) -> float | None:
    """fp32 time / bf16 time of the score block that `search_precision` measured on this device
    to decide, or None where it measured nothing (no bf16 units, or FTBENCH_SEARCH_PRECISION set).
    A timing: runs record it in their timing block, never beside the choice it explains."""
    device = torch.device(device)
    return _decide(device.type, device.index)[2]
