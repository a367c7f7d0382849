"""Exact chunked search: brute-force lexicographic oracle (ties, duplicates, chunk splits) and faiss."""

import math

import numpy as np
import pytest
import torch
from ftbench.kernels.search import exact_topk, faiss_topk, lexicographic_topk, rank_of_targets


def _brute_topk(q, x, k):
    """Full sort of every row by (-score, index): the definition of the ranking."""
    s = (q.double() @ x.double().T).numpy()
    idx = np.stack([np.lexsort((np.arange(x.shape[0]), -row))[:k] for row in s])
    return np.take_along_axis(s, idx, 1), idx


def _brute_rank(q, x, target, t):
    s = (q.double() @ x.double().T).numpy()
    ranks = []
    for r in range(q.shape[0]):
        g, others = int(target[r]), np.arange(x.shape[0]) != int(target[r])
        ranks.append(1 + int(np.sum((s[r] > t[r]) & others)) + int(np.sum(s[r, :g] == t[r])))
    return np.array(ranks)


def _integer_case(gen, n, d, nq, low=-2, high=3):
    """Small integer vectors: many exact ties (scores are exact in float32), plus duplicated items."""
    x = torch.randint(low, high, (n, d), generator=gen).float()
    dup = torch.randint(0, n, (n // 4,), generator=gen)
    x[torch.randint(0, n, (n // 4,), generator=gen)] = x[dup]
    q = torch.randint(low, high, (nq, d), generator=gen).float()
    return q, x


CHUNKINGS = [
    dict(query_chunk=5, item_chunk=1, group_size=1),
    dict(query_chunk=3, item_chunk=5, group_size=2),
    dict(query_chunk=4, item_chunk=7, group_size=3, reservoir_size=None),
    dict(query_chunk=2, item_chunk=64, group_size=4),
    dict(),
]


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_exact_topk_matches_lexicographic_brute_force_with_ties(chunking):
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        n = int(torch.randint(1, 90, (1,), generator=gen))
        q, x = _integer_case(gen, n, d=int(torch.randint(1, 4, (1,), generator=gen)), nq=5)
        k = int(torch.randint(1, n + 1, (1,), generator=gen))
        extra = {} if chunking.get("reservoir_size", 0) is None else {"reservoir_size": k + trial % 3}
        args = {key: v for key, v in chunking.items() if key != "reservoir_size"}
        s, i = exact_topk(q, x, k, **args, **extra)
        bs, bi = _brute_topk(q, x, k)
        assert i.dtype == torch.int64 and s.shape == (5, k)
        np.testing.assert_array_equal(i.numpy(), bi, err_msg=f"trial {trial} n={n} k={k} {chunking}")
        np.testing.assert_array_equal(s.numpy(), bs.astype(np.float32))


def test_ties_straddling_the_kth_position_and_chunk_boundaries():
    # all items score 1 except a few; the k-th place falls inside a run of ties that spans chunks
    x = torch.ones(40, 2)
    x[[3, 17, 33], 0] = 5.0  # higher scores, scattered across chunks
    x[[0, 1], 0] = -3.0  # lower
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for chunking in [dict(item_chunk=6, group_size=2), dict(item_chunk=40, group_size=4), dict(item_chunk=3, group_size=1)]:
        s, i = exact_topk(q, x, 10, **chunking)
        assert i[0].tolist() == [3, 17, 33, 2, 4, 5, 6, 7, 8, 9]
        assert i[1].tolist() == list(range(10))  # everything ties: lowest indices first
        assert s[1].tolist() == [1.0] * 10


def test_first_block_lower_bound_path_with_ties():
    # item_chunk // group_size >= k: the first threshold comes from the group maxima (>= admitted)
    gen = torch.Generator().manual_seed(1)
    q, x = _integer_case(gen, n=3000, d=3, nq=6, low=-1, high=2)
    for k in (1, 7, 40):
        s, i = exact_topk(q, x, k, item_chunk=512, group_size=8, query_chunk=4)
        _, bi = _brute_topk(q, x, k)
        np.testing.assert_array_equal(i.numpy(), bi)


def test_reservoir_compaction_and_growth_on_continuous_data():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5000, 16, generator=gen)
    # items sorted by increasing score for query 0: every block beats all earlier ones, so each block
    # admits all its items (reservoir growth past its capacity, then compaction)
    q = torch.randn(3, 16, generator=gen)
    order = torch.argsort(x @ q[0])
    x = x[order]
    s, i = exact_topk(q, x, 50, item_chunk=512, group_size=4, reservoir_size=60)
    bs, bi = _brute_topk(q, x, 50)
    np.testing.assert_array_equal(i.numpy(), bi)
    np.testing.assert_allclose(s.numpy(), bs, rtol=1e-5, atol=1e-5)


def test_exact_topk_agrees_with_faiss():
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(3)
    x = torch.nn.functional.normalize(torch.randn(20000, 32, generator=gen), dim=1)
    q = torch.nn.functional.normalize(torch.randn(20, 32, generator=gen), dim=1)
    # item_chunk 1024 with group 16: most blocks take the sparse (group maxima) path
    s, i = exact_topk(q, x, 100, item_chunk=1024, group_size=16)
    fs, fi = faiss_topk(q, x, 100)
    np.testing.assert_allclose(s.numpy(), fs.numpy(), rtol=0, atol=1e-5)
    # continuous random data: no ties, so the lists are identical
    np.testing.assert_array_equal(i.numpy(), fi.numpy())
    np.testing.assert_array_equal(i.numpy(), _brute_topk(q, x, 100)[1])


def test_k_larger_than_catalog_and_bad_inputs():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k=6 exceeds the number of items N=5"):
        exact_topk(torch.randn(2, 3), x, 6)
    with pytest.raises(ValueError, match="dimension 4"):
        exact_topk(torch.randn(2, 4), x, 1)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        exact_topk(torch.randn(2, 3), bad, 2)
    with pytest.raises(ValueError, match="NaN"):
        exact_topk(torch.randn(2, 3), bad, 2, item_chunk=1)
    s, i = exact_topk(torch.randn(0, 3), x, 2)
    assert s.shape == (0, 2) and i.shape == (0, 2)


def test_lexicographic_topk():
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    idx = torch.tensor([[9, 7, 2, 0, 5]])
    vs, vi = lexicographic_topk(s, idx, 4)
    assert vi.tolist() == [[2, 5, 7, 0]] and vs.tolist() == [[3.0, 3.0, 3.0, 2.0]]


@pytest.mark.parametrize("chunking", [dict(query_chunk=1, item_chunk=1), dict(query_chunk=3, item_chunk=4), dict()])
def test_rank_of_targets_matches_brute_force(chunking):
    gen = torch.Generator().manual_seed(4)
    q, x = _integer_case(gen, n=37, d=2, nq=30)
    target = torch.randint(0, 37, (30,), generator=gen)
    # target scores: some equal to existing scores (ties before and after the target index), some not
    s = q @ x.T
    t = s[torch.arange(30), torch.randint(0, 37, (30,), generator=gen)].clone()
    t[::3] += 0.5
    ranks = rank_of_targets(q, x, target, t, **chunking)
    np.testing.assert_array_equal(ranks.numpy(), _brute_rank(q, x, target.numpy(), t.numpy()))
    # with the target's own score the rank is its position in the exact ranking
    own = s[torch.arange(30), target]
    _, full = exact_topk(q, x, 37)
    expected = (full == target.unsqueeze(1)).float().argmax(1) + 1
    np.testing.assert_array_equal(rank_of_targets(q, x, target, own, **chunking).numpy(), expected.numpy())


def test_rank_of_targets_validates():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"target indices must lie in \[0, 4\)"):
        rank_of_targets(torch.randn(1, 2), x, torch.tensor([4]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="one entry per query"):
        rank_of_targets(torch.randn(2, 2), x, torch.tensor([1]), torch.tensor([0.0]))
    x[1, 0] = float("inf")
    with pytest.raises(ValueError, match="items contain NaN or infinite"):
        rank_of_targets(torch.randn(1, 2), x, torch.tensor([0]), torch.tensor([0.0]))


def test_worker_threads_give_the_same_result_and_restore_thread_count():
    gen = torch.Generator().manual_seed(5)
    q, x = _integer_case(gen, n=700, d=3, nq=300)  # >= 2 * 128 queries: the worker path is used
    before = torch.get_num_threads()
    _, bi = _brute_topk(q, x, 25)
    target = torch.randint(0, 700, (300,), generator=gen)
    t = (q * x[target]).sum(1)
    expected_rank = _brute_rank(q, x, target.numpy(), t.numpy())
    for workers in (1, 2, 3):
        s, i = exact_topk(q, x, 25, item_chunk=128, workers=workers)
        np.testing.assert_array_equal(i.numpy(), bi)
        assert torch.get_num_threads() == before
        ranks = rank_of_targets(q, x, target, t, item_chunk=128, workers=workers)
        np.testing.assert_array_equal(ranks.numpy(), expected_rank)
        assert torch.get_num_threads() == before


def test_search_bench_small_run():
    from ftbench.cost.search_bench import format_search_bench, run_search_bench

    res = run_search_bench(num_items=3000, dim=16, num_queries=300, k=20, repeats=1, device="cpu")
    assert res["ours"]["ms_per_query"] > 0 and res["config"]["k"] == 20
    if res["faiss"] is not None:
        assert res["agreement"]["mean_set_overlap"] == pytest.approx(1.0)
        assert res["agreement"]["max_abs_score_diff"] < 1e-5
        only = res["ours"]["times_s"][0] / res["faiss"]["times_s"][0]  # one repeat: one pair
        assert res["ratio_pairs_median"] == pytest.approx(only)
        assert res["ratio_setup_both"] < res["ratio_median"]  # faiss's build added to its time
    assert res["ours"]["setup_s_included"] >= 0
    text = format_search_bench(res)
    assert "exact top-20 search: 3,000 items x 16 dims" in text
    assert "each search includes its set-up" in text


def test_torch_nonzero_path_used_on_cuda(monkeypatch):
    """The CUDA code path differs only in using torch.nonzero; run it on CPU against the oracle."""
    from ftbench.kernels.search import _blocks

    monkeypatch.setattr(_blocks, "_NUMPY_NONZERO", False)
    monkeypatch.setattr(_blocks, "_NUMPY_MATMUL", False)  # and torch.mm for the score blocks
    gen = torch.Generator().manual_seed(6)
    q, x = _integer_case(gen, n=400, d=3, nq=7)
    for chunking in (dict(item_chunk=64, group_size=4), dict(item_chunk=5, group_size=2)):
        _, i = exact_topk(q, x, 30, **chunking)
        np.testing.assert_array_equal(i.numpy(), _brute_topk(q, x, 30)[1])


def test_reservoir_retain_packs_the_kept_entries_of_every_store():
    """`_Reservoir.retain` keeps the masked entries in their order at the front of each row, in
    all three stores, and pads the rest again (the low-rank search's compaction)."""
    from ftbench.kernels.search._blocks import _SENTINEL, _Reservoir

    res = _Reservoir(2, 1, 4, torch.device("cpu"), torch.float32, second=True)
    rows = torch.tensor([0, 0, 0, 1, 1])
    res.append(
        rows, torch.tensor([10, 11, 12, 20, 21]), torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0]), torch.tensor([0.5, 0.1, 0.3, 0.2, 0.4])
    )
    scores = res.scores[:, : res.fill_max]
    res.retain(scores >= torch.tensor([[3.0], [4.0]]))
    assert res.fill.tolist() == [2, 1] and res.fill_max == 2
    assert res.index[:, :3].tolist() == [[10, 12, _SENTINEL], [21, _SENTINEL, _SENTINEL]]
    assert res.scores[:, :3].tolist() == [[5.0, 3.0, -math.inf], [4.0, -math.inf, -math.inf]]
    assert torch.allclose(res.second[0, :2], torch.tensor([0.5, 0.3])) and float(res.second[1, 0]) == pytest.approx(0.4)
    assert res.second[1, 1:3].tolist() == [-math.inf, -math.inf]


def test_the_package_exports_what_callers_use():
    """Every name of `ftbench.kernels.search.__all__` is defined, the public functions of the
    private modules are among them, and the modules that held the bf16 and low-rank scans before
    they became part of the package are gone (no second copy to drift)."""
    import importlib

    import ftbench.kernels.search as search

    for name in search.__all__:
        assert getattr(search, name) is not None, name
    for module in ("_bf16", "_blocks", "_faiss", "_lowrank", "_plan", "_ranks", "_threads", "_topk"):
        mod = importlib.import_module(f"ftbench.kernels.search.{module}")
        public = {
            n
            for n, v in vars(mod).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
        }
        assert public <= set(search.__all__), (module, public - set(search.__all__))
    for gone in ("ftbench.kernels.bf16_search", "ftbench.kernels.lowrank_search"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)
