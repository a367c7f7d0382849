"""The synthetic marketplace: deterministic per (seed, item, view), semantics as documented."""

import hashlib

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
    cat = SyntheticCatalog(SyntheticConfig(items=400, interactions=0, attributes=8, main_attributes=2))
    items = np.arange(400)
    for s, slot in enumerate(cat.slots):
        shown = cat.observed(items, s)
        if slot.role == "primary":
            assert (np.sort(shown, axis=1) == [0, 1]).all()
        else:
            assert set(np.unique(shown)) <= {2, 3, 4, 5, 6, 7}
            assert (shown[:, 0] != shown[:, 1]).all()  # a view never shows an attribute twice


# sha256 of the features of every slot (items 0..n-1, slot order) and of the query features +
# interactions, computed with the round-robin generator before cross-side content and late
# attributes existed (commit cdd7446); `cross_side_overlap=0, late_attributes=0` must reproduce it
_ROUND_ROBIN = {
    "default": (
        dict(items=400, interactions=600),
        "e13072c7411c73fe6990cfc81a8ba785fb6a7e04355e0badb1e385120f6f21f0",
        "18e1335225ec532118dff00baadec0a5d3e7ac67ca8d8550470b375defce2901",
    ),
    "16 views": (
        dict(items=300, interactions=0, max_views=16, seed=5),
        "6aa88a39d4cb33df4df57de53932de875aac8e3b3985d0dac926a4794c058322",
        None,
    ),
    "text only": (
        dict(items=300, interactions=400, modalities="text", max_views=6, seed=2),
        "0f4f27b06f3aa47cc09de5b1df98471d9a95a6bcbca0d56dcc0d6c612be21061",
        "6a8a243d01dfa046d1705fa7c48661bd19247b3f59cc5ae7f8a3472c06395062",
    ),
    "8 attributes": (
        dict(items=300, interactions=400, attributes=8, aux_informativeness=0.5, seed=1),
        "74cb2cf9e0d843326cc7ad699e5fe97b0dd5f9097630ab870b2b4dd0f7bfa58e",
        "17e068b11789629a7db14a45f0e97cfda532c00d09637599c730427399c2a1ee",
    ),
}


@pytest.mark.parametrize("case", sorted(_ROUND_ROBIN))
def test_overlap_zero_without_late_attributes_is_bit_identical_to_the_round_robin_layout(case):
    options, features_sha, queries_sha = _ROUND_ROBIN[case]
    options = {"attributes": 6, **options, "cross_side_overlap": 0.0, "late_attributes": 0}
    ds = DATASETS.get("synthetic")().build(SyntheticConfig(**options))
    digest = hashlib.sha256()
    for s in range(len(ds.catalog.slots)):
        digest.update(np.ascontiguousarray(ds.catalog.features(np.arange(options["items"]), s)).tobytes())
    assert digest.hexdigest() == features_sha
    if queries_sha is None:
        assert ds.queries is None
    else:
        q = ds.queries
        assert hashlib.sha256(q.features.tobytes() + q.interactions.tobytes()).hexdigest() == queries_sha


def _side_distribution(cat, items, modality):
    """Share of each attribute among the auxiliary attributes shown by `modality`'s aux views."""
    shown = np.concatenate(
        [
            cat.observed(items, s).ravel()
            for s, slot in enumerate(cat.slots)
            if slot.role == "auxiliary" and slot.modality == modality
        ]
    )
    return np.bincount(shown, minlength=cat.config.attributes) / len(shown)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 1.0])
def test_cross_side_overlap_is_the_overlap_of_the_two_sides_attribute_distributions(rho):
    # late attributes off: the overlap is that of the early auxiliary attributes {2..5}
    cat = SyntheticCatalog(
        SyntheticConfig(items=20_000, interactions=0, max_views=8, late_attributes=0, attributes=6, cross_side_overlap=rho)
    )
    items = np.arange(20_000)
    image, text = _side_distribution(cat, items, "image"), _side_distribution(cat, items, "text")
    assert np.minimum(image, text).sum() == pytest.approx(rho, abs=0.01)
    if rho == 0.0:  # today's layout: images show {2, 3}, texts {4, 5}
        assert set(np.flatnonzero(image)) == {2, 3} and set(np.flatnonzero(text)) == {4, 5}


def test_overlap_shares_content_within_each_item():
    """With overlap, an item's auxiliary image and its description often show the same attribute;
    without, never."""
    items = np.arange(5000)
    for rho, low, high in ((0.0, 0.0, 0.0), (0.5, 0.3, 0.7)):
        cat = SyntheticCatalog(SyntheticConfig(items=5000, interactions=0, cross_side_overlap=rho))
        image_2, description = cat.observed(items, 2), cat.observed(items, 3)
        shared = (image_2[:, :, None] == description[:, None, :]).any(axis=(1, 2))
        assert low <= shared.mean() <= high


