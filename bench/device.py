"""Device selection (`--device auto|cpu|cuda`), training precision (`--precision`), seeding, and a
description of the hardware."""

from __future__ import annotations

import contextlib
import os
import platform
import random

import numpy as np
import torch

from .heap import describe as describe_heap
from .kernels.search import measured_speedup, search_precision

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"--device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    """`--precision` must be known, and bf16 supported by the device (CPUs emulate it; GPUs before
    Ampere lack it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16 (use fp32)")


def autocast(device: torch.device, precision: str):
    """The mixed-precision context of a training step's tower forward.

    bf16 runs the towers' matrix products in bfloat16 (torch.autocast; weights, gradients and the
    optimiser stay float32). Objectives always run in float32 on float32 embeddings: Sinkhorn
    iterations, log-determinants of Gram matrices and softmaxes over logit scales up to 100 need
    float32's mantissa. bf16 has float32's exponent range, so no loss scaling is needed.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # CPU kernels are deterministic already; on CUDA this forbids non-deterministic kernels
        torch.use_deterministic_algorithms(True, warn_only=False)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


def describe_device(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    # which scan exact search uses here (bf16 + certified fp32 re-score, or fp32) and why
    info["search_precision"], info["search_precision_reason"] = search_precision(device)
    info["heap"] = describe_heap()
    return info


def search_timing(device: torch.device) -> dict:
    """For a run's timing block: the fp32 / bf16 time ratio of the score block that the search's
    choice of pass on this device measured (`kernels.search.measured_speedup`), where it measured one
    (CPUs with bf16 matrix instructions, CUDA). The choice and its reason stay in the device record
    and the evaluation counts, without the figure: the same command must record the same text."""
    speedup = measured_speedup(device)
    return {} if speedup is None else {"bf16_score_block_speedup": round(speedup, 2)}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> dict:
    """Peak resident memory of the process (CPU) and peak allocated tensor memory (CUDA)."""
    out = {}
    try:
        import resource

        out["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, AttributeError):  # non-Unix
        pass
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
