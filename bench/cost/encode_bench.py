"""Encoding throughput of the frozen backbones against what the CPU can do (`ftbench cost --encode-bench`).

For each input set (the grocery mini's texts and images as its loader reads them; a seeded set of
synthetic product texts, half titles of 4-14 words, half descriptions of log-normal length,
median 45 words, up to 400), and each backbone (minilm for texts, efficientnet-lite0 for images):

- work per input: the model's FLOPs (`torch.utils.flop_counter.FlopCounterMode`) for inputs
  encoded one at a time (no padding): the work the encoder cannot avoid;
- ``before``: the path up to issue 32: batches of `batch_size` in the inputs' order (texts padded to
  their batch's longest), images decoded in the model's thread, fp32;
- ``after``: the path `FeatureCache` takes now: the backbone's `encode_order` (minilm: longest
  first), images decoded on worker threads ahead of the model, at the backbone's precision (fp32
  unless $FTBENCH_ENCODE_PRECISION says otherwise);
- ``bf16``: the after path with bf16 autocast forced, and the least cosine of its features with
  the fp32 ones (bf16 is used only at cosine >= `BF16_MIN_COSINE`);

each as inputs per second and as achieved GFLOP/s (inputs/s x work per input), set against the
GFLOP/s of one large fp32 (and bf16) matrix product measured in the same process: the efficiency.
The slow ``before`` path of the large text set is timed on its first `before_texts` texts only
(its batches are input-order batches whatever the set's size, so its rate does not depend on it).
The machine (CPU model and flags, cores, torch threads) and its load average are recorded: on a
shared machine every figure is lower and noisier than the code's.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import apply_overrides
from ..datasets import DATASETS
from ..features.backbones import create_backbone
from ..features.cache import FeatureCache, record_inputs
from .warnings import machine_load


def synthetic_product_texts(n: int, seed: int = 0) -> list[str]:
    """`n` product texts (module docstring): titles and descriptions alternately, each ending in its index."""
    rng = np.random.default_rng(seed)
    words = (
        "cotton slim fit regular stretch denim jacket shirt dress knit wool blend trousers sneakers leather "
        "sole lightweight breathable organic recycled polyester elastic waistband pockets zip button collar "
        "sleeve hem washable machine wash colour navy black white grey beige red striped printed floral "
        "classic modern everyday comfort design soft touch premium quality fabric lining hood drawstring "
        "relaxed oversized cropped high waist ankle length long short round neck v-neck crew pack of two "
        "summer winter outdoor sport running training women men kids unisex size small medium large"
    ).split()
    out = []
    for i in range(n):
        if i % 2 == 0:
            k = int(rng.integers(4, 15))
        else:
            k = int(min(400, max(8, rng.lognormal(np.log(45), 0.8))))
        out.append(" ".join(rng.choice(words, size=k)) + f" {i}")
    return out


def grocery_inputs(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """The grocery-store folder's distinct texts and image paths, as its loader hands them to the
    encoders (catalog views and photo queries), read without encoding anything."""
    plugin = DATASETS.get("grocery-store")
    config = apply_overrides(
        plugin.Config(),
        {"data_dir": str(data_dir), "image_backbone": "hash", "text_backbone": "hash", "use_cache": False},
        "grocery-store",
    )
    with record_inputs() as recorded:
        plugin().build(config)
    texts: list[str] = []
    images: list[str] = []
    for slots, table, _ in recorded.catalogs:
        for row in table:
            for slot, x in zip(slots, row):
                if x is not None:
                    (texts if slot.modality == "text" else images).append(str(x))
    images += [str(x) for batch in recorded.queries for x in batch]  # the grocery queries are photos
    return list(dict.fromkeys(texts)), list(dict.fromkeys(images))


def cpu_description() -> dict[str, Any]:
    model: str | None = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()

    return {
        "model": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"}),
    }


def matmul_gflops(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of `repeats` [size x size] @ [size x size] products: the CPU's ceiling
    for dense work at this moment (same threads, same neighbours)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_input(backbone, inputs: list, sample: int = 48) -> float:
    """Mean FLOPs of encoding one input alone, over `sample` inputs spread evenly through `inputs`."""
    picks = [inputs[i] for i in np.unique(np.linspace(0, len(inputs) - 1, min(sample, len(inputs))).round().astype(int))]
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        for x in picks:
            backbone.encode([x])
    return counter.get_total_flops() / len(picks)


def _before(backbone, inputs: list, chunk: int = 256) -> np.ndarray:
    """The encode path up to issue 32: chunks of the cache in the given order, batches of
    `batch_size` in order, images decoded in this thread, no prefetch."""
    workers = getattr(backbone, "decode_workers", None)
    if workers is not None:
        backbone.decode_workers = 0
    try:
        parts = []
        for a in range(0, len(inputs), chunk):
            part = inputs[a : a + chunk]
            for b in range(0, len(part), backbone.batch_size):
                parts.append(backbone._run_model(part[b : b + backbone.batch_size], "item"))
        return np.concatenate(parts)
    finally:
        if workers is not None:
            backbone.decode_workers = workers


def _after(backbone, inputs: list) -> np.ndarray:
    return FeatureCache(enabled=False).encode(backbone, inputs)


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def bench_set(
    name: str,
    spec: str,
    modality: str,
    inputs: list,
    ceiling: dict[str, float],
    before_inputs: int | None = None,
    batch_size: int = 32,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One input set through one backbone: work per input, before / after / bf16 rates (module docstring)."""
    backbone = create_backbone(spec, modality, device="cpu", batch_size=batch_size)
    backbone.encode(inputs[:batch_size])  # loads the model, warms the kernels
    flops = flops_per_input(backbone, inputs)
    subset = inputs[: before_inputs or len(inputs)]
    row: dict[str, Any] = {
        "set": name,
        "backbone": spec,
        "modality": modality,
        "inputs": len(inputs),
        "gflop_per_input": round(flops / 1e9, 4),
        "precision_after": backbone.precision,
    }

    def rate(label: str, feats_seconds: tuple[np.ndarray, float], n: int, dtype: str) -> np.ndarray:
        feats, seconds = feats_seconds
        achieved = n / seconds * flops / 1e9
        row[label] = {
            "inputs": n,
            "seconds": round(seconds, 2),
            "inputs_per_s": round(n / seconds, 2),
            "gflops": round(achieved, 2),
            "efficiency_vs_matmul": round(achieved / ceiling[dtype], 3),
        }
        say(
            f"{name} {spec} {label}: {n / seconds:.1f} inputs/s ({achieved:.1f} GFLOP/s, "
            f"{achieved / ceiling[dtype]:.0%} of a large {dtype} matmul)"
        )
        return feats

    before = rate("before", _timed(lambda: _before(backbone, subset)), len(subset), "fp32")
    after = rate("after", _timed(lambda: _after(backbone, inputs)), len(inputs), backbone.precision)
    row["after_vs_before_max_abs_diff"] = float(np.abs(after[: len(subset)] - before).max())
    row["speedup"] = round(row["after"]["inputs_per_s"] / row["before"]["inputs_per_s"], 2)
    if backbone.supports_bf16:
        low_bb = create_backbone(spec, modality, device="cpu", batch_size=batch_size)
        low_bb.force_precision("bf16")
        low_bb.encode(inputs[:batch_size])
        low = rate("bf16", _timed(lambda: _after(low_bb, subset)), len(subset), "bf16")
        row["bf16"]["min_cosine_vs_fp32"] = round(_min_cosine(low, after[: len(subset)]), 6)
        row["bf16"]["calibration_min_cosine"] = round(low_bb.bf16_agreement(), 6)
    return row


