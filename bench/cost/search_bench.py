"""Catalog-scale search benchmark: `exact_topk` (torch; numpy BLAS for the CPU score blocks) against faiss `IndexFlatIP`.

Wired as `ftbench cost --search-bench`; also runnable as `python -m ftbench.cost.search_bench`.

What is measured (the cost conventions: warm-up, then the median of repeats; device recorded):
  * time per query of an exact top-K search over N items of dimension d, for our chunked torch
    path and for faiss `IndexFlatIP.search` (the exact flat index; faiss's own BLAS + reservoir
    selection), on the same random unit vectors; the runs alternate (faiss, ours, faiss, ours ...)
    so that a change in machine load affects both alike;
  * the ratio ours / faiss of the median times (< 1: ours is faster);
  * top-K agreement: mean |top-K(ours) & top-K(faiss)| / K over queries (set overlap; ties aside),
    the fraction of queries with identical ordered lists, and the largest score difference;
  * peak extra memory of our search: on CPU the rise of the process's peak resident set (VmHWM,
    reset through /proc/self/clear_refs) above the resident set before the call; on CUDA the
    peak allocated tensor memory above the allocation before the call. The output (Q x K scores
    and indices) is included; the catalog itself is not. Measured on the first (cold) call, after
    glibc's malloc_trim, before faiss allocates anything.

faiss runs its BLAS kernel only when num_queries * dim >= `faiss.cvar.distance_compute_blas_threshold`
(128000 in faiss 1.15) and a much slower sequential scan below it; the default 4096 queries keep
the comparison like for like, and the report flags runs below the threshold.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from ..device import describe_device, resolve_device
from ..kernels.search import DEFAULT_GROUP_SIZE, _chunks, effective_workers, exact_topk, faiss_available, plan_scan
from .measure import peak_extra_mb, sync


def _random_unit(n: int, dim: int, gen: torch.Generator, device: torch.device, chunk: int = 65536) -> torch.Tensor:
    """n random unit vectors (Gaussian, normalised), generated in chunks to avoid a second copy."""
    out = torch.empty((n, dim), dtype=torch.float32, device=device)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        block = torch.randn((e - s, dim), generator=gen, dtype=torch.float32)
        out[s:e] = torch.nn.functional.normalize(block, dim=1).to(device)
    return out


def _load_embeddings(folder: str, num_queries: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Items and the first `num_queries` queries of a run's `--save-embeddings` folder."""
    from pathlib import Path

    root = Path(folder)
    paths = {name: root / f"{name}_embeddings.npy" for name in ("item", "query")}
    for _name, path in paths.items():
        if not path.is_file():
            raise ValueError(f"search bench: {path} not found (expected a folder written by `ftbench run --save-embeddings`)")
    items = np.load(paths["item"], mmap_mode="r", allow_pickle=False)
    queries = np.load(paths["query"], mmap_mode="r", allow_pickle=False)
    if items.ndim != 2 or queries.ndim != 2 or items.shape[1] != queries.shape[1]:
        raise ValueError(
            f"search bench: {root}: need item [N, d] and query [Q, d] embeddings, got {items.shape} and {queries.shape}"
        )
    # real copies (not views of the memory map): the catalog is resident before the search, so
    # that the search's peak-memory figure does not count its pages being read in
    items_t = torch.from_numpy(np.array(items, dtype=np.float32, copy=True)).to(device)
    queries_t = torch.from_numpy(np.array(queries[:num_queries], dtype=np.float32, copy=True)).to(device)
    return items_t, queries_t, f"trained embeddings from {root} (items and the first {queries_t.shape[0]} test queries)"


