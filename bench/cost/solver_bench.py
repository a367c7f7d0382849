"""Our batched Sinkhorn (`ftbench.kernels.sinkhorn`) against POT's ``ot.solve_batch`` (issue #4).

The workload is the one `full_ot` produces: N problems of n x m views with cost
C_uv = 1 - <x^u, y^v> between random unit vectors (costs in [0, 2]), uniform marginals, the same
regulariser and the same fixed number of iterations for every solver (our ``tol=0``; POT's
``tol=0``, so its every-10-iterations convergence test never stops it early). Timings: warm-up,
then `repeats` rounds, each round running every method once in turn (so that load changes on
a shared machine hit all methods alike); the median per method is reported. Values and plans
are compared with POT's on the same problems.

Hardware context, measured per core (one thread) on this machine with the same torch build:
the streaming bandwidth (``y = 2 x`` over a buffer the size of the whole kernel), the in-cache
multiply-add rate (``addcmul_`` on a 256 KB buffer), and the exp rate. One Sinkhorn iteration
must at least read the kernel twice (K g and K^T f) and do 2 N n m multiply-adds, which gives two
lower bounds for the time per iteration, divided by the thread count (perfect scaling, an
optimistic bound); our time per iteration is (t(T iterations) - t(0 iterations)) / T.
On a shared machine the load of other processes changes every figure; the ratios, measured in
interleaved rounds, are the robust part.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..device import describe_device, resolve_device
from ..kernels.sinkhorn import sinkhorn
from .measure import sync


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def _best_rate(fn: Callable[[], Any], device: torch.device, work: float, repeats: int = 7) -> float:
    """Work per second of the fastest of `repeats` calls (after one warm-up call)."""
    fn()
    best = min(_timed(fn, device)[0] for _ in range(repeats))
    return work / best


def measure_hardware(num_elements: int, dtype: torch.dtype, device: torch.device) -> dict[str, float]:
    """Streaming bandwidth (GB/s), in-cache multiply-add rate and exp rate (G elements/s), per core
    on CPU (measured with one thread)."""
    if device.type == "cpu":
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _measure_hardware(num_elements, dtype, device)
        finally:
            torch.set_num_threads(previous)
    return _measure_hardware(num_elements, dtype, device)


def _measure_hardware(num_elements: int, dtype: torch.dtype, device: torch.device) -> dict[str, float]:
    item = torch.finfo(dtype).bits // 8
    x = torch.rand(num_elements, dtype=dtype, device=device)
    y = torch.empty_like(x)
    stream = _best_rate(lambda: torch.mul(x, 2.0, out=y), device, 2 * num_elements * item) / 1e9
    small = max(1, (256 * 1024) // item)
    acc = torch.rand(small, dtype=dtype, device=device)
    p, q = torch.rand_like(acc), torch.rand_like(acc)
    inner = 64

    def fma_loop():
        for _ in range(inner):
            acc.addcmul_(p, q)

    fma = _best_rate(fma_loop, device, inner * small) / 1e9
    exp = _best_rate(lambda: torch.exp(x, out=y), device, num_elements) / 1e9
    return {"stream_gb_per_s": stream, "cache_fma_g_per_s": fma, "exp_g_per_s": exp}


def make_problems(
    num_problems: int, n: int, m: int, dim: int, dtype: torch.dtype, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cost 1 - <x^u, y^v> for random unit x, y in R^dim, and uniform marginals."""
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(num_problems, n, dim, generator=gen, dtype=torch.float64), dim=-1)
    y = F.normalize(torch.randn(num_problems, m, dim, generator=gen, dtype=torch.float64), dim=-1)
    C = (1.0 - torch.einsum("kud,kvd->kuv", x, y)).to(dtype=dtype, device=device)
    a = torch.full((num_problems, n), 1.0 / n, dtype=dtype, device=device)
    b = torch.full((num_problems, m), 1.0 / m, dtype=dtype, device=device)
    return C, a, b


