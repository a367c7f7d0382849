"""Multi-process training (torchrun, DDP): which process am I, the process group, and the global batch.

Contrastive, optimal-transport and volume objectives are functions of the *whole* batch (every item
a negative of every other, Sinkhorn's marginals over the batch, MOVER's B x B plan), so splitting the
batch over processes must not change what the objective sees. Every process draws the same global
batch and view selection (identically seeded), encodes only its contiguous slice
(`DistributedContext.shard`; sizes differ by at most one item), and gathers the *encoded* batch from
every process in rank order (`gather_views`, `gather_with_grad`: open_clip's gather-with-grad with
`local_loss=False`), which rebuilds exactly the single-process batch; every process then computes
the unchanged objective on it. DDP's gradient average then equals the single-process gradient; the
objective's compute is repeated on every process (only towers and data loading are divided). Why
the gradients agree, and why no local loss is offered: docs/scaling-out.md#what-a-multi-process-run-does.

The process group is initialised from the environment variables every launcher sets (torchrun,
or a cluster launcher configured like it): WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..objectives.base import EncodedViews

ENV_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the training processes (world_size 1: a single process)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str = "none"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, evaluates, prints and writes the result."""
        return self.rank == 0

    def shard_sizes(self, batch: int) -> list[int]:
        """Items of a global batch of `batch` encoded by each process, in rank order (contiguous
        slices, sizes differ by at most one)."""
        if batch < self.world_size:
            raise ValueError(
                f"a training step has {batch} items but there are {self.world_size} processes: every process "
                f"needs at least one item (raise --batch-size or lower torchrun's --nproc_per_node)"
            )
        base, extra = divmod(batch, self.world_size)
        return [base + (1 if r < extra else 0) for r in range(self.world_size)]

    def shard(self, batch: int) -> slice:
        """This process's rows of a global batch of `batch` items."""
        sizes = self.shard_sizes(batch)
        start = sum(sizes[: self.rank])
        return slice(start, start + sizes[self.rank])

    def describe(self, global_batch: int) -> dict:
        """What a result records about the processes that trained it."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "global_batch_size": global_batch,
            "per_process_batch_size": self.shard_sizes(global_batch) if global_batch >= self.world_size else [],
        }


SINGLE_PROCESS = DistributedContext()


def _int_variable(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = environ.get(name)
    if text is None:
        if default is None:
            raise ValueError(
                f"environment variable {name} is not set; a multi-process run needs "
                f"{', '.join(ENV_VARIABLES)} (torchrun sets them)"
            )
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


def from_environment(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """Read WORLD_SIZE / RANK / LOCAL_RANK (missing WORLD_SIZE or 1: a single process).

    The backend is left "none" here; `setup` picks it from the device.
    """
    environ = os.environ if environ is None else environ
    world = _int_variable(environ, "WORLD_SIZE", 1)
    if world < 1:
        raise ValueError(f"environment variable WORLD_SIZE must be at least 1, got {world}")
    if world == 1:
        return SINGLE_PROCESS
    rank = _int_variable(environ, "RANK")
    local_rank = _int_variable(environ, "LOCAL_RANK", rank)
    if not 0 <= rank < world:
        raise ValueError(f"environment variable RANK={rank} is outside 0..WORLD_SIZE-1 = 0..{world - 1}")
    if local_rank < 0:
        raise ValueError(f"environment variable LOCAL_RANK must be >= 0, got {local_rank}")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} not set: launch with torchrun, or set "
            f"{', '.join(ENV_VARIABLES)} as torchrun does"
        )
    return DistributedContext(world_size=world, rank=rank, local_rank=local_rank)


def process_device(device: torch.device, context: DistributedContext) -> torch.device:
    """The device of this process: with several processes, `--device cuda` means cuda:LOCAL_RANK."""
    if not context.enabled or device.type != "cuda":
        return device
    if device.index is not None:
        raise ValueError(
            f"--device {device}: with {context.world_size} processes pass --device cuda (or auto); "
            f"each process then uses cuda:LOCAL_RANK"
        )
    count = torch.cuda.device_count()
    if context.local_rank >= count:
        raise ValueError(
            f"--device cuda: LOCAL_RANK={context.local_rank} but this node has {count} GPU(s); "
            f"start at most {count} processes per node (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", context.local_rank)


def setup(device: torch.device, environ: Mapping[str, str] | None = None) -> tuple[DistributedContext, torch.device]:
    """Join the process group described by the environment (once per process) and return this
    process's context and device. NCCL on CUDA, gloo on CPU. A single process returns at once."""
    context = from_environment(environ)
    if not context.enabled:
        return context, device
    device = process_device(device, context)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        if dist.get_world_size() != context.world_size or dist.get_rank() != context.rank:
            raise RuntimeError("the process group differs from WORLD_SIZE / RANK of the environment")
        return replace(context, backend=dist.get_backend()), device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in (os.environ if environ is None else environ):
        # processes on one node share its cores; oversubscribed CPU threads spin against each
        # other (a 10x slower step on 2 cores). torchrun sets OMP_NUM_THREADS=1 itself.
        local_world = _int_variable(os.environ if environ is None else environ, "LOCAL_WORLD_SIZE", context.world_size)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local_world, 1)))
    dist.init_process_group(backend=backend, init_method="env://", world_size=context.world_size, rank=context.rank)
    atexit.register(shutdown)
    return replace(context, backend=backend), device