def run_search_bench(
    num_items: int = 1_000_000,
    dim: int = 256,
    num_queries: int = 4096,
    k: int = 500,
    repeats: int = 3,
    device: str = "cpu",
    *,
    seed: int = 0,
    query_chunk: int | None = None,
    item_chunk: int | None = None,
    workers: int | None = None,
    with_faiss: bool = True,
    precision: str = "auto",
    embeddings: str | None = None,
    log=None,
) -> dict:
    """Time exact top-k search (ours vs faiss IndexFlatIP) on random unit vectors, or on a run's
    saved embeddings (`embeddings`: a `--save-embeddings` folder); see module doc.

    Returns a JSON-ready dict: config, device, per-method times (every repeat, median, min, per
    query), ratio, agreement, memory, and the machine load average before and after.
    """
    if num_items < 1 or dim < 1 or num_queries < 1 or repeats < 1:
        raise ValueError("search bench: num_items, dim, num_queries and repeats must be >= 1")
    if not 1 <= k <= num_items:
        raise ValueError(f"search bench: k={k} must lie in [1, num_items={num_items}]")
    dev = resolve_device(device)
    say = log or (lambda msg: None)
    gen = torch.Generator().manual_seed(seed)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    if embeddings is None:
        items = _random_unit(num_items, dim, gen, dev)
        queries = _random_unit(num_queries, dim, gen, dev)
        data = "Gaussian vectors normalised to unit length (items and queries independent)"
        say(f"generated {num_items} x {dim} items and {num_queries} queries in {time.perf_counter() - t0:.1f}s")
    else:
        items, queries, data = _load_embeddings(embeddings, num_queries, dev)
        num_items, dim, num_queries = items.shape[0], items.shape[1], queries.shape[0]
        if not 1 <= k <= num_items:
            raise ValueError(f"search bench: k={k} must lie in [1, {num_items}] (items in {embeddings})")
        say(f"loaded {num_items} x {dim} items and {num_queries} queries from {embeddings}")
    qc, ic = _chunks(query_chunk, item_chunk, dev)

    scan: dict = {}

    def ours():
        out = exact_topk(queries, items, k, query_chunk=qc, item_chunk=ic, workers=workers, precision=precision, info=scan)
        sync(dev)
        return out

    # peak memory first, on a fresh heap (the call also serves as our warm-up)
    peak_mb = peak_extra_mb(ours, dev)

    faiss_index = None
    faiss_result: dict[str, Any] | None = None
    run_faiss = with_faiss and faiss_available()
    if run_faiss:
        import faiss  # optional: faiss extra

        items_np = items.cpu().numpy()
        queries_np = np.ascontiguousarray(queries.cpu().numpy())
        t = time.perf_counter()
        faiss_index = faiss.IndexFlatIP(dim)
        faiss_index.add(items_np)
        faiss_result = {
            "index_build_s": time.perf_counter() - t,
            "index_mb": faiss_index.ntotal * dim * 4 / 2**20,
            "threads": faiss.omp_get_max_threads(),
            "version": faiss.__version__,
            "times_s": [],
        }
        faiss_index.search(queries_np[:512], k)  # warm-up
        # faiss uses its BLAS kernel only when nq * d >= this threshold (sequential scan below)
        faiss_result["blas_threshold_nq_d"] = int(faiss.cvar.distance_compute_blas_threshold)

    our_times: list[float] = []
    ours_out = None
    for r in range(repeats):
        if run_faiss:
            assert faiss_index is not None and faiss_result is not None  # both built above when run_faiss
            t = time.perf_counter()
            f_scores, f_index = faiss_index.search(queries_np, k)
            faiss_result["times_s"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ours_out = ours()
        our_times.append(time.perf_counter() - t)
        say(
            f"repeat {r + 1}/{repeats}: ours {our_times[-1] / num_queries * 1e3:.3f} ms/query"
            + (f", faiss {faiss_result['times_s'][-1] / num_queries * 1e3:.3f} ms/query" if faiss_result is not None else "")
        )
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    # the first pass's set-up (for lowrank: the basis and the projected catalog), which every timed
    # call above includes (faiss's index build is timed apart, `index_build_s`)
    t = time.perf_counter()
    plan_scan(precision, items)
    sync(dev)
    setup_s = time.perf_counter() - t

    def summary(times):
        med = statistics.median(times)
        return {
            "times_s": times,
            "median_s": med,
            "min_s": min(times),
            "ms_per_query": med / num_queries * 1e3,
            "queries_per_s": num_queries / med,
        }

    result: dict[str, Any] = {
        "config": {
            "num_items": num_items,
            "dim": dim,
            "num_queries": num_queries,
            "k": k,
            "repeats": repeats,
            "seed": seed,
            "query_chunk": qc,
            "item_chunk": ic,
            "group_size": DEFAULT_GROUP_SIZE,
            "workers": effective_workers(num_queries, dev, workers),
            "precision_requested": precision,
            "precision": scan.get("scan"),
            "scan": dict(scan),
            "data": data,
        },
        "device": describe_device(dev),
        "torch": torch.__version__,
        "ours": {
            **summary(our_times),
            "setup_s_included": setup_s,
            "peak_extra_mb": peak_mb,
            "output_mb": num_queries * k * 12 / 2**20,
        },
        "faiss": None,
        "ratio_median": None,
        "ratio_min": None,
        "ratio_pairs_median": None,
        "ratio_setup_both": None,
        "ratio_setup_neither": None,
        "agreement": None,
        "loadavg_before": list(load_before) if load_before else None,
        "loadavg_after": list(load_after) if load_after else None,
    }
    if run_faiss:
        assert faiss_result is not None and ours_out is not None  # run_faiss built the index; repeats >= 1
        faiss_result.update(summary(faiss_result.pop("times_s")))
        result["faiss"] = faiss_result
        result["ratio_median"] = result["ours"]["median_s"] / faiss_result["median_s"]
        result["ratio_min"] = result["ours"]["min_s"] / faiss_result["min_s"]
        # each repeat times faiss then ours back to back: the median of these ratios is the least
        # sensitive to the machine's drift
        result["ratio_pairs_median"] = statistics.median(o / f for o, f in zip(our_times, faiss_result["times_s"]))
        # the headline ratios count our set-up (in every timed search) but not faiss's index build;
        # the same convention on both sides, either way:
        result["ratio_setup_both"] = result["ours"]["median_s"] / (faiss_result["median_s"] + faiss_result["index_build_s"])
        result["ratio_setup_neither"] = (result["ours"]["median_s"] - setup_s) / faiss_result["median_s"]
        o_scores, o_index = (t.cpu().numpy() for t in ours_out)
        overlap = np.array([np.intersect1d(a, b, assume_unique=True).size for a, b in zip(o_index, f_index)], dtype=np.float64)
        result["agreement"] = {
            "mean_set_overlap": float(overlap.mean() / k),
            "min_set_overlap": float(overlap.min() / k),
            "identical_lists": float(np.mean(np.all(o_index == f_index, axis=1))),
            "max_abs_score_diff": float(np.abs(o_scores - f_scores).max()),
        }
    return result


def format_search_bench(result: dict) -> str:
    """Human-readable summary of `run_search_bench`."""
    c = result["config"]
    o = result["ours"]
    lines = [
        f"exact top-{c['k']} search: {c['num_items']:,} items x {c['dim']} dims, {c['num_queries']:,} queries, "
        f"median of {c['repeats']} (device {result['device']['device']}, torch threads {result['device']['torch_threads']})",
        f"  ours  (exact_topk, {c.get('precision', 'fp32')} scan ({c.get('scan', {}).get('reason', '')}), query_chunk={c['query_chunk']}, item_chunk={c['item_chunk']}, workers={c['workers']}): "
        f"{o['ms_per_query']:.3f} ms/query ({o['queries_per_s']:.0f} queries/s), best {o['min_s'] / c['num_queries'] * 1e3:.3f}"
        + (f"; each search includes its set-up, {o['setup_s_included']:.2f} s" if "setup_s_included" in o else ""),
    ]
    f = result.get("faiss")
    if f:
        a = result["agreement"]
        lines += [
            f"  faiss {f['version']} IndexFlatIP ({f['threads']} threads): {f['ms_per_query']:.3f} ms/query "
            f"({f['queries_per_s']:.0f} queries/s), best {f['min_s'] / c['num_queries'] * 1e3:.3f}",
            f"  ratio ours/faiss: {result['ratio_median']:.3f} (medians), {result['ratio_min']:.3f} (best runs)"
            + (
                f", {result['ratio_pairs_median']:.3f} (median of the {c['repeats']} back-to-back pairs)"
                if result.get("ratio_pairs_median") is not None
                else ""
            ),
            *(
                [
                    f"  same set-up convention on both sides (medians): {result['ratio_setup_both']:.3f} with faiss's index "
                    f"build counted too, {result['ratio_setup_neither']:.3f} with neither set-up"
                ]
                if result.get("ratio_setup_both") is not None
                else []
            ),
            f"  top-{c['k']} agreement: mean set overlap {a['mean_set_overlap']:.4f} (min {a['min_set_overlap']:.4f}), "
            f"identical lists {a['identical_lists']:.3f}, max |score diff| {a['max_abs_score_diff']:.2e}",
        ]
        if c["num_queries"] * c["dim"] < f.get("blas_threshold_nq_d", 0):
            lines.append(
                f"  note: num_queries x dim < {f['blas_threshold_nq_d']}: faiss used its sequential (non-BLAS) "
                "kernel; use more queries for a like-for-like comparison"
            )
    else:
        lines.append("  faiss: not installed (pip install 'ftbench[faiss]'), no comparison")
    mem = o["peak_extra_mb"]
    lines.append(
        "  peak extra memory of our search: "
        + ("n/a" if mem is None else f"{mem:.0f} MiB")
        + f" (output {o['output_mb']:.0f} MiB; catalog {c['num_items'] * c['dim'] * 4 / 2**20:.0f} MiB not counted)"
    )
    if result.get("loadavg_before"):
        lines.append(
            f"  load average before/after: {result['loadavg_before'][0]:.2f} / {result['loadavg_after'][0]:.2f} "
            f"on {result['device']['cpu_count']} CPUs"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - manual entry point
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--num-queries", type=int, default=4096)
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--query-chunk", type=int, default=None)
    p.add_argument("--item-chunk", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--json", default=None, help="also write the result dict to this file")
    a = p.parse_args()
    res = run_search_bench(
        a.num_items,
        a.dim,
        a.num_queries,
        a.k,
        a.repeats,
        a.device,
        query_chunk=a.query_chunk,
        item_chunk=a.item_chunk,
        workers=a.workers,
        precision=a.precision,
        log=print,
    )
    print(format_search_bench(res))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)
