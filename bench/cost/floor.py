"""A training step's FLOPs and its GEMM floor: the time its matrix products take alone.

One step runs under two dispatch modes at once: `torch.utils.flop_counter.FlopCounterMode` counts
its FLOPs (forward and backward: every matrix product, 2 m n k each), and `GemmRecorder` writes
down every matrix product the step dispatched (mm, addmm, bmm, baddbmm, ...: the op, its tensor
arguments' shapes, strides and dtype, and its scalar arguments). `replay` then runs exactly those
products again, in the step's order, on preallocated random tensors of the same shapes and
strides: the time of one pass is the step's GEMM floor on this machine, the time a step would take
if it did nothing but its matrix products at this BLAS's speed. A step's efficiency is that floor
over the measured step time (1: nothing but GEMMs; the rest is elementwise work, reductions,
indexing, the optimiser and Python).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten
#: the matrix-product overloads a step may dispatch (a Linear is addmm or mm, a matmul mm or bmm)
GEMM_OPS = frozenset(
    {
        _aten.mm.default,
        _aten.addmm.default,
        _aten.bmm.default,
        _aten.baddbmm.default,
        _aten.addbmm.default,
        _aten._addmm_activation.default,
    }
)


@dataclass(frozen=True)
class GemmCall:
    """One matrix product as the step dispatched it."""

    op: Any  # the aten overload (replayed as is)
    shapes: tuple[tuple[int, ...], ...]  # the tensor arguments', in order
    strides: tuple[tuple[int, ...], ...]
    dtype: torch.dtype
    scalars: tuple[tuple[str, Any], ...] = ()  # keyword arguments (beta, alpha, use_gelu)

    @property
    def name(self) -> str:
        return str(self.op.overloadpacket.__name__)

    @property
    def flops(self) -> int:
        """2 m n k summed over the batch: the count FlopCounterMode uses for every product op."""
        a, b = self.shapes[-2], self.shapes[-1]  # the two multiplied operands are the last two
        if len(a) == 3:  # bmm-like: [n, m, k] @ [n, k, p]; addbmm sums the batch, the count is the same
            return 2 * a[0] * a[1] * a[2] * b[2]
        return 2 * a[0] * a[1] * b[1]

    def describe(self) -> dict[str, Any]:
        return {"op": self.name, "shapes": [list(s) for s in self.shapes], "dtype": str(self.dtype).split(".")[-1]}


class GemmRecorder(TorchDispatchMode):
    """Records every matrix product (`GEMM_OPS`) dispatched while active, forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[GemmCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in GEMM_OPS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if len(tensors) != len(args):
                raise TypeError(f"{func}: a positional argument that is not a tensor; cannot replay it")
            self.calls.append(
                GemmCall(
                    op=func,
                    shapes=tuple(tuple(t.shape) for t in tensors),
                    strides=tuple(t.stride() for t in tensors),
                    dtype=tensors[0].dtype,
                    scalars=tuple(sorted(kwargs.items())),
                )
            )
        return func(*args, **kwargs)


@dataclass
class StepProfile:
    """What one step computed: its FLOPs (FlopCounterMode's total and per op) and its products."""

    flops: int
    flops_by_op: dict[str, int]
    gemms: list[GemmCall] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: FLOPs, and each distinct product with how many times the step ran it."""
        distinct: dict[tuple, dict[str, Any]] = {}
        for call in self.gemms:
            key = (call.name, call.shapes, call.dtype)
            row = distinct.setdefault(key, {**call.describe(), "count": 0})
            row["count"] += 1
        return {
            "gflop": self.flops / 1e9,
            "gflop_by_op": {k: v / 1e9 for k, v in self.flops_by_op.items()},
            "gemm_calls": len(self.gemms),
            "gemm_gflop": sum(c.flops for c in self.gemms) / 1e9,
            "gemms": sorted(distinct.values(), key=lambda r: (-r["count"], r["op"], r["shapes"])),
        }


def profile_step(step: Callable[[], Any]) -> StepProfile:
    """Run `step()` once under FlopCounterMode and `GemmRecorder`: its FLOPs and its products."""
    counter = FlopCounterMode(display=False)
    recorder = GemmRecorder()
    with counter, recorder:
        step()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return StepProfile(flops=int(counter.get_total_flops()), flops_by_op=by_op, gemms=recorder.calls)


def _operand(
    shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """A random tensor with this shape and these strides (a broadcast bias keeps its 0 strides)."""
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride) if n > 0)
    if any(n == 0 for n in shape):
        extent = 0
    base = torch.randn(max(extent, 1), generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
    return base.as_strided(shape, stride)


class GemmReplay:
    """The recorded products on preallocated operands: `run()` is one pass, in the step's order."""

    def __init__(self, calls: list[GemmCall], device: torch.device | str = "cpu", seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self._work = []
        for call in calls:
            operands = [_operand(s, st, call.dtype, gen, device) for s, st in zip(call.shapes, call.strides)]
            self._work.append((call.op, operands, dict(call.scalars)))

    def run(self) -> None:
        for op, operands, scalars in self._work:
            op(*operands, **scalars)