def shutdown() -> None:
    """Leave the process group (no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums, over processes, the gradient each sends to every slice and
    returns this process's slice (open_clip's gather-with-grad). Slices may differ in size."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: tuple[int, ...], rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)  # never reduce autograd's buffer in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def _gather_padded(tensor: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Concatenate every process's `tensor` ([sizes[r], ...], equal trailing shape) in rank order."""
    largest = max(sizes)
    padded = tensor.new_zeros((largest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)


def gather_with_grad(tensor: torch.Tensor, context: DistributedContext, sizes: tuple[int, ...]) -> torch.Tensor:
    """The rows of `tensor` from every process (process r holds `sizes[r]` rows), concatenated in
    rank order; gradients flow back to every process's rows, summed over processes (see the module
    docstring)."""
    if not context.enabled:
        return tensor
    _check_rows(tensor, context, sizes)
    return _GatherWithGrad.apply(tensor, tuple(sizes), context.rank)


def gather(tensor: torch.Tensor, context: DistributedContext, sizes: tuple[int, ...]) -> torch.Tensor:
    """`gather_with_grad` for tensors that carry no gradient (masks, weights, indices)."""
    if not context.enabled:
        return tensor
    _check_rows(tensor, context, sizes)
    return _gather_padded(tensor, tuple(sizes))


def _check_rows(tensor: torch.Tensor, context: DistributedContext, sizes: tuple[int, ...]) -> None:
    if len(sizes) != context.world_size or tensor.shape[0] != sizes[context.rank]:
        raise ValueError(f"process {context.rank} holds {tensor.shape[0]} rows but the shard sizes are {list(sizes)}")


def gather_views(views: EncodedViews, context: DistributedContext, sizes: tuple[int, ...]) -> EncodedViews:
    """The global batch's EncodedViews from every process's slice (process r holds `sizes[r]`
    items), in rank order.

    Slices are padded to the widest slice's number of view positions W (padding positions have
    mask False, as within one process), so the result has the same W, rows and layout as the
    single-process batch. Only the embeddings carry gradients.
    """
    if not context.enabled:
        return views
    rows, width = views.mask.shape
    shape = torch.tensor([width], dtype=torch.long, device=views.mask.device)
    dist.all_reduce(shape, op=dist.ReduceOp.MAX)
    pad = int(shape.item()) - width

    def widen(t: torch.Tensor) -> torch.Tensor:
        if pad == 0:
            return t
        filler = t.new_zeros((rows, pad, *t.shape[2:]))
        return torch.cat([t, filler], dim=1)

    embeddings = gather_with_grad(widen(views.embeddings), context, sizes)
    flags = gather(torch.stack([widen(views.mask), widen(views.is_primary)], dim=-1), context, sizes)
    side = gather(widen(views.side), context, sizes)
    weights = gather(torch.stack([widen(views.side_weight), widen(views.item_weight)], dim=-1), context, sizes)
    return EncodedViews(
        embeddings=embeddings,
        mask=flags[..., 0],
        is_primary=flags[..., 1],
        side=side,
        side_weight=weights[..., 0],
        item_weight=weights[..., 1],
        item_index=gather(views.item_index, context, sizes),
        content=None if views.content is None else gather(widen(views.content), context, sizes),
    )


def wrap(module: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `module` with several processes, `module` itself otherwise.

    `find_unused_parameters`: a process whose slice has no view of some modality does not use that
    tower in its forward, and some objective parameters are unused in some configurations (OAT's
    gates without queries); their contribution must still be counted in the average, and
    parameters unused by every process keep no gradient, as in one process. (DDP warns once when
    a step happens to use every parameter; the warning is harmless.)
    """
    if not context.enabled:
        return module

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
