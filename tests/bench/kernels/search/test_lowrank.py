"""Certified-exact low-rank search: the bound holds, and the result equals the exact fp32 top-k."""

import numpy as np
import pytest
import torch
from ftbench.kernels.search import (
    LowRankCatalog,
    TooManyCandidates,
    _lowrank,
    exact_topk,
    fit_rank,
    lowrank_topk_chunk,
    plan_scan,
    principal_basis,
)


@pytest.fixture
def admit_all(monkeypatch):
    """Small test catalogs: let the low-rank path do the work whatever it admits (no fallback)."""
    monkeypatch.setattr(_lowrank, "ADMIT_FRACTION", 1.0)


def reference_topk(q: torch.Tensor, x: torch.Tensor, k: int):
    """Brute force: fp32-rounded float64 inner products, order (-score, index)."""
    s = (q.double() @ x.double().T).float().double().numpy()
    idx = np.empty((s.shape[0], k), dtype=np.int64)
    for r in range(s.shape[0]):
        idx[r] = np.lexsort((np.arange(s.shape[1]), -s[r]))[:k]
    return torch.from_numpy(np.take_along_axis(s, idx, 1)).float(), torch.from_numpy(idx)


def _integer_low_rank(gen, n, q_rows, d=64, latent=4):
    """x = B z + sparse +-1 noise, integers: every inner product is an integer below 2^24, exact in
    fp32 in any summation order, and equal scores (exact ties) are frequent. Energy sits in `latent`
    directions, so the bound prunes; queries come from the same model."""
    basis = torch.randint(-3, 4, (d, latent), generator=gen).float()

    def draw(rows):
        z = torch.randint(-6, 7, (rows, latent), generator=gen).float()
        noise = torch.randint(-1, 2, (rows, d), generator=gen).float() * (torch.rand(rows, d, generator=gen) < 0.2)
        return z @ basis.T + noise

    distinct = draw(max(1, n // 3))
    return draw(q_rows), distinct[torch.randint(0, distinct.shape[0], (n,), generator=gen)]  # ~3 copies each


@pytest.mark.parametrize("k,item_chunk,query_chunk", [(1, 4096, 64), (10, 256, 7), (100, 1000, 33), (700, 333, 50)])
def test_lowrank_equals_exact_with_massive_ties(k, item_chunk, query_chunk, admit_all):
    gen = torch.Generator().manual_seed(k)
    q, x = _integer_low_rank(gen, 3000, 40)
    info = {}
    s, i = exact_topk(q, x, k, precision="lowrank", item_chunk=item_chunk, query_chunk=query_chunk, info=info)
    rs, ri = reference_topk(q, x, k)
    assert info["scan"] == "lowrank" and info["fallback_blocks"] == 0
    assert torch.equal(i, ri)
    assert torch.equal(s, rs)
    # exact ties straddle the k-th position in most rows (so the index tie-break was exercised)
    full = q.double() @ x.double().T
    kth = full.topk(k, dim=1).values[:, -1:]
    assert float(((full == kth).sum(1) > 1).float().mean()) > 0.5


def test_lowrank_equals_exact_on_float_data_with_near_ties_and_duplicates(admit_all):
    """Float data: a rank-6 signal plus 1e-3 noise, with exact duplicates and items perturbed by
    single ulps, so that fp32 summation order decides near-ties unless the re-score is exact."""
    gen = torch.Generator().manual_seed(7)
    n, d = 5000, 48
    mix = torch.randn(6, d, generator=gen)
    x = torch.randn(n, 6, generator=gen) @ mix + 1e-3 * torch.randn(n, d, generator=gen)
    x[1000:1100] = x[0:100]  # exact duplicates: ties broken by the lower index
    x[2000:2100] = torch.nextafter(x[0:100], torch.full_like(x[0:100], np.inf))  # one ulp above
    q = torch.cat([x[:20] + 1e-4 * torch.randn(20, d, generator=gen), torch.randn(10, 6, generator=gen) @ mix])
    for k in (1, 50, 400):
        info = {}
        s, i = exact_topk(q, x, k, precision="lowrank", item_chunk=777, query_chunk=16, info=info)
        rs, ri = reference_topk(q, x, k)
        assert info["fallback_blocks"] == 0
        assert torch.equal(i, ri), k
        assert torch.equal(s, rs), k


def test_bound_holds_for_every_item_and_prunes():
    """lb~ <= q.x <= ub~ + A for all pairs (float64 truth), and the admitted candidates are few."""
    gen = torch.Generator().manual_seed(3)
    n, d = 20000, 64
    mix = torch.randn(8, d, generator=gen) / 3
    x = torch.randn(n, 8, generator=gen) @ mix + 0.02 * torch.randn(n, d, generator=gen)
    q = torch.randn(64, 8, generator=gen) @ mix + 0.02 * torch.randn(64, d, generator=gen)
    basis, energy = principal_basis(x)
    r = fit_rank(energy)
    assert r == 16
    cat = LowRankCatalog(x, basis[:, :r])
    aug, sigma, slack = cat.query_side(q)
    ub = (aug @ cat.augmented.T).double()  # fp32 product, as the scan computes it
    truth = q.double() @ x.double().T
    assert bool((ub + slack[:, None] >= truth).all())
    assert bool((ub - 2 * sigma[:, None] * cat.augmented[:, -1].double()[None] - slack[:, None] <= truth).all())
    # the bound is not vacuous: its width is a small fraction of the score spread
    width = (2 * sigma[:, None] * cat.augmented[:, -1].double()[None] + 2 * slack[:, None]).median()
    assert float(width) < 0.05 * float(truth.std())
    stats = {}
    buf = torch.empty(64 * 4096)
    s, i = lowrank_topk_chunk(q, cat, 100, 4096, buf, stats)
    # the bound pruned: few items per row were re-scored (k of them at least)
    assert 100 <= stats["candidates"] / stats["rows"] < 3 * 100
    rs, ri = reference_topk(q, x, 100)
    assert torch.equal(i, ri) and torch.equal(s, rs)


@pytest.mark.parametrize("reservoir,item_chunk", [(100, 64), (150, 1000), (None, 20000)])
def test_compaction_and_threshold_raising_keep_the_exact_result(reservoir, item_chunk):
    """A small candidate limit compacts (and raises the threshold) after almost every block; one
    block of the whole catalog does everything in the first block: same exact top-k either way."""
    gen = torch.Generator().manual_seed(11)
    n, d = 20000, 64
    mix = torch.randn(8, d, generator=gen) / 3
    x = torch.randn(n, 8, generator=gen) @ mix + 0.02 * torch.randn(n, d, generator=gen)
    x[5000:5050] = x[100:150]  # exact duplicates straddling blocks: ties by the lower index
    q = torch.randn(48, 8, generator=gen) @ mix + 0.02 * torch.randn(48, d, generator=gen)
    basis, energy = principal_basis(x)
    cat = LowRankCatalog(x, basis[:, : fit_rank(energy)])
    stats = {}
    s, i = lowrank_topk_chunk(q, cat, 100, item_chunk, torch.empty(48 * item_chunk), stats, reservoir=reservoir)
    rs, ri = reference_topk(q, x, 100)
    assert torch.equal(i, ri) and torch.equal(s, rs)
    assert stats["rows"] == 48 and stats["candidates"] >= 48 * 100


def test_isotropic_data_falls_back_to_fp32_with_the_same_result():
    gen = torch.Generator().manual_seed(5)
    q = torch.randint(-8, 9, (300, 64), generator=gen).float()
    x = torch.randint(-8, 9, (4000, 64), generator=gen).float()  # isotropic: nothing to prune
    cat = LowRankCatalog(x, principal_basis(x)[0][:, :16])
    with pytest.raises(TooManyCandidates):
        lowrank_topk_chunk(q[:10], cat, 50, 500, torch.empty(10 * 500), max_candidates=200)
    s, i = exact_topk(q, x, 50, precision="lowrank", item_chunk=500, query_chunk=100, workers=1)
    rs, ri = reference_topk(q, x, 50)
    assert torch.equal(i, ri) and torch.equal(s, rs)


def test_fallback_path_is_taken_and_exact(monkeypatch):
    gen = torch.Generator().manual_seed(6)
    q = torch.randint(-8, 9, (200, 32), generator=gen).float()
    x = torch.randint(-8, 9, (3000, 32), generator=gen).float()
    real = _lowrank.lowrank_topk_chunk

    def capped(*args, **kwargs):
        return real(*args, **{**kwargs, "max_candidates": 60})

    monkeypatch.setattr(_lowrank, "lowrank_topk_chunk", capped)
    info = {}
    s, i = exact_topk(q, x, 50, precision="lowrank", item_chunk=500, query_chunk=50, workers=1, info=info)
    rs, ri = reference_topk(q, x, 50)
    assert info["fallback_blocks"] == 4  # every block: the first one fails, the rest skip the attempt
    assert torch.equal(i, ri) and torch.equal(s, rs)


def test_which_blocks_fall_back_does_not_depend_on_the_workers_timing(monkeypatch):
    """Two workers, blocks 0, 2 (worker 0) and 1, 3 (worker 1); block 0's bound fails. Worker 1
    waits until then before its first block: a fallback shared between workers would send its
    second block to fp32 too, depending on who got there first. Per worker it never does: the
    counts recorded in a run are the same every time."""
    import threading

    gen = torch.Generator().manual_seed(7)
    q = torch.randint(-8, 9, (256, 32), generator=gen).float()
    x = torch.randint(-8, 9, (2000, 32), generator=gen).float()
    real = _lowrank.lowrank_topk_chunk
    block0_failed = threading.Event()
    calls = []

    def first_block_fails(query, *args, **kwargs):
        start = int((q == query[0]).all(dim=1).nonzero()[0])
        calls.append(start)
        if start == 0:
            block0_failed.set()
            raise TooManyCandidates(0)
        assert block0_failed.wait(timeout=60)
        return real(query, *args, **kwargs)

    monkeypatch.setattr(_lowrank, "lowrank_topk_chunk", first_block_fails)
    monkeypatch.setattr(_lowrank, "ADMIT_FRACTION", 1.0)
    info = {}
    s, i = exact_topk(q, x, 20, precision="lowrank", item_chunk=500, query_chunk=64, workers=2, info=info)
    assert sorted(calls) == [0, 64, 192]  # worker 0 skips its second block (128), worker 1 tries both
    assert info["fallback_blocks"] == 2
    rs, ri = reference_topk(q, x, 20)
    assert torch.equal(i, ri) and torch.equal(s, rs)


def test_a_worker_that_starts_after_another_finished_keeps_its_own_fallback(monkeypatch):
    """Workers run one after the other: worker 1 starts once worker 0 has finished and dropped its
    buffer, and must still try the low-rank scan on its own blocks. (The fallback is keyed by the
    buffer and holds it, so a freed buffer's address reused by the next worker's cannot carry the
    fallback over - keyed by a bare id it once did, under heavy load; CPython does not reuse the
    address on demand, so this test checks the per-worker rule in sequence, not the reuse itself.)"""
    from concurrent.futures import Future

    from ftbench.kernels.search import _threads

    class OneAfterTheOther:
        def __init__(self, max_workers):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            future = Future()
            future.set_result(fn(*args))
            return future

    gen = torch.Generator().manual_seed(7)
    q = torch.randint(-8, 9, (256, 32), generator=gen).float()
    x = torch.randint(-8, 9, (2000, 32), generator=gen).float()
    real = _lowrank.lowrank_topk_chunk
    calls = []

    def first_block_fails(query, *args, **kwargs):
        start = int((q == query[0]).all(dim=1).nonzero()[0])
        calls.append(start)
        if start == 0:
            raise TooManyCandidates(0)
        return real(query, *args, **kwargs)

    monkeypatch.setattr(_threads, "ThreadPoolExecutor", OneAfterTheOther)
    monkeypatch.setattr(_lowrank, "lowrank_topk_chunk", first_block_fails)
    monkeypatch.setattr(_lowrank, "ADMIT_FRACTION", 1.0)
    info = {}
    s, i = exact_topk(q, x, 20, precision="lowrank", item_chunk=500, query_chunk=64, workers=2, info=info)
    assert sorted(calls) == [0, 64, 192] and info["fallback_blocks"] == 2
    rs, ri = reference_topk(q, x, 20)
    assert torch.equal(i, ri) and torch.equal(s, rs)


def test_auto_takes_lowrank_only_where_the_catalog_is_large_and_nearly_low_rank(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    monkeypatch.setattr(_lowrank, "MIN_ITEMS", 2000)
    monkeypatch.delenv("FTBENCH_SEARCH_PRECISION", raising=False)
    low = torch.randn(3000, 4, generator=gen) @ torch.randn(4, 64, generator=gen) + 1e-3 * torch.randn(3000, 64, generator=gen)
    scan, reason, cat = plan_scan("auto", low)
    assert scan == "lowrank" and cat.rank == 16 and "rank 16 of 64" in reason
    iso = torch.randn(3000, 64, generator=gen)
    scan, reason, cat = plan_scan("auto", iso)
    assert scan in ("fp32", "bf16") and cat is None and "not low-rank: no rank <= d/4" in reason
    scan, reason, _ = plan_scan("auto", low[:1000])
    assert "fewer than 2000 items" in reason
    with pytest.raises(ValueError, match="precision must be one of"):
        plan_scan("int8", low)
    with pytest.raises(ValueError, match="needs float32 items"):
        plan_scan("lowrank", low.double())


def test_the_environment_forces_the_pass_of_auto_only(monkeypatch):
    """FTBENCH_SEARCH_PRECISION forces what `precision="auto"` takes, whatever the catalog and
    the hardware (the tests run every pass on every machine that way); an explicit precision
    is kept; the reason says what forced it."""
    gen = torch.Generator().manual_seed(9)
    monkeypatch.setattr(_lowrank, "MIN_ITEMS", 2000)
    low = torch.randn(3000, 4, generator=gen) @ torch.randn(4, 64, generator=gen)
    small = torch.randn(500, 64, generator=gen)  # auto would never take lowrank here
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "fp32")
    assert plan_scan("auto", low)[:2] == ("fp32", "set by FTBENCH_SEARCH_PRECISION=fp32")
    assert plan_scan("lowrank", low)[0] == "lowrank"  # an explicit request wins
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "BF16 ")
    assert plan_scan("auto", low)[:2] == ("bf16", "set by FTBENCH_SEARCH_PRECISION=bf16")
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "lowrank")
    scan, reason, cat = plan_scan("auto", small)
    assert scan == "lowrank" and cat.rank == 16 and reason.startswith("set by FTBENCH_SEARCH_PRECISION=lowrank; rank 16 of 64")
    q = torch.randn(7, 64, generator=gen)
    info = {}
    s, i = exact_topk(q, small, 20, info=info)
    assert info["scan"] == "lowrank"
    rs, ri = reference_topk(q, small, 20)
    assert torch.equal(i, ri) and torch.equal(s, rs)
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "auto")
    assert plan_scan("auto", low)[0] == "lowrank"
    with pytest.raises(ValueError, match=r"FTBENCH_SEARCH_PRECISION=bf16\) needs float32 items"):
        monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "bf16")
        plan_scan("auto", low.double())
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "int8")
    with pytest.raises(ValueError, match="FTBENCH_SEARCH_PRECISION must be one of auto, fp32, bf16, lowrank, got 'int8'"):
        plan_scan("auto", low)
