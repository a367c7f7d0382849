"""The cross-view tasks encode each (item, view) once and build every query, leave-one-out target
and item embedding from those tower outputs. The results must be those of encoding per task."""

import numpy as np
import pytest
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.eval.evaluator import EvalConfig, Evaluator
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-for-bit equality is a property of the arithmetic at one thread: torch's multi-threaded
    CPU sgemm (MKL on AVX2) may round a row differently depending on how many rows share its batch,
    and the two paths batch the same views differently (`make test` runs at one thread anyway)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _evaluator(dataset, objective: str, max_views: int = 8, encode_batch_size: int = 64):
    torch.manual_seed(0)
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get(objective)
    context = ObjectiveContext(
        SlotLayout.from_catalog(dataset.catalog),
        16,
        dataset.catalog.num_items,
        dataset.queries is not None,
        dataset.queries is not None,
    )
    # a small encode batch: several batches per task, so batch boundaries are exercised too
    config = EvalConfig(encode_batch_size=encode_batch_size)
    return Evaluator(dataset, towers, cls(cls.Config(), context), max_views, torch.device("cpu"), config)


def _both(evaluator, call):
    evaluator.reuse_view_embeddings = True
    reused = call()
    per_query_reused = {t: {k: np.array(v) for k, v in d.items()} for t, d in evaluator.per_query.items()}
    evaluator.reuse_view_embeddings = False
    fresh = call()
    return reused, fresh, per_query_reused, evaluator.per_query


@pytest.mark.parametrize("objective", ["factorized", "clip", "full_ot", "oat", "mover", "pairwise"])
def test_cross_view_results_equal_with_and_without_reuse(objective):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=1500, interactions=400))
    evaluator = _evaluator(dataset, objective)
    (m1, na1), (m2, na2), pq1, pq2 = _both(evaluator, lambda: evaluator.cross_view(dataset.evaluation_items()))
    assert set(m1) == {"title->image", "image->title", "image->item", "text->item", "aux->item"}
    assert m1 == m2 and na1 == na2  # exactly, not to a tolerance
    assert pq1.keys() == pq2.keys()
    for task in pq1:
        for metric, values in pq1[task].items():
            np.testing.assert_array_equal(values, pq2[task][metric])


@pytest.mark.parametrize("modalities, max_views", [("text", 4), ("image+text", 3)])
def test_reuse_in_one_modality_catalogs_and_under_a_views_cap(modalities, max_views):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=800, interactions=200, modalities=modalities))
    evaluator = _evaluator(dataset, "factorized", max_views=max_views, encode_batch_size=50)
    (m1, na1), (m2, na2), _, _ = _both(evaluator, lambda: evaluator.cross_view(dataset.evaluation_items()))
    assert m1 and m1 == m2 and na1 == na2


def test_full_evaluation_equal_with_and_without_reuse():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=1200, interactions=600))
    evaluator = _evaluator(dataset, "factorized")
    (m1, na1, c1), (m2, na2, c2), _, _ = _both(evaluator, lambda: evaluator.evaluate(seed=0))
    assert "query->item" in m1 and "aux->item" in m1
    assert m1 == m2 and na1 == na2 and c1 == c2


def test_stored_view_embeddings_are_the_towers_outputs():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=600, interactions=0))
    evaluator = _evaluator(dataset, "factorized", max_views=5)
    items = dataset.evaluation_items()
    views = evaluator.embed_views(items)
    avail = dataset.catalog.availability(items) & (np.cumsum(dataset.catalog.availability(items), 1) <= 5)
    for s in range(len(dataset.catalog.slots)):
        rows = np.flatnonzero(avail[:, s])
        torch.testing.assert_close(views.table[rows, s], evaluator.embed_slot(items[rows], s), rtol=0, atol=0)
        assert not views.table[np.flatnonzero(~avail[:, s]), s].any()  # absent or capped views stay zero
    np.testing.assert_array_equal(
        evaluator.embed_items_from(views, np.arange(len(items)), exclude_slot=1).numpy(),
        evaluator.embed_items(items, exclude_slot=1).numpy(),
    )
