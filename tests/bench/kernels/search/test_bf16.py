"""Certified-exact bf16 search: the bound holds, and the result equals the exact fp32 top-k."""

import numpy as np
import pytest
import torch
from ftbench.kernels.search import BF16Catalog, _bf16, _plan, exact_topk, score_bounds, search_precision
from ftbench.kernels.search._bf16 import _threshold


def reference_topk(q: torch.Tensor, x: torch.Tensor, k: int):
    """Brute force: fp32-rounded float64 inner products, order (-score, index)."""
    s = (q.double() @ x.double().T).float().double().numpy()
    idx = np.empty((s.shape[0], k), dtype=np.int64)
    for r in range(s.shape[0]):
        order = np.lexsort((np.arange(s.shape[1]), -s[r]))
        idx[r] = order[:k]
    return torch.from_numpy(np.take_along_axis(s, idx, 1)), torch.from_numpy(idx)


def _exact_integer_data(gen, n, q_rows, d=64):
    """Products and sums exact in fp32 in any order (|q_i| < 2^5, |x_i| < 2^11, d = 64 -> < 2^23),
    while bf16 (8 significant bits, spacing 8 between 1024 and 2048) rounds the item entries
    1024 + m: the score differences come from the m, which bf16 mostly loses, so its order differs."""
    x = 1024 + torch.randint(-63, 64, (n, d), generator=gen).float()
    q = torch.randint(-31, 32, (q_rows, d), generator=gen).float()
    return q, x


@pytest.mark.parametrize("k,item_chunk,query_chunk", [(1, 4096, 64), (10, 256, 7), (100, 1000, 33), (2000, 333, 50)])
def test_bf16_equals_exact_when_bf16_rounding_reorders(k, item_chunk, query_chunk):
    gen = torch.Generator().manual_seed(k)
    q, x = _exact_integer_data(gen, 3000, 40)
    # the bf16 ranking really differs from the exact one (otherwise the test shows nothing)
    bf_scores = q.bfloat16().float() @ x.bfloat16().float().T
    assert not torch.equal(torch.argsort(-bf_scores, dim=1, stable=True)[:, :k], reference_topk(q, x, k)[1])
    s, i = exact_topk(q, x, k, precision="bf16", item_chunk=item_chunk, query_chunk=query_chunk)
    rs, ri = reference_topk(q, x, k)
    assert torch.equal(i, ri)
    assert torch.equal(s.double(), rs)  # exact in fp32 by construction


def test_bf16_adversarial_near_ties_and_exact_ties():
    """Scores 2^-12 apart (below bf16's 2^-7 resolution near 1, so bf16 sees ties) and exact
    duplicates straddling the k-th position: ties must go to the lower index."""
    gen = torch.Generator().manual_seed(1)
    n, d = 4000, 8
    x = torch.zeros(n, d)
    x[:, 0] = 1 + torch.randint(0, 64, (n,), generator=gen).float() * 2.0**-12
    x[:, 1] = torch.randint(0, 4, (n,), generator=gen).float() * 2.0**-10
    q = torch.zeros(6, d)
    q[:, 0] = 1.0
    q[:, 1] = torch.tensor([0.0, 1.0, 0.5, 0.25, 2.0, 1.0])
    q[5, 0] = 0.0  # only the coarse coordinate: massive exact ties
    for k in (1, 37, 500, 3999):
        s, i = exact_topk(q, x, k, precision="bf16", item_chunk=512, query_chunk=4)
        rs, ri = reference_topk(q, x, k)
        assert torch.equal(i, ri), k
        assert torch.equal(s.double(), rs)
        assert torch.equal(i, exact_topk(q, x, k, precision="fp32", item_chunk=512)[1])


def test_bf16_equals_fp32_path_on_random_unit_vectors():
    gen = torch.Generator().manual_seed(2)
    x = torch.nn.functional.normalize(torch.randn(20000, 48, generator=gen), dim=1)
    q = torch.nn.functional.normalize(torch.randn(300, 48, generator=gen), dim=1)
    for k in (1, 50, 700):
        s32, i32 = exact_topk(q, x, k, precision="fp32", item_chunk=4096)
        sb, ib = exact_topk(q, x, k, precision="bf16", item_chunk=4096)
        rs, ri = reference_topk(q, x, k)
        assert torch.equal(ib, ri)
        assert torch.equal(sb.double(), rs)
        # the fp32 BLAS path agrees except where two scores are within fp32 summation error
        torch.testing.assert_close(sb, s32, rtol=0, atol=1e-6)
        differ = ib != i32
        assert differ.float().mean() < 0.01
        assert (sb - s32).abs().max() < 1e-6


