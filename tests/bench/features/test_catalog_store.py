"""Generated catalogs stored once per data config and memory-mapped (ftbench.features.catalog_store)."""

import numpy as np
import pytest
from ftbench.datasets.synthetic import SyntheticCatalog, SyntheticConfig
from ftbench.features import catalog_store
from ftbench.features.catalog_store import StoredCatalog, key_material, should_store, store_folder, stored_catalog
from ftbench.run.experiment import RunSpec, build_dataset, execute, prepare


def _config(**kw):
    return SyntheticConfig(items=kw.pop("items", 700), interactions=0, **kw)


def _store(config, root, notes=None):
    return stored_catalog(SyntheticCatalog(config), "synthetic", config, root=root, notes=notes)


def test_stored_features_equal_freshly_generated_ones(tmp_path):
    config = _config(max_views=6)
    stored = _store(config, tmp_path)
    fresh = SyntheticCatalog(config)
    assert isinstance(stored, StoredCatalog) and stored.slots == fresh.slots and stored.feature_dims == fresh.feature_dims
    every = np.arange(config.items)
    np.testing.assert_array_equal(stored.availability(every), fresh.availability(every))
    picked = np.array([5, 3, 699, 3, 0, 250])  # unsorted, repeated: a gather
    for s in range(len(fresh.slots)):
        whole = stored.features(every, s)
        assert whole.dtype == np.float32 and whole.flags.writeable  # a copy, not the read-only map
        np.testing.assert_array_equal(whole.view(np.uint32), fresh.features(every, s).view(np.uint32))
        np.testing.assert_array_equal(stored.features(picked, s), fresh.features(picked, s))
        np.testing.assert_array_equal(stored.features(np.arange(100, 164), s), fresh.features(np.arange(100, 164), s))
    # the generator's own attributes stay reachable (queries, slot information use them)
    np.testing.assert_array_equal(stored.fine, fresh.fine)
    # a second open maps the same files and generates nothing
    before = {p.name: p.stat().st_mtime_ns for p in stored.folder.iterdir()}
    again = _store(config, tmp_path)
    assert again.folder == stored.folder
    assert {p.name: p.stat().st_mtime_ns for p in again.folder.iterdir()} == before


def test_a_changed_data_config_gives_another_key(tmp_path):
    base = _config()
    key = lambda cfg: store_folder("synthetic", key_material("synthetic", cfg, SyntheticCatalog(cfg)), tmp_path)  # noqa: E731
    assert key(base) == key(_config())
    changed = [
        _config(seed=1),
        _config(aux_informativeness=0.5),
        _config(items=701),
        _config(max_views=6),
        _config(cross_side_overlap=0.0),
    ]
    folders = {key(cfg) for cfg in changed} | {key(base)}
    assert len(folders) == len(changed) + 1
    # fields that shape only the queries share the folder: their features are the same bits
    query_only = [
        SyntheticConfig(items=700, interactions=900, query_aux_fraction=0.2),
        SyntheticConfig(
            items=700, interactions=500, mean_interactions_per_query=3.0, popularity_exponent=0.5, query_fractions=(0.6, 0.2, 0.2)
        ),
    ]
    assert {key(cfg) for cfg in query_only} == {key(base)}
    every = np.arange(700)
    for cfg in query_only:
        fresh, ref = SyntheticCatalog(cfg), SyntheticCatalog(base)
        np.testing.assert_array_equal(fresh.availability(every), ref.availability(every))
        for s in range(len(ref.slots)):
            np.testing.assert_array_equal(fresh.features(every, s).view(np.uint32), ref.features(every, s).view(np.uint32))
    # a different data set name never shares a folder either
    assert store_folder("other", key_material("other", base, SyntheticCatalog(base)), tmp_path) != key(base)


def test_an_edited_generator_gives_another_key(monkeypatch, tmp_path):
    cfg = _config()
    original = key_material("synthetic", cfg, SyntheticCatalog(cfg))
    monkeypatch.setattr(catalog_store, "generator_fingerprint", lambda catalog: {"numpy": "0.0", "edited": "yes"})
    assert store_folder("synthetic", key_material("synthetic", cfg, SyntheticCatalog(cfg)), tmp_path) != store_folder(
        "synthetic", original, tmp_path
    )


def _damage_and_reopen(tmp_path, damage):
    config = _config()
    first = _store(config, tmp_path)
    folder = first.folder
    del first
    damage(folder)
    notes = []
    stored = _store(config, tmp_path, notes)
    fresh = SyntheticCatalog(config)
    every = np.arange(config.items)
    for s in range(len(fresh.slots)):
        np.testing.assert_array_equal(stored.features(every, s), fresh.features(every, s))
    return notes


