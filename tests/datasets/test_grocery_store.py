"""grocery-store loader: the mini copy (cheap `hash` features), the protocol fields, the texts it
parses, the cache reuse, and the quirks of the full data set's layout on a synthetic copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from ftbench.datasets import DATASETS
from ftbench.datasets.grocery_store import GroceryStore, parse_information, resolve_data_dir
from PIL import Image

MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grocery_store_mini"
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")


def _config(root, tmp_path, **kw):
    base = dict(data_dir=str(root), image_backbone="hash", text_backbone="hash", cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return GroceryStore.Config(**base)


@needs_mini
def test_mini_copy_protocol_and_views(tmp_path):
    assert DATASETS.get("grocery-store") is GroceryStore
    ds = GroceryStore().build(_config(MINI, tmp_path, max_photos_per_product=3))
    cat = ds.catalog
    names = [s.name for s in cat.slots]
    assert names == ["image", "title", "description", "country_and_volume", "photo_1", "photo_2", "photo_3"]
    assert [s.role for s in cat.slots[:2]] == ["primary", "primary"]
    assert cat.feature_dims == {"image": 192, "text": 128}
    assert cat.num_items == 12 and cat.availability(np.arange(12)).all()
    # protocol: all items trained on and evaluated cross-view; photo queries in val/test
    assert (ds.item_split == 0).all() and ds.cross_view_items.tolist() == list(range(12))
    assert ds.query_task == "photo->product" and ds.queries.modality == "image"
    q = ds.queries
    expected = 0
    for split in ("val", "test"):  # at most 3 photos per product per split file
        classes = [ln.split(",")[1].strip() for ln in (MINI / f"{split}.txt").read_text().splitlines() if ln.strip()]
        expected += sum(min(3, classes.count(c)) for c in set(classes))
    assert q.num_queries == expected and set(q.split.tolist()) == {1, 2} and len(q.interactions) == 0
    ids = list(cat.item_ids())
    for k in range(q.num_queries):
        product = Path(q.ids[k]).parent.name  # .../<Class-Name>/<Class-Name>_001.jpg
        assert q.relevant(k).tolist() == [ids.index(product)]
    assert any("split is over photos" in n for n in ds.notes)
    assert ds.config["data_dir_resolved"] == str(MINI.resolve())
    # features are exactly the backbone's features of the files
    from ftbench.features.backbones import create_backbone

    bb = create_backbone("hash", "image")
    banana = ids.index("Banana")
    icon = MINI / "iconic-images-and-descriptions" / "Fruit" / "Banana" / "Banana_Iconic.jpg"
    np.testing.assert_array_equal(cat.features(np.array([banana]), 0)[0], bb.encode([icon])[0])
    np.testing.assert_array_equal(q.features[0], bb.encode([MINI / q.ids[0]])[0])


@needs_mini
def test_second_build_reads_everything_from_the_cache(tmp_path):
    first = GroceryStore().build(_config(MINI, tmp_path, max_photos_per_product=2))
    assert first.config["features_encoded"] > 0
    second = GroceryStore().build(_config(MINI, tmp_path, max_photos_per_product=2))
    assert second.config["features_encoded"] == 0
    np.testing.assert_array_equal(second.queries.features, first.queries.features)


@needs_mini
def test_train_photo_queries_option(tmp_path):
    ds = GroceryStore().build(_config(MINI, tmp_path, max_photos_per_product=2, train_photo_queries=True))
    q = ds.queries
    train = q.indices("train")
    assert len(train) == 24 and len(q.interactions) == 24
    assert (q.interactions[:, 0] == train).all()


def test_information_parsing_handles_bom_and_continuations(tmp_path):
    p = tmp_path / "X_Information.txt"
    p.write_text(
        "\ufeffTitle: Apple  Granny Smith \nCountry and volume: Italy , ca 180g\nNutrition:\n   fett 0 gram\nURL: u\n",
        encoding="utf-8",
    )
    info = parse_information(p)
    assert info == {"Title": "Apple Granny Smith", "Country and volume": "Italy, ca 180g", "Nutrition": "", "URL": "u"}


def _synthetic_layout(root: Path) -> None:
    """Three products reproducing quirks of the published full set: a description path with a
    typo (Anjou_Descriptions.txt), one without .txt, a product without Information file, a
    package with Manufacturer/Manufacturing-country lines, a photo of an unknown class."""
    icons = root / "iconic-images-and-descriptions"
    rows = []
    specs = [
        (
            "Anjou",
            20,
            "Pear",
            "Fruit/Pear/Anjou",
            "/Anjou_Descriptions.txt",
            "Title: Pear Anjou\nCountry and volume: Belgium, ca 200g\n",
        ),
        (
            "Bravo-Orange-Juice",
            29,
            "Juice",
            "Packages/Juice/Bravo-Orange-Juice",
            "/Bravo-Orange-Juice_Description",
            "Title: Apelsinjuice\nManufacturer and volume: BRAVO , 1l\nManufacturing country: Sverige\nIngredients: x\n",
        ),
        ("Zucchini", 80, "Zucchini", "Vegetables/Zucchini", "/Zucchini_Description.txt", None),
    ]
    for k, (name, cid, coarse, rel, desc_suffix, info) in enumerate(specs):
        folder = icons / rel
        folder.mkdir(parents=True)
        Image.new("RGB", (16, 16), (40 * k, 90, 200 - 50 * k)).save(folder / f"{name}_Iconic.jpg")
        (folder / f"{name}_Description.txt").write_text(f"About {name}.\n")
        (folder / f"{name}_Description_Swedish.txt").write_text("Om.\n")
        if info:
            (folder / f"{name}_Information.txt").write_text(info)
        rows.append(
            f"{name},{cid},{coarse},{k},/iconic-images-and-descriptions/{rel}/{name}_Iconic.jpg,"
            f"/iconic-images-and-descriptions/{rel}{desc_suffix}"
        )
    (root / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
        "Iconic Image Path (str),Product Description Path (str)\n" + "\n".join(rows) + "\n"
    )
    for split in ("train", "val", "test"):
        lines = []
        for k, (name, cid, _coarse, rel, _, _) in enumerate(specs):
            folder = root / split / rel
            folder.mkdir(parents=True)
            for j in range(2 if split == "train" else 1):
                Image.new("RGB", (12, 10), (30 * j, 40 * k, 50)).save(folder / f"{name}_{j:03d}.jpg")
                lines.append(f"{split}/{rel}/{name}_{j:03d}.jpg, {cid}, {k}")
        lines.append(f"{split}/Fruit/Kiwi/Kiwi_001.jpg, 7, 3")  # class not in classes.csv
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def test_full_layout_quirks_on_a_synthetic_copy(tmp_path):
    root = tmp_path / "dataset"
    _synthetic_layout(root)
    ds = GroceryStore().build(_config(root, tmp_path))
    assert ds.skipped == {"photos_unknown_product": 3}
    assert ds.catalog.num_items == 3 and [s.name for s in ds.catalog.slots][-2:] == ["photo_1", "photo_2"]
    assert ds.queries.num_queries == 6
    from ftbench.datasets.grocery_store import read_products

    products = {p.name: p for p in read_products(root, {})}
    assert products["Anjou"].description == "About Anjou."  # typo'd path -> folder's description
    assert products["Bravo-Orange-Juice"].description == "About Bravo-Orange-Juice."  # missing .txt
    assert products["Bravo-Orange-Juice"].country_and_volume == "Sverige; BRAVO, 1l"
    assert products["Bravo-Orange-Juice"].title == "Apelsinjuice"
    assert products["Zucchini"].title == "Zucchini" and products["Zucchini"].country_and_volume is None
    avail = ds.catalog.availability(np.arange(3))
    assert avail[2].tolist() == [True, True, True, False, True, True]  # no country/volume view


def test_bad_input_names_file_and_line(tmp_path):
    root = tmp_path / "dataset"
    _synthetic_layout(root)
    (root / "val" / "Fruit" / "Pear" / "Anjou" / "Anjou_000.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"val.txt, line 1: photo .*Anjou_000.jpg does not exist"):
        GroceryStore().build(_config(root, tmp_path))
    text = (root / "classes.csv").read_text().splitlines()
    (root / "classes.csv").write_text("\n".join(text + [text[1]]) + "\n")
    with pytest.raises(ValueError, match=r"classes.csv, line 5: duplicate Class ID 20 \(first on line 2\)"):
        GroceryStore().build(_config(root, tmp_path))
    (root / "classes.csv").write_text("\n".join(text[:2] + ["Kiwi,seven,Kiwi,3,/a.jpg,/a.txt"]) + "\n")
    with pytest.raises(ValueError, match=r"classes.csv, line 3: field 'Class ID' must be an integer"):
        GroceryStore().build(_config(root, tmp_path))


def test_data_dir_resolution(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="has no classes.csv"):
        resolve_data_dir(str(tmp_path))
    root = tmp_path / "copy"
    _synthetic_layout(root)
    monkeypatch.setenv("FTBENCH_GROCERY_DIR", str(root))
    assert resolve_data_dir("") == root.resolve()
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("copy") == root.resolve()


@needs_mini
def test_mini_copy_can_be_moved_and_keeps_its_cache(tmp_path):
    """The cache key is the content, not the path: a moved copy encodes nothing."""
    GroceryStore().build(_config(MINI, tmp_path, max_photos_per_product=1))
    moved = tmp_path / "moved"
    shutil.copytree(MINI, moved)
    again = GroceryStore().build(_config(moved, tmp_path, max_photos_per_product=1))
    assert again.config["features_encoded"] == 0