def test_views_from_the_fifth_on_sometimes_show_attributes_not_shown_yet():
    n = 20_000
    items = np.arange(n)
    cat = SyntheticCatalog(
        SyntheticConfig(items=n, interactions=0, max_views=10, attributes=8, late_attributes=2, new_attribute_rate=0.5)
    )
    late = {6, 7}
    shown = [cat.observed(items, s) for s in range(len(cat.slots))]
    for s in range(4):  # the first four views never show a late attribute
        assert not np.isin(shown[s], list(late)).any()
    first_new = np.isin(shown[4], list(late)).any(axis=1)
    assert first_new.mean() == pytest.approx(0.5, abs=0.02)  # how often: new_attribute_rate
    # what a late view shows new was not shown before by the item's earlier views, until all are shown
    seen = np.zeros((n, 8), dtype=bool)
    for s in range(len(cat.slots)):
        lasts = shown[s][:, -1]
        is_late = np.isin(lasts, list(late))
        assert not seen[is_late, lasts[is_late]].any()
        np.put_along_axis(seen, shown[s], True, axis=1)
    # more views, more information: the share of items whose views show every attribute grows
    assert seen[:, 6].mean() > first_new.mean() + 0.2
    # with rate 0 no view ever shows a late attribute
    none = SyntheticCatalog(SyntheticConfig(items=2000, interactions=0, max_views=10, new_attribute_rate=0.0))
    assert not any(np.isin(none.observed(items[:2000], s), [6, 7]).any() for s in range(10))


def test_features_follow_the_attributes_each_view_shows():
    """Changing one attribute's value changes exactly the views whose layout shows it (per item)."""
    n = 3000
    items = np.arange(n)
    cat = SyntheticCatalog(SyntheticConfig(items=n, interactions=0, noise=0.6))
    before = {s: cat.features(items, s) for s in range(len(cat.slots))}
    cat.attr = cat.attr.copy()
    cat.attr[:, 4] = (cat.attr[:, 4] + 1) % cat.config.attribute_values
    cat._kept.clear()
    for s in range(len(cat.slots)):
        shows = (cat.observed(items, s) == 4).any(axis=1)
        changed = (cat.features(items, s) != before[s]).any(axis=1)
        np.testing.assert_array_equal(changed, shows)
        if cat.slots[s].role == "auxiliary":  # per item: some of the views show it, others not
            assert 0 < shows.sum() < n


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
    with pytest.raises(ValueError, match="cross_side_overlap"):
        SyntheticConfig(cross_side_overlap=-0.1).validate()
    with pytest.raises(ValueError, match="new_attribute_rate"):
        SyntheticConfig(new_attribute_rate=2).validate()
    with pytest.raises(ValueError, match="late_attributes"):
        SyntheticConfig(attributes=6, main_attributes=2, late_attributes=5).validate()


def test_slot_information_auxiliary_slots_at_chance_without_informativeness():
    from ftbench.datasets.synthetic import slot_information

    rows = slot_information(SyntheticConfig(items=3000, interactions=0, aux_informativeness=0.0))
    by_slot = {r.slot: r for r in rows}
    chance = rows[0].chance  # 10 / 300 test items
    for r in rows:
        if r.role == "auxiliary":
            for value in (r.recall_vs_primary, r.recall_vs_other_views, r.recall_vs_other_modality):
                assert value < chance + 0.05  # binomial sd over ~220 queries is about 0.012
        else:
            assert r.recall_vs_primary is None and r.recall_vs_other_modality > 0.5
    assert by_slot["title"].recall_vs_other_modality > 10 * chance


def test_slot_information_cross_side_content_raises_cross_modal_recall_of_aux_slots():
    from ftbench.datasets.synthetic import slot_information

    def aux_cross_modal(rho):
        rows = slot_information(SyntheticConfig(items=6000, interactions=0, cross_side_overlap=rho, noise=1.0))
        return np.mean([r.recall_vs_other_modality for r in rows if r.role == "auxiliary"])

    assert aux_cross_modal(1.0) > aux_cross_modal(0.0) + 0.03


def test_data_info_command_prints_the_table():
    from ftbench.cli import app
    from typer.testing import CliRunner

    wide = {"COLUMNS": "200"}  # the table's headers unwrapped, whatever the terminal
    result = CliRunner().invoke(app, ["data", "info", "synthetic", "--set", "dataset.items=1000"], env=wide)
    assert result.exit_code == 0, result.output
    for word in ("image_2", "description", "vs other modality", "chance = 0.100"):
        assert word in result.output
    bad = CliRunner().invoke(app, ["data", "info", "synthetic", "--set", "cross_side_overlap=2"], env=wide)
    assert bad.exit_code == 2 and "cross_side_overlap" in bad.output


def test_stable_order_is_numpys_stable_argsort():
    from ftbench.datasets.synthetic import stable_order

    rng = np.random.default_rng(3)
    for high in (2, 6144, 65536, 70000, 2**40):  # uint16 radix sort up to 65535, else the int64 sort
        keys = rng.integers(0, high, 50_000).astype(np.int64)  # many ties: stability matters
        np.testing.assert_array_equal(stable_order(keys), np.argsort(keys, kind="stable"))
    keys = np.array([3, -1, 3, 0], dtype=np.int64)
    np.testing.assert_array_equal(stable_order(keys), np.argsort(keys, kind="stable"))
    assert len(stable_order(np.zeros(0, dtype=np.int64))) == 0
