"""Query blocks shared among worker threads (CPU), each with its own score buffer.

On CPU the query blocks are shared among `workers` Python threads (default: torch's thread count),
each running single-threaded torch ops: the matmul parallelises well inside torch, the many small
selection ops do not, and this way both run on every core (torch releases the GIL).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import torch

_MIN_ROWS_PER_WORKER = 128


def effective_workers(num_queries: int, device: torch.device | str, workers: int | None = None) -> int:
    """Number of worker threads `exact_topk` / `rank_of_targets` use (1 off CPU or for few queries)."""
    threads = torch.get_num_threads() if workers is None else int(workers)
    if torch.device(device).type != "cpu" or threads < 2 or num_queries < 2 * _MIN_ROWS_PER_WORKER:
        return 1
    return min(threads, num_queries // _MIN_ROWS_PER_WORKER)


def _run_query_blocks(nq: int, qc: int, width: int, items: torch.Tensor, workers: int | None, body) -> None:
    """Call body(q0, q1, buf) for every query block [q0, q1), each worker with its own S buffer.

    CPU with several threads: one Python thread per core, each running single-threaded torch ops
    on its own query blocks (torch releases the GIL), which parallelises the many small selection
    ops as well as the matmul. The caller's `torch.get_num_threads()` is restored afterwards.
    """
    threads = effective_workers(nq, items.device, workers)
    if threads > 1:
        qc = min(qc, -(-nq // threads))  # at least one block per worker
    blocks = [(q0, min(nq, q0 + qc)) for q0 in range(0, nq, qc)]

    def run(worker: int) -> None:
        buf = torch.empty(min(qc, nq) * width, device=items.device, dtype=items.dtype)
        for q0, q1 in blocks[worker::threads]:
            body(q0, q1, buf)

    if threads == 1:
        run(0)
        return
    outer = torch.get_num_threads()

    def run_single_threaded(worker: int) -> None:
        torch.set_num_threads(1)
        run(worker)

    try:
        with _single_threaded_blas(), ThreadPoolExecutor(max_workers=threads) as pool:
            for fut in [pool.submit(run_single_threaded, w) for w in range(threads)]:
                fut.result()
    finally:
        torch.set_num_threads(outer)


def _single_threaded_blas():
    """numpy's BLAS at one thread while our workers run (one worker per core already)."""
    try:
        from threadpoolctl import threadpool_limits  # optional: installed with scikit-learn, not declared
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
