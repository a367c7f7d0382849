"""Evaluation encodes its chunks on worker threads on CPU (`Evaluator._encode_chunks`); the
embeddings must be those of encoding the chunks in turn, bit for bit."""

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


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _evaluator(dataset, objective: str):
    torch.manual_seed(0)
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get(objective)
    context = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 16, dataset.catalog.num_items, True, True)
    # a small encode batch: many chunks, more than workers, and a short last one
    return Evaluator(dataset, towers, cls(cls.Config(), context).eval(), 8, torch.device("cpu"), EvalConfig(encode_batch_size=37))


def _encode_all(evaluator, dataset):
    items = np.arange(dataset.catalog.num_items)
    return {
        "items": evaluator.embed_items(items),
        "items_without_title": evaluator.embed_items(items[::3], exclude_slot=1),
        "slot": evaluator.embed_slot(items[5:400], 2),
        "queries": evaluator.embed_queries(np.arange(len(dataset.queries.features))),
    }


@pytest.mark.parametrize("objective", ["factorized", "clip", "oat", "mover"])
def test_parallel_encoding_equals_encoding_in_turn(objective, threads):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=500, interactions=300))
    evaluator = _evaluator(dataset, objective)
    # in turn, single-threaded: the arithmetic each worker runs
    torch.set_num_threads(1)
    evaluator.parallel_encoding = False
    in_turn = _encode_all(evaluator, dataset)
    torch.set_num_threads(2)
    evaluator.parallel_encoding = True
    used = []
    original = evaluator.towers.encode_views

    def spy(batch):  # the chunks really run on worker threads, single-threaded
        used.append(torch.get_num_threads())
        return original(batch)

    evaluator.towers.encode_views = spy
    parallel = _encode_all(evaluator, dataset)
    assert used and set(used) == {1}
    assert torch.get_num_threads() == 2  # the caller's setting is restored
    for name, value in in_turn.items():
        assert value.shape == parallel[name].shape and value.dtype == torch.float32
        assert torch.equal(value, parallel[name]), name


def test_empty_and_single_chunk(threads):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=200, interactions=50))
    evaluator = _evaluator(dataset, "factorized")
    torch.set_num_threads(2)
    assert evaluator.embed_items(np.arange(0)).shape == (0, 16)
    one = evaluator.embed_items(np.arange(30))  # one chunk: the caller's threads
    evaluator.parallel_encoding = False
    assert torch.equal(one, evaluator.embed_items(np.arange(30)))


def test_an_error_in_a_worker_reaches_the_caller(threads):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=300, interactions=50))
    evaluator = _evaluator(dataset, "factorized")
    torch.set_num_threads(2)

    def broken(batch):
        raise RuntimeError("tower failed")

    evaluator.towers.encode_views = broken
    with pytest.raises(RuntimeError, match="tower failed"):
        evaluator.embed_items(np.arange(300))
    assert torch.get_num_threads() == 2
