"""The evaluation's exact search forced through each first pass (FTBENCH_SEARCH_PRECISION=fp32,
bf16 or lowrank, on every machine: bf16 without bf16 matrix instructions is slow, never wrong):
the same ranked lists and metrics as the fp32 pass, and the pass taken recorded in the counts."""

import numpy as np
import pytest
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.kernels.search import SEARCH_ENV
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext

PASSES = ("fp32", "bf16", "lowrank")
K = 10


@pytest.fixture(scope="module")
def evaluator():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=600, interactions=400))
    torch.manual_seed(0)
    dim = 32
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=dim, hidden_dim=32))
    cls = OBJECTIVES.get("clip")
    context = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), dim, dataset.catalog.num_items, True, True)
    return Evaluator(dataset, towers, cls(cls.Config(), context).eval(), 8, torch.device("cpu"), EvalConfig(ks=(1, K)))


def test_every_forced_pass_gives_the_fp32_ranking_and_metrics(evaluator, monkeypatch):
    runs = {}
    for name in PASSES:
        monkeypatch.setenv(SEARCH_ENV, name)
        metrics, _, counts = evaluator.query_task("test")
        assert counts["search"]["scan"] == name
        assert counts["search"]["reason"].startswith(f"set by {SEARCH_ENV}={name}")
        runs[name] = metrics, evaluator.last_query_run
    fp32 = runs["fp32"][1]
    assert fp32.ranked.shape[1] == K and len(fp32.ranked) >= 20
    # the ranking is unique whatever the summation order: among each row's first K + 1 exact
    # (float64) scores no two lie within 4 E of each other, E the fp32 summation error bound
    # gamma_d ||q|| max ||x||; every pass computes each score within E (+ its fp32 rounding)
    items = evaluator.embed_items(fp32.gallery).double()
    queries = evaluator.embed_queries(fp32.query_index).double()
    exact = queries @ items.T
    d = items.shape[1]
    bound = d * 2.0**-24 / (1 - d * 2.0**-24) * queries.norm(dim=1) * items.norm(dim=1).max()
    top = torch.topk(exact, K + 1, dim=1).values
    assert bool(((top[:, :-1] - top[:, 1:]).amin(dim=1) > 4 * bound).all())
    for name in ("bf16", "lowrank"):
        metrics, run = runs[name]
        assert np.array_equal(run.ranked, fp32.ranked), name
        assert metrics == runs["fp32"][0], name
    # the certified passes return fl32 of the float64 inner product: the same bits, and the fp32
    # pass's BLAS sums within E of them
    assert np.array_equal(runs["bf16"][1].scores, runs["lowrank"][1].scores)
    assert bool((torch.from_numpy(np.abs(runs["bf16"][1].scores - fp32.scores)).double() <= bound[:, None]).all())


def test_a_forced_pass_needs_a_known_name(evaluator, monkeypatch):
    monkeypatch.setenv(SEARCH_ENV, "int8")
    with pytest.raises(ValueError, match=f"{SEARCH_ENV} must be one of auto, fp32, bf16, lowrank, got 'int8'"):
        evaluator.query_task("test")