def run_solver_bench(
    num_problems: int = 65536,
    n: int = 8,
    m: int = 8,
    eps: float = 0.05,
    iterations: int = 50,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    dim: int = 16,
    seed: int = 0,
    include_pot_log: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Time ours (auto domain, and forced log domain) against POT's sinkhorn and log_sinkhorn.

    Returns a JSON-able dict: the configuration, per-method median / all timings (s), agreement
    with POT (max |value| and |plan| differences), the speed-up ratios, our time per iteration
    and its ratio to the hardware lower bounds, and the machine description. `threads` sets
    torch's CPU thread count for the run (default: unchanged), the same for every method.
    """
    if threads is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run_solver_bench(
                num_problems, n, m, eps, iterations, repeats, warmup, device, dtype, dim, seed, include_pot_log, None
            )
        finally:
            torch.set_num_threads(previous)
    import ot  # heavy: POT

    dev = resolve_device(device) if isinstance(device, str) else device
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    C, a, b = make_problems(num_problems, n, m, dim, torch_dtype, dev, seed)

    methods: dict[str, Callable[[], Any]] = {
        "ours": lambda: sinkhorn(C, a, b, eps, iterations=iterations, tol=0.0),
        "ours_log": lambda: sinkhorn(C, a, b, eps, iterations=iterations, tol=0.0, domain="log"),
        "ours_setup_only": lambda: sinkhorn(C, a, b, eps, iterations=0, tol=0.0),
        "pot_sinkhorn": lambda: ot.solve_batch(C, eps, a, b, max_iter=iterations, tol=0.0, method="sinkhorn", grad="detach"),
    }
    if include_pot_log:
        methods["pot_log_sinkhorn"] = lambda: ot.solve_batch(
            C, eps, a, b, max_iter=iterations, tol=0.0, method="log_sinkhorn", grad="detach"
        )
    outputs: dict[str, Any] = {}
    for name, fn in methods.items():
        for _ in range(warmup):
            outputs[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            elapsed, outputs[name] = _timed(fn, dev)
            times[name].append(elapsed)
    median = {name: statistics.median(ts) for name, ts in times.items()}

    ours = outputs["ours"]
    agreement = {}
    for name in ("pot_sinkhorn", "pot_log_sinkhorn", "ours_log"):
        if name not in outputs:
            continue
        other = outputs[name]
        agreement[name] = {
            "max_abs_value_diff": float((ours.value - other.value).abs().max()),
            "max_abs_plan_diff": float((ours.plan - other.plan).abs().max()),
        }
    per_iteration = max(median["ours"] - median["ours_setup_only"], 0.0) / max(iterations, 1)
    hardware = measure_hardware(num_problems * n * m, torch_dtype, dev)
    item = torch.finfo(torch_dtype).bits // 8
    kernel_bytes = num_problems * n * m * item
    cores = torch.get_num_threads() if dev.type == "cpu" else 1
    bound_stream = 2 * kernel_bytes / (hardware["stream_gb_per_s"] * 1e9 * cores)
    bound_fma = 2 * num_problems * n * m / (hardware["cache_fma_g_per_s"] * 1e9 * cores)
    ratios = {"pot_sinkhorn_over_ours": median["pot_sinkhorn"] / median["ours"]}
    if "pot_log_sinkhorn" in median:
        ratios["pot_log_sinkhorn_over_ours"] = median["pot_log_sinkhorn"] / median["ours"]
        ratios["pot_log_sinkhorn_over_ours_log"] = median["pot_log_sinkhorn"] / median["ours_log"]
    values_agree = all(v["max_abs_value_diff"] <= 1e-5 for k, v in agreement.items() if k.startswith("pot"))
    return {
        "config": {
            "num_problems": num_problems,
            "n": n,
            "m": m,
            "eps": eps,
            "iterations": iterations,
            "repeats": repeats,
            "warmup": warmup,
            "dtype": dtype,
            "dim": dim,
            "seed": seed,
            "cost": "1 - <x, y>, random unit vectors",
            "marginals": "uniform",
        },
        "ours_domain": ours.domain,
        "median_s": median,
        "times_s": times,
        "ratios": ratios,
        "targets": {"pot_sinkhorn_over_ours": 3.0, "pot_log_sinkhorn_over_ours": 10.0, "value_tolerance": 1e-5},
        "targets_met": {
            "pot_sinkhorn": ratios["pot_sinkhorn_over_ours"] >= 3.0,
            "pot_log_sinkhorn": ratios.get("pot_log_sinkhorn_over_ours", float("nan")) >= 10.0,
            "values": values_agree,
        },
        "agreement": agreement,
        "per_iteration_s": per_iteration,
        "hardware": {
            **hardware,
            "kernel_bytes": kernel_bytes,
            "bound_stream_s_per_iteration": bound_stream,
            "bound_fma_s_per_iteration": bound_fma,
            "ours_over_stream_bound": per_iteration / bound_stream if bound_stream else float("nan"),
            "ours_over_fma_bound": per_iteration / bound_fma if bound_fma else float("nan"),
        },
        "machine": describe_device(dev),
        "versions": {"torch": torch.__version__, "pot": ot.__version__},
    }


def format_solver_bench(result: dict[str, Any]) -> str:
    """A plain-text report of `run_solver_bench`."""
    cfg = result["config"]
    med = result["median_s"]
    lines = [
        f"Batched entropic OT: {cfg['num_problems']} problems of {cfg['n']}x{cfg['m']}, eps={cfg['eps']}, "
        f"{cfg['iterations']} iterations (fixed), {cfg['dtype']}, median of {cfg['repeats']} "
        f"on {result['machine']['device']} ({result['machine']['torch_threads']} threads)",
        f"  ours ({result['ours_domain']} domain)   {1e3 * med['ours']:10.1f} ms",
        f"  ours (log domain)      {1e3 * med['ours_log']:10.1f} ms",
        f"  POT sinkhorn           {1e3 * med['pot_sinkhorn']:10.1f} ms   "
        f"x{result['ratios']['pot_sinkhorn_over_ours']:.1f} slower than ours (target >= 3)",
    ]
    if "pot_log_sinkhorn" in med:
        lines.append(
            f"  POT log_sinkhorn       {1e3 * med['pot_log_sinkhorn']:10.1f} ms   "
            f"x{result['ratios']['pot_log_sinkhorn_over_ours']:.1f} slower than ours (target >= 10), "
            f"x{result['ratios']['pot_log_sinkhorn_over_ours_log']:.1f} than ours in log domain"
        )
    for name, agr in result["agreement"].items():
        lines.append(
            f"  vs {name:<16} max |value diff| {agr['max_abs_value_diff']:.2e}, max |plan diff| {agr['max_abs_plan_diff']:.2e}"
        )
    hw = result["hardware"]
    lines += [
        f"  ours per iteration     {1e3 * result['per_iteration_s']:10.3f} ms "
        f"(setup + readout {1e3 * med['ours_setup_only']:.1f} ms)",
        f"  hardware per core: stream {hw['stream_gb_per_s']:.1f} GB/s, in-cache multiply-add "
        f"{hw['cache_fma_g_per_s']:.2f} G/s, exp {hw['exp_g_per_s']:.2f} G/s",
        f"  lower bounds per iteration: read K twice {1e3 * hw['bound_stream_s_per_iteration']:.3f} ms "
        f"(ours x{hw['ours_over_stream_bound']:.1f}), 2Nnm multiply-adds "
        f"{1e3 * hw['bound_fma_s_per_iteration']:.3f} ms (ours x{hw['ours_over_fma_bound']:.1f})",
        "  targets met: " + ", ".join(f"{k}={v}" for k, v in result["targets_met"].items()),
    ]
    return "\n".join(lines)
