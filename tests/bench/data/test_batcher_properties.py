"""Property-based tests (hypothesis) of the batcher: the training batch sampler, the `--views` cap
and the dense view batch, on generated catalogs, availability masks and interactions.

Why: the batcher decides what every objective sees. A repeated item in a batch is its own
in-batch negative, a test item leaking into training inflates every cross-view metric, a view
placed at the wrong position or with another item's features corrupts training silently. These
properties are checked on arbitrary shapes (missing views anywhere, items with one view, batches
larger than the training set):

- `BatchSampler`: every batch has distinct items and distinct queries, only (query, item) pairs
  with both in the train split (or train items alone without queries), at most `batch_size`
  rows, and every usable training pair appears sooner or later (none is unreachable);
- `cap_views`: keeps each item's first V available views in slot order, nothing else;
- `build_view_batch`: position (b, w) holds the features of item b's w-th selected slot, slots in
  increasing order, padding masked out with slot -1, each item's fused weights summing to 1.
"""

from __future__ import annotations

import numpy as np
import torch
from ftbench.data.batching import build_view_batch
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.dataset import MultiViewDataset
from ftbench.data.queries import QuerySet, relevance_from_pairs
from ftbench.data.views import SlotLayout, all_views, cap_views
from ftbench.train.loop import BatchSampler
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

SLOTS = [
    ViewSlot("image", "image", "primary"),
    ViewSlot("title", "text", "primary"),
    ViewSlot("image_2", "image", "auxiliary"),
    ViewSlot("description", "text", "auxiliary"),
    ViewSlot("image_3", "image", "auxiliary"),
]
DIMS = {"image": 3, "text": 2}


@st.composite
def catalogs(draw, min_items=2):
    """An ArrayCatalog of 2-30 items with random availability (every item keeps a view)."""
    n = draw(st.integers(min_items, 30))
    avail = draw(arrays(np.bool_, (n, len(SLOTS))))
    avail[~avail.any(axis=1), draw(st.integers(0, len(SLOTS) - 1))] = True
    features = [np.arange(n * DIMS[s.modality], dtype=np.float32).reshape(n, -1) * 10 + k for k, s in enumerate(SLOTS)]
    return ArrayCatalog(SLOTS, features, avail, [f"item{i}" for i in range(n)])


@st.composite
def datasets(draw):
    cat = draw(catalogs())
    n = cat.num_items
    split = draw(arrays(np.int8, n, elements=st.integers(0, 2)))
    split[draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))] = 0  # >= 2 train items
    if not draw(st.booleans()):
        return MultiViewDataset("generated", cat, split)
    nq = draw(st.integers(1, 12))
    inter = draw(st.lists(st.tuples(st.integers(0, nq - 1), st.integers(0, n - 1)), min_size=1, max_size=40))
    inter = np.array(inter, dtype=np.int64)
    q_split = draw(arrays(np.int8, nq, elements=st.integers(0, 2)))
    indptr, items, grades = relevance_from_pairs(nq, inter)
    queries = QuerySet(
        ids=np.array([f"q{i}" for i in range(nq)]),
        modality="text",
        features=np.zeros((nq, DIMS["text"]), np.float32),
        relevant_indptr=indptr,
        relevant_items=items,
        relevant_grades=grades,
        split=q_split,
        interactions=inter,
    )
    return MultiViewDataset("generated", cat, split, queries=queries)


@settings(max_examples=60, deadline=None)
@given(ds=datasets(), batch_size=st.integers(2, 40), seed=st.integers(0, 2**16))
def test_batches_hold_distinct_train_pairs_and_cover_them(ds, batch_size, seed):
    train_items = ds.item_split == 0
    q = ds.queries
    usable = set()
    if q is not None:
        usable = {(int(a), int(b)) for a, b in q.interactions if q.split[a] == 0 and train_items[b]}
    try:
        sampler = BatchSampler(ds, batch_size, seed)
    except ValueError as exc:  # fewer than 2 distinct train items among the usable pairs
        assert "at least 2 distinct train items" in str(exc)
        assert len({b for _, b in usable}) < 2
        return
    expected = usable if sampler.with_queries else set(np.flatnonzero(train_items).tolist())
    seen: set = set()
    draws = 0
    while seen != expected and draws < 2000:  # coupon collector: ~P log P draws in the worst case here
        draws += 1
        queries, items = sampler.next()
        assert 1 <= len(items) <= batch_size and len(queries) == len(items)
        assert len(set(items.tolist())) == len(items), "an item twice in one batch"
        assert train_items[items].all(), "a non-train item in a training batch"
        if sampler.with_queries:
            assert len(set(queries.tolist())) == len(queries), "a query twice in one batch"
            pairs = set(zip(queries.tolist(), items.tolist()))
            assert pairs <= usable
            seen |= pairs
        else:
            assert (queries == -1).all()
            seen |= set(items.tolist())
    assert seen == expected, f"{draws} batches did not cover every training pair"


@settings(max_examples=100, deadline=None)
@given(avail=arrays(np.bool_, st.tuples(st.integers(1, 8), st.integers(1, 7))), views=st.integers(1, 8))
def test_cap_keeps_the_first_available_views_in_slot_order(avail, views):
    capped = cap_views(torch.from_numpy(avail), views).numpy()
    for row, kept in zip(avail, capped):
        first = np.flatnonzero(row)[:views]
        assert np.flatnonzero(kept).tolist() == first.tolist()


@settings(max_examples=60, deadline=None)
@given(cat=catalogs(min_items=1), data=st.data())
def test_view_batch_places_each_selected_view_with_its_own_features(cat, data):
    layout = SlotLayout.from_catalog(cat)
    items = np.array(data.draw(st.lists(st.integers(0, cat.num_items - 1), min_size=1, max_size=8)), dtype=np.int64)
    views = data.draw(st.integers(1, len(SLOTS)))
    mask = cap_views(torch.from_numpy(cat.availability(items)), views)
    batch = build_view_batch(cat, layout, items, all_views(mask, layout, 0.5))
    b, w = batch.shape
    assert b == len(items) and w == max(int(mask.sum(1).max()), 1)
    for row in range(b):
        selected = np.flatnonzero(mask[row].numpy()).tolist()
        slots = batch.slot[row].tolist()
        assert slots[: len(selected)] == selected and all(s == -1 for s in slots[len(selected) :])
        assert batch.mask[row].tolist() == [k < len(selected) for k in range(w)]
        assert abs(float(batch.item_weight[row].sum()) - 1.0) < 1e-6
    placed = 0
    for modality, (positions, values) in batch.features.items():
        for pos, value in zip(positions.tolist(), values):
            row, col = divmod(pos, w)
            slot = int(batch.slot[row, col])
            assert slot >= 0 and cat.slots[slot].modality == modality
            np.testing.assert_array_equal(value.numpy(), cat.features(items[[row]], slot)[0])
            placed += 1
    assert placed == int(mask.sum())
