"""Which files each loader's content fingerprint covers (`DatasetPlugin.data_files`): every file it
parses, wherever the folder lies; not the files beside them that it does not read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ftbench.data.fingerprint import fingerprint
from ftbench.datasets import DATASETS
from ftbench.datasets.catalog import CatalogFolder
from PIL import Image

from .test_catalog import CHEAP as CATALOG_CHEAP
from .test_catalog import write_three_items


def _fingerprint(name: str, folder: Path, **options) -> str:
    plugin = DATASETS.get(name)()
    return fingerprint(plugin.data_files(plugin.Config(data_dir=str(folder), use_cache=False, **options)).files).digest


def test_every_parsed_file_is_covered_and_the_path_is_not(tmp_path, data_format):
    original = tmp_path / "a"
    data_format.write(original)
    base = _fingerprint(data_format.name, original)
    moved = tmp_path / "some" / "other" / "place"
    shutil.copytree(original, moved)
    assert _fingerprint(data_format.name, moved) == base
    (moved / "README.md").write_text("notes about this copy\n", encoding="utf-8")  # not data
    assert _fingerprint(data_format.name, moved) == base
    for rel in data_format.files:
        copy = tmp_path / f"changed-{rel}"
        shutil.copytree(original, copy)
        with open(copy / rel, "ab") as handle:
            handle.write(b"\n")
        assert _fingerprint(data_format.name, copy) != base, rel


def test_grocery_store_photos_and_texts_are_covered(tmp_path, formats):
    formats["grocery-store"].write(tmp_path / "g")
    base = _fingerprint("grocery-store", tmp_path / "g")
    photo = next((tmp_path / "g" / "test").rglob("*.jpg"))
    Image.new("RGB", (10, 8), (1, 2, 3)).save(photo)
    assert _fingerprint("grocery-store", tmp_path / "g") != base
    description = next((tmp_path / "g").rglob("*_Description.txt"))
    description.write_text("Another text.\n", encoding="utf-8")
    assert len({base, _fingerprint("grocery-store", tmp_path / "g")}) == 2


def test_amazon_images_are_covered_when_image_dir_is_set(tmp_path, formats):
    formats["amazon-reviews-2023"].write(tmp_path / "m")
    images = tmp_path / "img"
    images.mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(images / "b1.jpg")
    with_images = _fingerprint("amazon-reviews-2023", tmp_path / "m", image_dir=str(images))
    assert with_images != _fingerprint("amazon-reviews-2023", tmp_path / "m")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(images / "b1.jpg")
    assert _fingerprint("amazon-reviews-2023", tmp_path / "m", image_dir=str(images)) != with_images


def test_catalog_covers_its_layout_images_and_named_vectors_but_not_other_files(tmp_path):
    root = tmp_path / "cat"
    write_three_items(root)
    (root / "interactions.tsv").write_text("q1\tmug\n", encoding="utf-8")
    (root / "vectors").mkdir()
    (root / "vectors" / "clip.npy").write_bytes(b"\x93NUMPY fake")
    (root / "vectors" / "clip.ids").write_text("mug\n", encoding="utf-8")
    manifest = json.loads((root / "catalog.json").read_text())
    manifest["views"].append({"vectors": "vectors/clip.npy", "modality": "clip", "role": "auxiliary"})
    (root / "catalog.json").write_text(json.dumps(manifest), encoding="utf-8")
    files = CatalogFolder().data_files(CatalogFolder.Config(data_dir=str(root)))
    assert sorted(files.files) == [
        "catalog.json",
        "images/chair.jpg",
        "images/lamp.jpg",
        "images/mug.jpg",
        "interactions.tsv",
        "items.jsonl",
        "qrels/dev.tsv",
        "qrels/test.tsv",
        "qrels/train.tsv",
        "queries.jsonl",
        "vectors/clip.ids",
        "vectors/clip.npy",
    ]
    assert files.folder == root.resolve() and set(files.location_fields) == {"data_dir", "cache_dir"}
    base = fingerprint(files.files).digest
    # results or notes written into the data folder do not change the data's identity
    (root / "runs").mkdir()
    (root / "runs" / "catalog__clip__v8__s0__0123456789.json").write_text("{}", encoding="utf-8")
    (root / "NOTES.txt").write_text("x", encoding="utf-8")
    assert fingerprint(CatalogFolder().data_files(CatalogFolder.Config(data_dir=str(root))).files).digest == base


def test_catalog_says_which_images_the_fingerprint_does_not_cover(tmp_path, capsys):
    root = tmp_path / "cat"
    write_three_items(root)
    outside = tmp_path / "shared-images"
    outside.mkdir()
    Image.new("RGB", (10, 10), (5, 5, 5)).save(outside / "lamp.jpg")
    items = [json.loads(line) for line in (root / "items.jsonl").read_text().splitlines()]
    items[1]["image"] = "../shared-images/lamp.jpg"
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    dataset = CatalogFolder().build(CatalogFolder.Config(data_dir=str(root), **CATALOG_CHEAP))
    note = [n for n in dataset.notes if "not part of the data fingerprint" in n]
    assert len(note) == 1 and "1 item image(s)" in note[0] and "../shared-images/lamp.jpg" in note[0]
    assert "not part of the data fingerprint" in capsys.readouterr().err
    write_three_items(tmp_path / "inside")
    inside = CatalogFolder().build(CatalogFolder.Config(data_dir=str(tmp_path / "inside"), **CATALOG_CHEAP))
    assert not [n for n in inside.notes if "fingerprint" in n]


@pytest.mark.parametrize(
    "rel, covered",
    [
        ("images/a.jpg", True),
        ("a.PNG", True),
        ("../a.jpg", False),
        ("/abs/a.jpg", False),
        ("images/a", False),
        (".hidden/a.jpg", False),
        ("images/../a.jpg", True),
    ],
)
def test_unfingerprinted_images(rel, covered):
    from ftbench.datasets.catalog import unfingerprinted_images

    assert (unfingerprinted_images([rel]) == []) == covered
