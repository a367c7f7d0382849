"""What every cost command measures the same way: device synchronisation, repeated timing, and the
peak memory of a piece of work above the level before it.

Peak memory: on CUDA the peak of allocated tensor memory (`torch.cuda.max_memory_allocated`) above
the allocation at the start; on CPU the rise of the process's resident-set high-water mark
(VmHWM, reset at the start by writing 5 to /proc/self/clear_refs, Linux >= 4.0) above the resident
set at the start, after returning freed heap to the OS (glibc `malloc_trim`) so that the starting
level is not inflated by memory already freed. Where the high-water mark cannot be reset the CPU
figure is unknown (None), not a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for the queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def proc_status_kb(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory in MiB above the level at construction (module docstring): create it, run the
    work, read `extra_mb()`; several readings give the peak so far."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        sync(device)
        self._before: int | None  # None where the peak RSS could not be reset (no baseline)
        if device.type == "cuda":
            self._before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            _malloc_trim()
            self._before = proc_status_kb("VmRSS") if _reset_peak_rss() else None

    def extra_mb(self) -> float | None:
        sync(self.device)
        if self.device.type == "cuda":
            assert self._before is not None  # always set on cuda
            return (torch.cuda.max_memory_allocated(self.device) - self._before) / 2**20
        peak = proc_status_kb("VmHWM")
        if self._before is None or peak is None:
            return None
        return max(0, peak - self._before) / 1024.0


def peak_extra_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Run `fn()` once; its peak memory above the level before the call, in MiB."""
    meter = PeakMemory(device)
    fn()
    return meter.extra_mb()