def run_encode_bench(
    data_dir: str | Path,
    texts: int = 10_000,
    before_texts: int = 1_000,
    images: int | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every set and backbone (module docstring), the grocery images cut to the first `images`
    when given; the machine and its load before and after."""
    load_before = machine_load()
    ceiling = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    say(f"large matmul: {ceiling['fp32']:.1f} GFLOP/s fp32, {ceiling['bf16']:.1f} GFLOP/s bf16")
    grocery_texts, grocery_images = grocery_inputs(data_dir)
    grocery_images = grocery_images[:images] if images else grocery_images
    rows = [
        bench_set("grocery-mini texts", "minilm", "text", grocery_texts, ceiling, say=say),
        bench_set(
            f"grocery-mini images ({len(grocery_images)})", "efficientnet-lite0", "image", grocery_images, ceiling, say=say
        ),
        bench_set(
            f"synthetic {texts} product texts",
            "minilm",
            "text",
            synthetic_product_texts(texts),
            ceiling,
            before_inputs=before_texts,
            say=say,
        ),
    ]
    return {
        "cpu": cpu_description(),
        "matmul_gflops": {k: round(v, 1) for k, v in ceiling.items()},
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
        "sets": rows,
        "data_dir": str(data_dir),
    }


def format_encode_bench(result: dict[str, Any]) -> str:
    cpu = result["cpu"]
    lines = [
        f"{cpu['model']} ({cpu['cores']} cores, torch {cpu['torch_threads']} threads, {', '.join(cpu['flags'])}); "
        f"large matmul {result['matmul_gflops']['fp32']} GFLOP/s fp32, {result['matmul_gflops']['bf16']} bf16; "
        f"load {result['machine_load_before']['load_1min']:.1f} before"
    ]
    for row in result["sets"]:
        parts = [
            f"{label} {row[label]['inputs_per_s']}/s ({row[label]['efficiency_vs_matmul']:.0%})"
            for label in ("before", "after", "bf16")
            if label in row
        ]
        lines.append(
            f"{row['set']} [{row['backbone']}, {row['gflop_per_input']} GFLOP each]: "
            + ", ".join(parts)
            + f"; after/before {row['speedup']}x"
        )
    return "\n".join(lines)
