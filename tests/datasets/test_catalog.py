"""The `catalog` plugin (your own catalog in the documented folder layout) and `ftbench data convert`.

The key check: the grocery mini converted to the layout and read back by `catalog` is the same data
set as the direct loader gives (items, views, features, queries, relevance, splits), and a run on
it gives the same metrics for the same seed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from ftbench.data.convert import convert_dataset
from ftbench.datasets.catalog import CatalogFolder
from ftbench.datasets.grocery_store import GroceryStore
from ftbench.run.experiment import RunSpec, execute, prepare
from PIL import Image

MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grocery_store_mini"
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")
CHEAP = dict(text_backbone="hash", image_backbone="hash", use_cache=False)


def write_three_items(folder: Path, with_manifest: bool = True) -> None:
    """A 3-item example: two text views and an image per item, 3 queries."""
    (folder / "images").mkdir(parents=True)
    for k, name in enumerate(("mug", "lamp", "chair")):
        Image.new("RGB", (10, 10), (80 * k, 120, 200 - 80 * k)).save(folder / "images" / f"{name}.jpg")
    items = [
        {
            "id": "mug",
            "title": "stoneware coffee mug",
            "description": "a 350 ml mug, dishwasher safe",
            "image": "images/mug.jpg",
            "split": "train",
        },
        {
            "id": "lamp",
            "title": "brass desk lamp",
            "description": "adjustable arm, warm light",
            "image": "images/lamp.jpg",
            "split": "dev",
        },
        {"id": "chair", "title": "oak dining chair", "description": None, "image": "images/chair.jpg", "split": "test"},
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    queries = [{"id": "q1", "text": "coffee mug"}, {"id": "q2", "text": "desk lamp"}, {"id": "q3", "text": "wooden chair"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tmug\t2\nq1\tlamp\t0\n", encoding="utf-8")
    (folder / "qrels" / "dev.tsv").write_text("q2 0 lamp 1\n", encoding="utf-8")  # the TREC shape
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tchair\t2\nq3\tmug\t1\n", encoding="utf-8")
    if with_manifest:
        (folder / "catalog.json").write_text(
            json.dumps(
                {
                    "views": [
                        {"field": "image", "modality": "image", "role": "primary"},
                        {"field": "title", "modality": "text", "role": "primary"},
                        {"field": "description", "modality": "text", "role": "auxiliary"},
                    ]
                }
            ),
            encoding="utf-8",
        )


def _load(folder: Path, **kw):
    return CatalogFolder().build(CatalogFolder.Config(data_dir=str(folder), **CHEAP, **kw))


def test_three_item_example_reads_views_splits_and_graded_qrels(tmp_path):
    write_three_items(tmp_path)
    ds = _load(tmp_path)
    assert [s.name for s in ds.catalog.slots] == ["image", "title", "description"]
    assert [s.role for s in ds.catalog.slots] == ["primary", "primary", "auxiliary"]
    assert ds.item_split.tolist() == [0, 1, 2]
    assert ds.catalog.availability(np.arange(3))[:, 2].tolist() == [True, True, False]  # null = missing view
    q = ds.queries
    assert q.ids.tolist() == ["q1", "q2", "q3"] and q.split.tolist() == [0, 1, 2] and q.modality == "text"
    assert q.relevant(0).tolist() == [0]  # grade 0 (lamp) is judged, not relevant
    rel3 = dict(zip(q.relevant(2).tolist(), q.relevant_grades[q.relevant_indptr[2] : q.relevant_indptr[3]].tolist()))
    assert rel3 == {2: 2.0, 0: 1.0}
    assert q.interactions.tolist() == [[0, 0]]  # train qrels with grade > 0


def test_views_are_inferred_without_catalog_json(tmp_path, capsys):
    write_three_items(tmp_path, with_manifest=False)
    ds = _load(tmp_path)
    assert [(s.name, s.modality, s.role) for s in ds.catalog.slots] == [
        ("image", "image", "primary"),
        ("title", "text", "primary"),
        ("description", "text", "auxiliary"),
    ]
    assert "inferred" in capsys.readouterr().err


def test_list_fields_become_numbered_slots_and_vectors_are_read(tmp_path):
    write_three_items(tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "items.jsonl").read_text().splitlines()]
    lines[0]["photos"] = ["images/lamp.jpg", "images/chair.jpg"]
    lines[1]["photos"] = ["images/mug.jpg"]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "vectors").mkdir()
    np.save(tmp_path / "vectors" / "clip.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    (tmp_path / "vectors" / "clip.ids").write_text("chair\nmug\n")
    manifest = json.loads((tmp_path / "catalog.json").read_text())
    manifest["views"] += [
        {"field": "photos", "modality": "image", "role": "auxiliary", "slot": "photo"},
        {"vectors": "vectors/clip.npy", "modality": "clip", "role": "auxiliary"},
    ]
    (tmp_path / "catalog.json").write_text(json.dumps(manifest))
    ds = _load(tmp_path)
    assert [s.name for s in ds.catalog.slots][3:] == ["photo_1", "photo_2", "clip"]
    avail = ds.catalog.availability(np.arange(3))
    assert avail[:, 3].tolist() == [True, True, False] and avail[:, 4].tolist() == [True, False, False]
    assert avail[:, 5].tolist() == [True, False, True]
    np.testing.assert_array_equal(ds.catalog.features(np.array([2, 0]), 5), [[0, 1, 2], [3, 4, 5]])


def test_image_query_vectors_with_id_only_query_lines(tmp_path):
    """Queries given as vectors of the image modality, queries.jsonl naming only their ids (the
    order and the subset): no image path to read, the vectors are the queries."""
    write_three_items(tmp_path)
    dim = _load(tmp_path).catalog.feature_dims["image"]  # the image tower's input: query vectors must match it
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps({"id": q}) + "\n" for q in ("q3", "q1", "q2")))
    (tmp_path / "vectors").mkdir()
    vectors = np.arange(3 * dim, dtype=np.float32).reshape(3, dim)
    np.save(tmp_path / "vectors" / "queries.npy", vectors)
    (tmp_path / "vectors" / "queries.ids").write_text("q1\nq2\nq3\n")
    manifest = json.loads((tmp_path / "catalog.json").read_text())
    manifest["queries"] = {"vectors": "vectors/queries.npy", "modality": "image"}
    (tmp_path / "catalog.json").write_text(json.dumps(manifest))
    q = _load(tmp_path).queries
    assert q.ids.tolist() == ["q3", "q1", "q2"] and q.modality == "image"
    np.testing.assert_array_equal(q.features, vectors[[2, 0, 1]])


@pytest.mark.parametrize(
    "break_it, message",
    [
        (
            lambda d: (d / "items.jsonl").write_text('{"id": "a", "title": "x"}\n{"title": "y"}\n'),
            r"items.jsonl, line 2: missing field 'id'",
        ),
        (
            lambda d: (d / "items.jsonl").write_text('{"id": "a", "title": "x"}\n{"id": "a", "title": "y"}\n'),
            r"line 2: duplicate id 'a'",
        ),
        (lambda d: (d / "items.jsonl").write_text('{"id": "a", "title": "x"}\n{oops\n'), r"items.jsonl, line 2: not valid JSON"),
        (
            lambda d: (d / "items.jsonl").write_text('{"id": "a", "title": 3, "image": "images/mug.jpg"}\n'),
            r"line 1: field 'title' must be a string",
        ),
        (
            lambda d: (d / "items.jsonl").write_text('{"id": "a", "title": "x", "image": "images/nope.jpg", "split": "train"}\n'),
            r"line 1: field 'image': image 'images/nope.jpg' does not exist",
        ),
        (
            lambda d: (d / "items.jsonl").write_text('{"id": "a", "title": "x", "split": "holdout"}\n'),
            r"line 1: field 'split' must be one of",
        ),
        (
            lambda d: (d / "qrels" / "test.tsv").write_text("q3\tchair\n"),
            r"test.tsv, line 1: expected 'query-id<TAB>corpus-id<TAB>score'",
        ),
        (
            lambda d: (d / "qrels" / "test.tsv").write_text("q3\tchair\tgood\n"),
            r"test.tsv, line 1: field 'score' must be a number",
        ),
        (lambda d: (d / "qrels" / "test.tsv").write_text("q1\tchair\t1\n"), r"test.tsv, line 1: query 'q1' is also in train.tsv"),
        (
            lambda d: (d / "queries.jsonl").write_text('{"id": "q1"}\n'),
            r"queries.jsonl, line 1: a query needs exactly one of 'text' or 'image'",
        ),
        (
            lambda d: (d / "catalog.json").write_text('{"views": [{"field": "title", "modality": "text", "role": "main"}]}'),
            r"catalog.json: views\[0\]: field 'role' must be",
        ),
        (
            lambda d: (d / "catalog.json").write_text('{"cross_view_items": "some"}'),
            r"catalog.json: field 'cross_view_items' must be one of",
        ),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, break_it, message):
    write_three_items(tmp_path)
    break_it(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _load(tmp_path)


@pytest.mark.parametrize(
    "break_it, message",
    [
        # was "backbone 'minilm' encodes text, not None"
        (lambda d: (d / "queries.jsonl").write_text(""), r"queries.jsonl: no queries in the file \(it is empty\)"),
        (lambda d: (d / "queries.jsonl").write_text("\n\n"), r"queries.jsonl: no queries in the file"),
        # was a run that exited 0 without its main task
        (
            lambda d: (d / "qrels" / "test.tsv").write_text(""),
            r"test.tsv: no judgments in the file \(it is empty or only a header\)",
        ),
        (lambda d: (d / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n"), r"dev.tsv: no judgments in the file"),
        (
            lambda d: (d / "qrels" / "test.tsv").write_text("q9\tchair\t2\nq3\tsofa\t1\nq3\tmug\t0\n"),
            r"test.tsv: no line gives a known query a relevant item \(3 lines: 1 name a query not in queries.jsonl, "
            r"1 an item not in the catalog, 1 have score 0\)",
        ),
    ],
)
def test_a_file_that_would_silently_drop_a_split_is_named(tmp_path, break_it, message):
    write_three_items(tmp_path)
    break_it(tmp_path)
    with pytest.raises(ValueError, match=message):
        _load(tmp_path)


@pytest.mark.parametrize("url", ["https://cdn.example.com/mug.jpg", "http://x/mug.JPG?w=200", "s3://bucket/mug.png"])
@pytest.mark.parametrize("manifest", [True, False], ids=["declared", "inferred"])
def test_an_image_url_is_refused_saying_what_to_do(tmp_path, url, manifest):
    write_three_items(tmp_path, with_manifest=manifest)
    lines = (tmp_path / "items.jsonl").read_text().replace('"images/lamp.jpg"', json.dumps(url))
    (tmp_path / "items.jsonl").write_text(lines)
    expected = (
        rf"items.jsonl, line 2: field 'image': image '{re.escape(url)}' is a URL; images are read from local "
        rf"files only \(nothing is downloaded\): download the images into {re.escape(str(tmp_path))} "
        r"\(e.g. under images/\) and give their paths relative to it"
    )
    with pytest.raises(ValueError, match=expected):
        _load(tmp_path)


def test_an_image_query_url_is_refused(tmp_path):
    write_three_items(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"id": "q1", "image": "https://x/q1.jpg"}\n')
    with pytest.raises(ValueError, match=r"queries.jsonl, line 1: field 'image': image 'https://x/q1.jpg' is a URL"):
        _load(tmp_path)


def test_unknown_ids_in_qrels_are_counted_skips(tmp_path):
    write_three_items(tmp_path)
    with open(tmp_path / "qrels" / "test.tsv", "a") as f:
        f.write("q3\tsofa\t1\nq9\tmug\t1\n")
    ds = _load(tmp_path)
    assert ds.skipped == {"qrels_unknown_item": 1, "qrels_unknown_query": 1}


@needs_mini
def test_converted_grocery_mini_is_the_same_data_set_and_gives_the_same_metrics(tmp_path):
    out = tmp_path / "layout"
    summary = convert_dataset("grocery-store", {"data_dir": str(MINI), "max_photos_per_product": 3}, out)
    assert summary["items"] == 12 and (out / "catalog.json").is_file()
    direct = GroceryStore().build(GroceryStore.Config(data_dir=str(MINI), max_photos_per_product=3, **CHEAP))
    via = _load(out)
    assert via.query_task == direct.query_task == "photo->product"
    assert [s for s in via.catalog.slots] == [s for s in direct.catalog.slots]
    assert via.catalog.item_ids().tolist() == direct.catalog.item_ids().tolist()
    every = np.arange(direct.catalog.num_items)
    np.testing.assert_array_equal(via.catalog.availability(every), direct.catalog.availability(every))
    for j in range(len(direct.catalog.slots)):
        np.testing.assert_array_equal(via.catalog.features(every, j), direct.catalog.features(every, j))
    np.testing.assert_array_equal(via.item_split, direct.item_split)
    np.testing.assert_array_equal(via.evaluation_items(), direct.evaluation_items())
    for name in ("ids", "features", "relevant_indptr", "relevant_items", "relevant_grades", "split", "interactions"):
        np.testing.assert_array_equal(getattr(via.queries, name), getattr(direct.queries, name), err_msg=name)

    def run(dataset, data_dir, *extra):
        sets = [
            f"dataset.data_dir={data_dir}",
            *extra,
            "dataset.text_backbone=hash",
            "dataset.image_backbone=hash",
            "dataset.use_cache=False",
            "train.eval_every=5",
        ]
        prepared = prepare(RunSpec("factorized", dataset, views=4, seed=3, device="cpu", sets=sets, steps=10, batch_size=8))
        return execute(prepared, None)[0]

    a = run("grocery-store", str(MINI), "dataset.max_photos_per_product=3")
    b = run("catalog", str(out))
    assert a.metrics == b.metrics
    assert a.metrics["photo->product"]["recall@1"] >= 0.0 and "aux->item" in a.metrics


def test_data_convert_synthetic_writes_vectors_and_reads_back(tmp_path):
    out = tmp_path / "syn"
    convert_dataset("synthetic", {"items": 60, "interactions": 80}, out)
    from ftbench.datasets.synthetic import SyntheticMarketplace

    direct = SyntheticMarketplace().build(SyntheticMarketplace.Config(items=60, interactions=80))
    via = _load(out)
    every = np.arange(60)
    np.testing.assert_array_equal(via.catalog.availability(every), direct.catalog.availability(every))
    avail = direct.catalog.availability(every)
    for j in range(len(direct.catalog.slots)):  # absent views are masked: only available rows count
        have = every[avail[:, j]]
        np.testing.assert_array_equal(via.catalog.features(have, j), direct.catalog.features(have, j))
    np.testing.assert_array_equal(via.queries.features, direct.queries.features)
    np.testing.assert_array_equal(via.queries.relevant_items, direct.queries.relevant_items)
    np.testing.assert_array_equal(via.queries.interactions, direct.queries.interactions)
    np.testing.assert_array_equal(via.item_split, direct.item_split)


@pytest.mark.parametrize("name", ["wands", "esci", "amazon-reviews-2023"])
def test_data_convert_text_catalogs_round_trip(tmp_path, formats, name):
    src = tmp_path / "src"
    fmt = formats[name]
    fmt.write(src)
    direct = fmt.build(src)
    extra = {"query_val_fraction": 0.0} if name == "esci" else {}
    out = tmp_path / "out"
    convert_dataset(name, {"data_dir": str(src), **extra}, out)
    via = _load(out)
    every = np.arange(direct.catalog.num_items)
    assert via.catalog.item_ids().tolist() == [str(i) for i in direct.catalog.item_ids()]
    for j in range(len(direct.catalog.slots)):
        np.testing.assert_array_equal(via.catalog.features(every, j), direct.catalog.features(every, j))
    np.testing.assert_array_equal(via.item_split, direct.item_split)
    if direct.queries is not None:
        for field in ("features", "relevant_indptr", "relevant_items", "relevant_grades", "split", "interactions"):
            np.testing.assert_array_equal(getattr(via.queries, field), getattr(direct.queries, field), err_msg=field)


def test_convert_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        convert_dataset("synthetic", {"items": 50}, tmp_path)


def _write_query_split_catalog(folder: Path, given_split: bool, interactions: str | None = None) -> None:
    """12 text items; train query qa names items 0-5, dev query qb items 6-7, test query qc items 8-11
    and 0; with `given_split` items 4-5 are val/test items of the given split."""
    (folder / "qrels").mkdir(parents=True)
    splits = ["train"] * 4 + ["dev", "test"] + ["dev"] * 2 + ["test"] * 4
    items = [{"id": f"i{k}", "title": f"item {k}", **({"split": splits[k]} if given_split else {})} for k in range(12)]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"id": q, "text": f"query {q}"}) + "\n" for q in ("qa", "qb", "qc")))
    (folder / "qrels" / "train.tsv").write_text("".join(f"qa\ti{k}\t1\n" for k in range(6)))
    (folder / "qrels" / "dev.tsv").write_text("qb\ti6\t1\nqb\ti7\t1\n")
    (folder / "qrels" / "test.tsv").write_text("".join(f"qc\ti{k}\t1\n" for k in (8, 9, 10, 11, 0)))
    if interactions is not None:
        (folder / "interactions.tsv").write_text(interactions)


def test_random_item_split_makes_train_queries_items_train_items(tmp_path, capsys):
    from ftbench.train.loop import BatchSampler

    _write_query_split_catalog(tmp_path, given_split=False)
    drawn = CatalogFolder.Config(data_dir=str(tmp_path), **CHEAP).item_split(12)  # the seeded random split
    ds = _load(tmp_path)
    named = np.arange(6)
    assert (ds.item_split[named] == 0).all()
    np.testing.assert_array_equal(ds.item_split[6:], drawn[6:])  # items no train query names keep their draw
    moved = {"val": int((drawn[named] == 1).sum()), "test": int((drawn[named] == 2).sum())}
    assert sum(moved.values()) > 0  # the draw put some of them in val or test (else this test proves nothing)
    assert ds.config["items_moved_to_train"] == moved and ds.config["training_pairs_naming_held_out_items"] == 0
    message = f"{sum(moved.values())} items named by train queries' pairs are train items"
    assert message in capsys.readouterr().err and any(message in n for n in ds.notes)
    sampler = BatchSampler(ds, 4, seed=0)
    assert sampler.dropped_pairs == 0 and len(sampler.pairs) == 6  # every training pair is used


def test_a_given_item_split_is_kept_and_its_held_out_items_pairs_are_counted(tmp_path, capsys):
    from ftbench.train.loop import BatchSampler

    _write_query_split_catalog(tmp_path, given_split=True, interactions="qa\ti0\nqa\ti1\nqa\ti4\nqa\ti5\nqb\ti6\nqc\ti8\n")
    ds = _load(tmp_path)
    assert ds.item_split.tolist() == [0, 0, 0, 0, 1, 2, 1, 1, 2, 2, 2, 2]
    assert ds.config["items_moved_to_train"] == {"val": 0, "test": 0}
    assert ds.config["training_pairs_naming_held_out_items"] == 2
    assert "2 of 4 training pairs of train queries name one of 2 val/test items" in capsys.readouterr().err
    sampler = BatchSampler(ds, 4, seed=0)
    # qa->i4, qa->i5: held-out items; qb->i6 and qc->i8: interactions of dev and test queries
    assert sampler.dropped_by_reason == {"query_not_train": 2, "item_not_train": 2}
    assert sampler.dropped_pairs == 4 and sampler.pairs.tolist() == [[0, 0], [0, 1]]
