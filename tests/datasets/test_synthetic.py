"""The synthetic marketplace: deterministic per (seed, item, view), semantics as documented."""

import numpy as np
import pytest

from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticCatalog, SyntheticConfig


def test_features_do_not_depend_on_batch_composition():
    cat = SyntheticCatalog(SyntheticConfig(items=500, interactions=0))
    for slot in range(len(cat.slots)):
        together = cat.features(np.array([5, 7, 11, 400]), slot)
        alone = np.concatenate([cat.features(np.array([i]), slot) for i in (5, 7, 11, 400)])
        np.testing.assert_array_equal(together, alone)


def test_kept_features_equal_generated_features():
    kept = SyntheticCatalog(SyntheticConfig(items=300, interactions=0))
    lazy = SyntheticCatalog(SyntheticConfig(items=300, interactions=0))
    lazy._keep = False
    items = np.array([299, 0, 17, 17, 150])
    for slot in range(len(kept.slots)):
        np.testing.assert_array_equal(kept.features(items, slot), lazy.features(items, slot))
    assert kept._kept and not lazy._kept


def test_same_seed_same_data_other_seed_other_data():
    plugin = DATASETS.get("synthetic")()
    a = plugin.build(SyntheticConfig(items=400, interactions=500, seed=3))
    b = plugin.build(SyntheticConfig(items=400, interactions=500, seed=3))
    c = plugin.build(SyntheticConfig(items=400, interactions=500, seed=4))
    items = np.arange(400)
    np.testing.assert_array_equal(a.catalog.features(items, 2), b.catalog.features(items, 2))
    np.testing.assert_array_equal(a.queries.features, b.queries.features)
    np.testing.assert_array_equal(a.queries.interactions, b.queries.interactions)
    np.testing.assert_array_equal(a.item_split, b.item_split)
    assert not np.allclose(a.catalog.features(items, 2), c.catalog.features(items, 2))


def _scramble_semantics(cat):
    rng = np.random.default_rng(0)
    cat.top = rng.permutation(cat.top)
    cat.fine = rng.permutation(cat.fine)
    cat.attr = rng.permutation(cat.attr)
    cat._kept.clear()  # features kept in memory were generated from the old semantics


def test_informativeness_zero_makes_auxiliary_views_carry_no_item_information():
    items = np.arange(300)
    cat = SyntheticCatalog(SyntheticConfig(items=300, interactions=0, aux_informativeness=0.0))
    before = {s: cat.features(items, s) for s in range(len(cat.slots))}
    _scramble_semantics(cat)  # change every item's category and attributes
    for s, slot in enumerate(cat.slots):
        after = cat.features(items, s)
        if slot.role == "auxiliary":
            np.testing.assert_array_equal(after, before[s])  # no dependence on the item's semantics
        else:
            assert not np.allclose(after, before[s])


def test_informative_auxiliary_views_depend_on_semantics():
    items = np.arange(300)
    cat = SyntheticCatalog(SyntheticConfig(items=300, interactions=0, aux_informativeness=1.0))
    before = cat.features(items, 2)
    _scramble_semantics(cat)
    assert not np.allclose(cat.features(items, 2), before)


def test_primary_views_miss_auxiliary_attributes():
    cat = SyntheticCatalog(SyntheticConfig(items=50, interactions=0, attributes=6, main_attributes=2))
    for s, slot in enumerate(cat.slots):
        if slot.role == "primary":
            assert set(cat._observed[s]) == {0, 1}
        else:
            assert set(cat._observed[s]) <= {2, 3, 4, 5} and cat._observed[s]


def test_queries_interactions_and_popularity_skew():
    ds = DATASETS.get("synthetic")().build(SyntheticConfig(items=2000, interactions=5000))
    q = ds.queries
    assert len(q.interactions) == 5000
    ds.queries.check_against(2000)
    # relevant items are exactly the interacted items
    for qi in range(0, q.num_queries, 97):
        got = set(q.relevant(qi).tolist())
        assert got == set(q.interactions[q.interactions[:, 0] == qi, 1].tolist())
    # a popularity skew: the most interacted 1% of items hold far more than 1% of interactions
    counts = np.sort(np.bincount(q.interactions[:, 1], minlength=2000))[::-1]
    assert counts[:20].sum() > 0.05 * counts.sum()
    # relevant items match the query's fine category
    first = q.interactions[np.searchsorted(q.interactions[:, 0], np.arange(q.num_queries))]
    cat = ds.catalog
    for qi in range(0, q.num_queries, 113):
        assert set(cat.fine[q.relevant(qi)].tolist()) == {int(cat.fine[first[qi, 1]])}


def test_scales_to_a_million_items_lazily():
    cat = SyntheticCatalog(SyntheticConfig(items=1_000_000, interactions=0, max_views=16))
    # item semantics are small integer arrays; features of any item are generated on demand
    held = cat.top.nbytes + cat.fine.nbytes + cat.attr.nbytes
    assert held < 30 * 2**20
    assert not cat._keep  # 1M x 16 views of features would exceed the in-memory budget
    feats = cat.features(np.array([0, 999_999]), 15)
    assert feats.shape == (2, cat.feature_dims[cat.slots[15].modality]) and np.isfinite(feats).all()


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="aux_informativeness"):
        SyntheticConfig(aux_informativeness=1.5).validate()
    with pytest.raises(ValueError, match="items"):
        SyntheticConfig(items=0).validate()
