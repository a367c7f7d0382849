"""items.csv (columns = fields, list fields as numbered columns) and the JSON Schema of catalog.json:
the schema refuses what the loader refuses, passes what it reads, is what `ftbench data validate`
checks, and is shown in docs/catalog.md as it is in the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ftbench.data.example import example_catalog
from ftbench.data.quality import ValidationError, validate_catalog
from ftbench.datasets.catalog import MANIFEST_SCHEMA, CatalogFolder, csv_list_fields, manifest_schema_errors, read_items
from PIL import Image

CHEAP = dict(text_backbone="hash", image_backbone="hash", use_cache=False)
DOC = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"


def _images(folder: Path, *names: str) -> None:
    (folder / "images").mkdir(exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", (8, 8), (40 * k, 90, 200 - 40 * k)).save(folder / "images" / name)


def test_csv_columns_are_fields_and_numbered_columns_a_list(tmp_path):
    _images(tmp_path, "a.png", "b.png", "c.png")
    (tmp_path / "items.csv").write_text(
        "id,title,description,photos_1,photos_2,size_2\n"
        'm1,"mug, blue","two lines\nof text",images/a.png,images/b.png,x\n'
        "m2,lamp,,,images/c.png,\n"
        "m3,chair,,images/c.png,,\n"
        ",,,,,\n",
        encoding="utf-8",
    )
    _, records = read_items(tmp_path)
    assert [r for _, r in records] == [
        {
            "id": "m1",
            "title": "mug, blue",
            "description": "two lines\nof text",
            "photos": ["images/a.png", "images/b.png"],
            "size_2": "x",
        },
        {"id": "m2", "title": "lamp", "photos": [None, "images/c.png"]},  # an empty cell: a missing view there
        {"id": "m3", "title": "chair", "photos": ["images/c.png"]},
    ]
    assert [w.rsplit(", ", 1)[1] for w, _ in records] == ["line 2", "line 4", "line 5"]  # a quoted line break
    ds = CatalogFolder().build(CatalogFolder.Config(data_dir=str(tmp_path), **CHEAP))
    names = [s.name for s in ds.catalog.slots]
    assert names == ["photos_1", "photos_2", "title", "description", "size_2"]  # the same slots as a JSON list
    avail = ds.catalog.availability(np.arange(3))
    assert avail[:, names.index("photos_1")].tolist() == [True, False, True]
    assert avail[:, names.index("photos_2")].tolist() == [True, True, False]


def test_which_numbered_columns_make_a_list():
    cols = ["id", "photos_1", "photos_2", "size_2", "tag", "tag_1", "edge_1", "edge_3"]
    assert csv_list_fields(cols, set()) == {"photos": ["photos_1", "photos_2"]}  # size_2: no 1; tag exists; gap
    assert csv_list_fields(["id", "photos_1", "photos_2"], {"photos_1"}) == {}  # catalog.json names photos_1 itself
    assert csv_list_fields(["id", "a_1", "a_2", "a_10"], set()) == {}  # 1, 2, 10: not numbered without gaps


@pytest.mark.parametrize(
    "text, message",
    [
        ("title,description\nx,y\n", r"items.csv, line 1: the header has no 'id' column"),
        ("id,title,title\na,x,y\n", r"items.csv, line 1: column 'title' appears twice"),
        ("id,,title\na,x,y\n", r"items.csv, line 1: column 2 of the header has no name"),
        ("id,title\na,x\nb,y,z\n", r"items.csv, line 3: 3 cells, but the header names 2 columns"),
        ('id,title\na,"never closed\n', r"items.csv, line \d+: not valid CSV"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, message):
    (tmp_path / "items.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        CatalogFolder().build(CatalogFolder.Config(data_dir=str(tmp_path), **CHEAP))


def test_two_item_files_are_refused(tmp_path):
    (tmp_path / "items.csv").write_text("id,title\na,x\n")
    (tmp_path / "items.jsonl").write_text('{"id": "a", "title": "x"}\n')
    with pytest.raises(ValueError, match="holds items.jsonl and items.csv; keep one"):
        read_items(tmp_path)


GOOD = [
    example_catalog()[4],
    {
        "views": [
            {"field": "image", "modality": "image", "role": "primary"},
            {"field": "photos", "modality": "image", "role": "auxiliary", "slot": "photo"},
            {"vectors": "vectors/clip.npy", "slot": "clip", "modality": "clip", "role": "auxiliary"},
        ],
        "query_task": "query->item",
        "cross_view_items": "all",
        "queries": {"vectors": "vectors/q.npy", "modality": "clip"},
        "name": "x",
        "source": {"dataset": "synthetic", "options": {}},
    },
    {},
]
BAD = [
    ({"views": [{"field": "title", "modality": "text", "role": "main"}]}, r"views\[0\]\.role: 'main' is not one of"),
    (
        {"views": [{"field": "t", "vectors": "v.npy", "modality": "text", "role": "primary"}]},
        r"views\[0\]: give exactly one of 'field' .* or 'vectors'",
    ),
    ({"views": [{"modality": "text", "role": "primary"}]}, r"views\[0\]: give exactly one of 'field'"),
    (
        {"views": [{"field": "title", "modality": "clip", "role": "primary"}]},
        r"views\[0\]\.modality: 'clip' is not one of \['image', 'text'\]",
    ),
    ({"views": [{"field": "id", "modality": "text", "role": "primary"}]}, r"views\[0\]\.field: field 'id' is reserved"),
    ({"views": [{"field": "title", "modality": "text", "role": "primary", "weight": 2}]}, r"views\[0\]: Additional properties"),
    ({"views": []}, r"views: \[\] should be non-empty"),
    ({"cross_view_items": "some"}, r"cross_view_items: 'some' is not one of \['test', 'all'\]"),
    ({"colour": "blue"}, r"top level: Additional properties are not allowed \('colour' was unexpected\)"),
    ({"queries": {"vectors": "q.npy", "modality": "clip", "k": 1}}, r"queries: Additional properties"),
]


@pytest.mark.parametrize("manifest", GOOD)
def test_manifests_the_loader_reads_conform(tmp_path, manifest):
    (tmp_path / "catalog.json").write_text(json.dumps(manifest))
    assert manifest_schema_errors(tmp_path / "catalog.json") == []


@pytest.mark.parametrize("manifest, message", BAD)
def test_the_schema_refuses_what_the_loader_refuses(tmp_path, manifest, message):
    (tmp_path / "items.jsonl").write_text('{"id": "a", "title": "x"}\n')
    (tmp_path / "catalog.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="catalog.json"):
        CatalogFolder().build(CatalogFolder.Config(data_dir=str(tmp_path), **CHEAP))
    errors = manifest_schema_errors(tmp_path / "catalog.json")
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'catalog.json'}: "), errors
    with pytest.raises(ValidationError, match=message):
        validate_catalog(tmp_path)


def test_docs_show_the_schema_as_it_is():
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == json.loads(MANIFEST_SCHEMA.read_text(encoding="utf-8"))
    for command in ("ftbench data init", "ftbench data validate", "ftbench data convert", "items.csv"):
        assert command in text
