"""Feature cache: a second pass encodes nothing, every part of the key matters, files are plain
npy written atomically, and the `ftbench features` command fills the cache."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from ftbench.data.catalog import ViewSlot
from ftbench.features.backbones import HashFeatures, content_hash
from ftbench.features.cache import FeatureCache, assemble_catalog, encode_views, make_progress_printer, report_progress
from typer.testing import CliRunner


class Counting(HashFeatures):
    """`hash` features that count the inputs reaching the model; version/preprocessing settable."""

    def __init__(self, modality="text", version="1", prep="p"):
        super().__init__(modality)
        self._v, self._p = version, prep

    @property
    def version(self):
        return self._v

    @property
    def preprocessing(self):
        return self._p


def test_second_pass_encodes_nothing_and_returns_identical_features(tmp_path):
    texts = ["red apple", "banana", "red apple", "oat milk"]  # one duplicate content
    bb = Counting()
    first = FeatureCache(tmp_path).encode(bb, texts)
    assert bb.encoded == 3  # the duplicate is encoded once
    np.testing.assert_array_equal(first, HashFeatures("text").encode(texts))
    bb2 = Counting()
    cache = FeatureCache(tmp_path)
    second = cache.encode(bb2, texts)
    assert bb2.encoded == 0 and bb2.calls == 0
    assert cache.stats.hits == 4 and cache.stats.encoded == 0
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "change",
    ["role", "version", "preprocessing", "content", "modality-dim"],
)
def test_every_part_of_the_key_forces_a_new_encoding(tmp_path, change):
    FeatureCache(tmp_path).encode(Counting(), ["banana"], "item")
    bb, role, text = Counting(), "item", "banana"
    if change == "role":
        role = "query"
    elif change == "version":
        bb = Counting(version="2")
    elif change == "preprocessing":
        bb = Counting(prep="other")
    elif change == "content":
        text = "banana "
    else:
        bb = Counting()
        bb.text_dim = 64
    FeatureCache(tmp_path).encode(bb, [text], role)
    assert bb.encoded == 1


def test_files_are_plain_npy_named_by_content_and_written_atomically(tmp_path):
    bb = Counting()
    cache = FeatureCache(tmp_path)
    cache.encode(bb, ["banana", "kiwi"], "query")
    key = content_hash("text", "banana")
    path = cache.path(bb, "query", key)
    assert path.parent.parent.name == "query" and path.name == f"{key}.npy"
    loaded = np.load(path, allow_pickle=False)  # no pickle needed
    assert loaded.dtype == np.float32 and loaded.shape == (128,)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temp leftovers
    assert (cache.backbone_dir(bb) / "backbone.json").is_file()
    # a truncated file is detected and re-encoded, not trusted
    path.write_bytes(path.read_bytes()[:20])
    bb2 = Counting()
    out = FeatureCache(tmp_path).encode(bb2, ["banana"], "query")
    assert bb2.encoded == 1
    np.testing.assert_array_equal(out[0], HashFeatures("text").encode(["banana"])[0])


def test_disabled_cache_writes_nothing(tmp_path):
    bb = Counting()
    FeatureCache(tmp_path / "c", enabled=False).encode(bb, ["a", "b"])
    assert bb.encoded == 2 and not (tmp_path / "c").exists()


def test_encode_views_and_assemble_catalog(tmp_path):
    table = [["red apple", None, "fruit"], ["banana", "yellow", None]]
    bb = Counting()
    arrays, avail = encode_views(table, 3, bb, FeatureCache(tmp_path))
    assert avail.tolist() == [[True, False, True], [True, True, False]]
    ref = HashFeatures("text")
    np.testing.assert_array_equal(arrays[2][0], ref.encode(["fruit"])[0])
    assert not arrays[1][0].any()  # absent view -> zeros
    slots = [ViewSlot("title", "text", "primary"), ViewSlot("a", "text", "auxiliary"), ViewSlot("b", "text", "auxiliary")]
    cat = assemble_catalog(slots, table, {"text": Counting()}, FeatureCache(tmp_path), ["x", "y"], "test")
    assert cat.num_items == 2 and cat.feature_dims == {"text": 128}
    np.testing.assert_array_equal(cat.features(np.array([1]), 1)[0], ref.encode(["yellow"])[0])
    with pytest.raises(ValueError, match="no backbone for the image views"):
        assemble_catalog([ViewSlot("i", "image", "primary")], [[None]], {"text": bb}, FeatureCache(tmp_path), ["x"], "test")


def test_progress_reporter_sees_every_encoded_input(tmp_path):
    events = []
    with report_progress(make_progress_printer(lambda label, done, total: events.append((label, done, total)))):
        FeatureCache(tmp_path, chunk=2).encode(Counting(), ["a", "b", "c"], label="texts")
        FeatureCache(tmp_path, chunk=2).encode(Counting(), ["a", "b", "c"], label="again")  # all cached
    label = "encoding 3 inputs not in the cache: texts"
    assert events == [(label, 0, 3), (label, 2, 3), (label, 3, 3)]


def test_features_command_fills_then_reuses_the_cache(tmp_path):
    from ftbench.cli import data as data_cmd

    mini = pytest.importorskip("ftbench.datasets.grocery_store")
    try:
        root = mini.resolve_data_dir("")
    except FileNotFoundError:
        pytest.skip("grocery_store_mini copy not found")
    app = typer.Typer()
    data_cmd.register(app)
    args = [
        "features",
        "--dataset",
        "grocery-store",
        "--data-dir",
        str(root),
        "--backbone",
        "hash",
        "--cache-dir",
        str(tmp_path),
        "--set",
        "max_photos_per_product=1",
    ]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "encoded now" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    line = next(ln for ln in second.output.splitlines() if "encoded now" in ln)
    assert line.split("│")[2].strip() == "0"
    bad = runner.invoke(app, ["features", "--dataset", "wands", "--backbone", "image=hash"])
    assert bad.exit_code != 0 and "no image views" in " ".join(bad.output.replace("│", " ").split())