def test_a_truncated_file_is_regenerated_and_said(tmp_path):
    def truncate(folder):
        path = folder / "slot_2.npy"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    notes = _damage_and_reopen(tmp_path, truncate)
    assert len(notes) == 1 and "slot_2.npy" in notes[0] and "regenerated" in notes[0]


def test_changed_values_are_found_by_the_spot_check_and_regenerated(tmp_path):
    def zero_the_tail(folder):  # what a partial write of the last rows would leave
        path = folder / "slot_3.npy"
        array = np.load(path)
        array[-50:] = 0.0
        np.save(path, array)

    notes = _damage_and_reopen(tmp_path, zero_the_tail)
    assert len(notes) == 1 and "slot_3.npy differs from a fresh generation" in notes[0]


@pytest.mark.parametrize("what", ["manifest.json", "available.npy", "slot_0.npy"])
def test_a_partial_folder_is_regenerated(tmp_path, what):
    notes = _damage_and_reopen(tmp_path, lambda folder: (folder / what).unlink())
    assert len(notes) == 1 and "regenerated" in notes[0]
    assert ("incomplete" in notes[0]) == (what == "manifest.json")


def test_a_foreign_manifest_is_not_trusted(tmp_path):
    notes = _damage_and_reopen(tmp_path, lambda folder: (folder / "manifest.json").write_text('{"key_material": {}}'))
    assert "another config or generator" in notes[0]


def test_interrupted_writes_leave_no_file_under_its_final_name(tmp_path, monkeypatch):
    config = _config()
    calls = {"n": 0}
    original = SyntheticCatalog.features

    def dies_at_the_third_piece(self, items, slot):
        calls["n"] += 1
        if slot == 1:
            raise KeyboardInterrupt
        return original(self, items, slot)

    monkeypatch.setattr(SyntheticCatalog, "features", dies_at_the_third_piece)
    with pytest.raises(KeyboardInterrupt):
        _store(config, tmp_path)
    folder = next((tmp_path / "catalogs").iterdir())
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["available.npy", "slot_0.npy"]  # complete files only: no temp file, no manifest
    monkeypatch.setattr(SyntheticCatalog, "features", original)
    notes = []
    stored = _store(config, tmp_path, notes)
    assert "incomplete" in notes[0]
    np.testing.assert_array_equal(stored.features(np.arange(700), 1), SyntheticCatalog(config).features(np.arange(700), 1))


def test_an_unwritable_cache_folder_is_an_error_naming_it(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(OSError, match=r"stored catalog under .*cache.*--cache-dir"):
        _store(_config(), blocker)


def test_which_catalogs_are_stored(monkeypatch):
    small = SyntheticCatalog(_config())
    assert not should_store(small)  # below the threshold: generated in memory as before
    monkeypatch.setattr(catalog_store, "MIN_STORED_BYTES", 0)
    assert should_store(small)
    monkeypatch.setenv("FTBENCH_STORE_CATALOGS", "0")
    assert not should_store(small)
    # in-memory catalogs (read from disk by their loaders) are never stored again
    from ftbench.data.catalog import ArrayCatalog, ViewSlot

    monkeypatch.delenv("FTBENCH_STORE_CATALOGS")
    arrays = ArrayCatalog([ViewSlot("title", "text", "primary")], [np.ones((3, 4), np.float32)], np.ones((3, 1), bool), [0, 1, 2])
    assert not should_store(arrays)


def test_a_run_on_the_stored_catalog_gives_the_same_result(monkeypatch, tmp_path):
    """Training and evaluation read the stored features: the metrics equal a run without the store."""
    spec = RunSpec(
        objective="factorized",
        steps=3,
        batch_size=32,
        sets=["dataset.items=1500", "dataset.interactions=600", "train.eval_every=0", "train.val_gallery_size=500"],
    )
    monkeypatch.setenv("FTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(catalog_store, "MIN_STORED_BYTES", 0)
    stored_result, _ = execute(prepare(spec), None)
    assert isinstance(build_dataset(prepare(spec)).catalog, StoredCatalog)
    monkeypatch.setenv("FTBENCH_STORE_CATALOGS", "off")
    assert not isinstance(build_dataset(prepare(spec)).catalog, StoredCatalog)
    plain_result, _ = execute(prepare(spec), None)
    assert stored_result.metrics == plain_result.metrics
    assert stored_result.training["loss_curve"] == plain_result.training["loss_curve"]
    assert stored_result.notes == plain_result.notes
