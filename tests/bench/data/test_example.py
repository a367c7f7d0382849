"""`ftbench data init DIR`: the example catalog validates, runs, refuses a non-empty folder, and its
items.csv form is the same data set as its items.jsonl form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ftbench.cli.app import app
from ftbench.data.example import write_example_catalog
from ftbench.data.quality import validate_catalog
from ftbench.datasets.catalog import CatalogFolder
from typer.testing import CliRunner

runner = CliRunner()
CHEAP = dict(text_backbone="hash", image_backbone="hash", use_cache=False)


def test_init_writes_a_catalog_that_validates(tmp_path):
    res = runner.invoke(app, ["data", "init", str(tmp_path / "shop")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "validate", str(tmp_path / "shop"), "--json", str(tmp_path / "report.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    s = report["summary"]
    assert s["items"] == {"records": 24, "loaded": 24, "split": {"train": 16, "val": 4, "test": 4}}
    assert s["queries"] == {"train": 16, "val": 4, "test": 4} and s["skipped"] == {}
    assert s["catalog_json"] == "conforms to catalog.schema.json"
    assert {k: v["items"] for k, v in s["views_per_slot"].items()} == {
        "image": 24,
        "title": 24,
        "description": 23,
        "photo_1": 24,
        "photo_2": 23,
    }
    d = report["defects"]
    assert d["duplicate_image_files"]["duplicates"] == 0 and d["duplicate_titles"]["items"] == 0
    assert all(v["items_sharing"] == 0 for v in d["views_shared_across_items"].values())


def test_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    res = runner.invoke(app, ["data", "init", str(tmp_path)])
    assert res.exit_code == 2 and "is not an empty folder" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    res = runner.invoke(app, ["data", "init", str(tmp_path / "new"), "--items-format", "xml"])
    assert res.exit_code == 2 and "jsonl, csv" in res.output and not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    write_example_catalog(empty)
    assert (empty / "items.jsonl").is_file()


def test_the_csv_form_is_the_same_data_set(tmp_path):
    write_example_catalog(tmp_path / "jsonl")
    write_example_catalog(tmp_path / "csv", items_format="csv")
    assert not (tmp_path / "csv" / "items.jsonl").exists()
    a, b = (CatalogFolder().build(CatalogFolder.Config(data_dir=str(tmp_path / f), **CHEAP)) for f in ("jsonl", "csv"))
    assert [s.name for s in a.catalog.slots] == [s.name for s in b.catalog.slots]
    rows = np.arange(a.catalog.num_items)
    np.testing.assert_array_equal(a.catalog.availability(rows), b.catalog.availability(rows))
    for j in range(len(a.catalog.slots)):
        np.testing.assert_array_equal(a.catalog.features(rows, j), b.catalog.features(rows, j))
    np.testing.assert_array_equal(a.item_split, b.item_split)
    assert validate_catalog(tmp_path / "csv")["summary"]["items_file"] == "items.csv"


@pytest.mark.slow
def test_a_run_on_the_example_with_the_default_backbones(tmp_path):
    pytest.importorskip("sentence_transformers", reason="the encoders extra is not installed")
    pytest.importorskip("efficientnet_lite_pytorch", reason="the encoders extra is not installed")
    write_example_catalog(tmp_path / "shop")
    res = runner.invoke(
        app,
        [
            "run",
            "--dataset",
            "catalog",
            "--data-dir",
            str(tmp_path / "shop"),
            "--steps",
            "5",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert payload["counts"]["items"] == 24 and payload["timing"]["steps"] == 5
    assert set(payload["metrics"]) >= {"query->item", "title->image", "image->title", "aux->item"}
