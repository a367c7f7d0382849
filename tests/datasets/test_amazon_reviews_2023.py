"""amazon-reviews-2023 loader on a small JSONL fixture in the published item-metadata schema."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from ftbench.datasets.amazon_reviews_2023 import AmazonReviews2023
from ftbench.features.backbones import create_backbone
from PIL import Image

URL = "https://m.media-amazon.com/images/I/"


def _item(asin, title, features=(), description=(), images=(), **extra):
    record = {
        "main_category": "All Beauty",
        "title": title,
        "average_rating": 4.2,
        "rating_number": 10,
        "features": list(features),
        "description": list(description),
        "price": None,
        "images": [{"thumb": f"{URL}{n}._SS40_.jpg", "large": f"{URL}{n}.jpg", "variant": v, "hi_res": None} for n, v in images],
        "videos": [],
        "store": "Acme",
        "categories": ["Beauty", "Hair"],
        "details": {"Brand": "Acme"},
        "parent_asin": asin,
        "bought_together": None,
    }
    record.update(extra)
    return record


def _write(path, records, raw_lines=()):
    text = "\n".join(json.dumps(r) for r in records) + "\n" + "".join(line + "\n" for line in raw_lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _config(tmp_path, **kw):
    base = dict(data_dir=str(tmp_path), text_backbone="hash", cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return AmazonReviews2023.Config(**base)


ITEMS = [
    _item(
        "B001",
        "Argan oil shampoo",
        ["Sulfate free", "500 ml"],
        ["<b>Gentle</b> shampoo &amp; care"],
        [("a1", "MAIN"), ("a2", "PT01")],
    ),
    _item("B002", "Wooden comb", [], [], [("b1", "PT01"), ("b2", "MAIN")]),
    _item("B003", "", [], [], [], store=None, categories=[]),  # no text, no image -> skipped
    _item("B004", "Hair dryer 2000W", ["Ionic"], ["Fast drying"], []),
]


def test_text_views_and_split(tmp_path):
    _write(tmp_path / "meta_All_Beauty.jsonl", ITEMS)
    ds = AmazonReviews2023().build(_config(tmp_path))
    cat = ds.catalog
    assert [s.name for s in cat.slots] == ["title", "features", "description", "store_and_categories"]
    assert cat.item_ids().tolist() == ["B001", "B002", "B004"]
    assert ds.skipped == {"items_without_views": 1}
    assert ds.queries is None and len(ds.item_split) == 3
    avail = cat.availability(np.arange(3))
    assert avail.tolist() == [[True] * 4, [True, False, False, True], [True] * 4]
    bb = create_backbone("hash", "text")
    np.testing.assert_array_equal(cat.features(np.array([0]), 1)[0], bb.encode(["Sulfate free 500 ml"])[0])
    np.testing.assert_array_equal(cat.features(np.array([0]), 2)[0], bb.encode(["Gentle shampoo & care"])[0])  # HTML stripped
    np.testing.assert_array_equal(cat.features(np.array([0]), 3)[0], bb.encode(["Acme; Beauty > Hair"])[0])


def test_local_images_main_is_primary(tmp_path):
    _write(tmp_path / "meta_All_Beauty.jsonl.gz", ITEMS)
    images = tmp_path / "images"
    images.mkdir()
    for k, name in enumerate(["a1", "a2", "b2"]):  # b1 was never downloaded
        Image.new("RGB", (8, 8), (60 * k, 0, 0)).save(images / f"{name}.jpg")
    ds = AmazonReviews2023().build(_config(tmp_path, image_dir=str(images), image_backbone="hash", max_images=2))
    cat = ds.catalog
    assert [s.name for s in cat.slots] == ["image", "title", "features", "description", "store_and_categories", "image_2"]
    assert [s.role for s in cat.slots] == ["primary", "primary", "auxiliary", "auxiliary", "auxiliary", "auxiliary"]
    avail = cat.availability(np.arange(3))
    assert avail[:, 0].tolist() == [True, True, False] and avail[:, 5].tolist() == [True, False, False]
    bb = create_backbone("hash", "image")
    np.testing.assert_array_equal(cat.features(np.array([1]), 0)[0], bb.encode([images / "b2.jpg"])[0])  # MAIN, not first


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"parent_asin": "B9", "title": "x"', "line 5: malformed JSON"),
        ('{"title": "x"}', "line 5: missing field 'parent_asin'"),
        ('{"parent_asin": "B9"}', "line 5: missing field 'title'"),
        ('{"parent_asin": "B9", "title": "x", "features": "not a list"}', "line 5: field 'features' must be list"),
        ('{"parent_asin": "B001", "title": "again"}', r"line 5: duplicate parent_asin 'B001' \(first on line 1\)"),
        ('["not", "an", "object"]', "line 5: expected a JSON object"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, bad, message):
    _write(tmp_path / "meta_X.jsonl", ITEMS, [bad])
    with pytest.raises(ValueError, match=r"meta_X.jsonl, " + message):
        AmazonReviews2023().build(_config(tmp_path))


def test_file_selection(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta_"):
        AmazonReviews2023().build(_config(tmp_path))
    _write(tmp_path / "meta_A.jsonl", ITEMS)
    _write(tmp_path / "meta_B.jsonl", ITEMS[:1])
    with pytest.raises(ValueError, match="several metadata files"):
        AmazonReviews2023().build(_config(tmp_path))
    ds = AmazonReviews2023().build(_config(tmp_path, metadata_file="meta_B.jsonl"))
    assert ds.catalog.num_items == 1
    assert AmazonReviews2023().build(_config(tmp_path, metadata_file="meta_A.jsonl", max_items=2)).catalog.num_items == 2