def test_error_bound_holds_and_is_not_vacuous():
    """|s~ - s| <= the bound for every pair, including rows built to maximise the rounding error."""
    gen = torch.Generator().manual_seed(3)
    d = 256
    x = torch.nn.functional.normalize(torch.randn(3000, d, generator=gen), dim=1)
    # entries just below a bf16 rounding midpoint: every coordinate rounds with the same sign
    worst = torch.full((d,), 1 + 2.0**-8 - 2.0**-20)
    x = torch.cat([x, torch.nn.functional.normalize(worst, dim=0)[None], (-worst / worst.norm())[None]])
    q = torch.cat([torch.nn.functional.normalize(torch.randn(64, d, generator=gen), dim=1), (worst / worst.norm())[None]])
    cat = BF16Catalog(x)
    qb, a = score_bounds(q, cat)
    y = (qb.float() @ cat.bf16.float().T).to(torch.bfloat16).float()  # what the bf16 pass returns
    exact = q.double() @ x.double().T
    c = _bf16._C_OUT
    slack = (y.double() - exact).abs() - (c * y.double().abs() + a[:, None])
    assert slack.max() <= 0
    assert a.max() < 0.01  # a usable bound for unit vectors (about 2 x 2^-8 / sqrt(3))
    # the threshold never excludes an item whose upper bound reaches the k-th lower bound
    kth = torch.tensor([0.3, -0.2, 0.0, float("-inf")])
    aa = torch.full((4,), 0.004, dtype=torch.float64)
    thr = _threshold(kth, aa).double()
    lo = kth.double() - c * kth.double().abs() - aa
    hi_at_thr = thr + c * thr.abs() + aa
    assert torch.all((hi_at_thr <= lo + 1e-12)[:3])
    assert torch.isinf(thr[3])


def test_bf16_reports_nan_items_and_bad_options():
    x = torch.randn(500, 16)
    x[123, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        exact_topk(torch.randn(3, 16), x, 5, precision="bf16")
    with pytest.raises(ValueError, match="precision must be"):
        exact_topk(torch.randn(3, 16), torch.randn(500, 16), 5, precision="fp16")
    with pytest.raises(ValueError, match="float32 items"):
        exact_topk(torch.randn(3, 16), torch.randn(500, 16, dtype=torch.float64), 5, precision="bf16")


def test_search_precision_is_decided_and_explained(monkeypatch):
    prec, reason = search_precision("cpu")
    assert prec in ("fp32", "bf16") and reason
    _plan._decide.cache_clear()
    monkeypatch.setattr(_plan, "_cpu_flags", lambda: set())
    monkeypatch.delenv("FTBENCH_SEARCH_PRECISION", raising=False)
    assert search_precision("cpu")[0] == "fp32"
    _plan._decide.cache_clear()
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "bf16")
    assert search_precision("cpu") == ("bf16", "set by FTBENCH_SEARCH_PRECISION=bf16")
    _plan._decide.cache_clear()
    monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "int8")
    with pytest.raises(ValueError, match="FTBENCH_SEARCH_PRECISION"):
        search_precision("cpu")
    _plan._decide.cache_clear()


@pytest.mark.parametrize("speedups,scan", [((4.11, 5.73), "bf16"), ((1.05, 1.21), "fp32")])
def test_the_reason_carries_no_measured_figure(monkeypatch, speedups, scan):
    """Two processes measure different speed-ups: the choice and its reason (recorded in a run's
    evaluation counts, which the same command must reproduce) are the same text; the figure is
    `measured_speedup`'s, for the run's timing block."""
    monkeypatch.delenv("FTBENCH_SEARCH_PRECISION", raising=False)
    monkeypatch.setattr(_plan, "_cpu_flags", lambda: {"avx512_bf16", "avx2"})
    decided = []
    try:
        for speedup in speedups:
            _plan._decide.cache_clear()
            monkeypatch.setattr(_plan, "_measure_speedup", lambda device, s=speedup: s)
            decided.append(search_precision("cpu"))
            assert _plan.measured_speedup("cpu") == speedup
            assert str(speedup) not in decided[-1][1]
    finally:
        _plan._decide.cache_clear()
    assert decided[0] == decided[1] and decided[0][0] == scan
    assert "CPU flags avx512_bf16" in decided[0][1] and "1.3x" in decided[0][1]


def test_a_run_records_the_measured_figure_in_its_timing_block(monkeypatch):
    from ftbench.device import search_timing

    monkeypatch.delenv("FTBENCH_SEARCH_PRECISION", raising=False)
    try:
        _plan._decide.cache_clear()
        monkeypatch.setattr(_plan, "_cpu_flags", lambda: {"amx_bf16"})
        monkeypatch.setattr(_plan, "_measure_speedup", lambda device: 4.1149)
        assert search_timing(torch.device("cpu")) == {"bf16_score_block_speedup": 4.11}
        _plan._decide.cache_clear()
        monkeypatch.setattr(_plan, "_cpu_flags", lambda: set())
        assert search_timing(torch.device("cpu")) == {}
    finally:
        _plan._decide.cache_clear()


def test_nothing_measured_where_the_choice_needs_no_measurement(monkeypatch):
    try:
        _plan._decide.cache_clear()
        monkeypatch.setattr(_plan, "_cpu_flags", lambda: {"avx2"})
        monkeypatch.delenv("FTBENCH_SEARCH_PRECISION", raising=False)
        assert _plan.measured_speedup("cpu") is None
        _plan._decide.cache_clear()
        monkeypatch.setattr(_plan, "_cpu_flags", lambda: {"avx512_bf16"})
        monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "fp32")
        assert _plan.measured_speedup("cpu") is None and search_precision("cpu")[0] == "fp32"
        _plan._decide.cache_clear()
        # lowrank is no choice between bf16 and fp32: the hardware decides that one
        monkeypatch.setattr(_plan, "_measure_speedup", lambda device: 2.0)
        monkeypatch.setenv("FTBENCH_SEARCH_PRECISION", "lowrank")
        assert search_precision("cpu")[0] == "bf16" and _plan.measured_speedup("cpu") == 2.0
    finally:
        _plan._decide.cache_clear()
