"""Bad input past the file parsers - in-memory catalogs and queries, feature caches, precomputed
features, result files, archives, and the command line - gets a clear error naming the file,
item, field or option and what was expected, or a documented, counted skip; never a silent
drop and never a bare traceback.

Why: the loaders' own checks (tests/datasets/test_bad_data_files.py) stop bad records at the
file; these checks are the second line: whatever a plugin builds is validated when the catalog,
query set and data set are assembled, cached features are verified on every read, result files
on every load, and the commands turn each of these errors into one line and exit code 2. The
docs/guarantees.md lists these cases.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.dataset import MultiViewDataset
from ftbench.data.fetch import DamagedArchiveError, safe_extract
from ftbench.data.queries import QuerySet
from ftbench.features.backbones import content_hash, create_backbone
from ftbench.features.cache import FeatureCache
from ftbench.run.results import RunResult, load_result, write_result
from typer.testing import CliRunner

SLOTS = [ViewSlot("image", "image", "primary"), ViewSlot("title", "text", "primary")]


def _catalog(features=None, available=None, ids=("a", "b", "c"), slots=SLOTS):
    n = len(ids)
    features = features if features is not None else [np.ones((n, 4), np.float32), np.ones((n, 3), np.float32)]
    available = available if available is not None else np.ones((n, len(slots)), bool)
    return ArrayCatalog(slots, features, available, list(ids), source="test catalog")


def _nan_at(row):
    f = np.ones((3, 4), np.float32)
    f[row, 1] = np.inf
    return [f, np.ones((3, 3), np.float32)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ids=()), r"test catalog: the catalog is empty \(no items\)"),
        (dict(features=_nan_at(2)), r"view 'image' contain NaN or infinite values \(1 item\(s\), first: item 'c' at row 2\)"),
        (
            dict(
                features=[np.ones((3, 4), np.float32), np.ones((3, 3), np.float32)],
                slots=SLOTS + [ViewSlot("image_2", "image", "auxiliary")],
                available=np.ones((3, 3), bool),
            ),
            r"3 feature arrays for 3 slots|2 feature arrays for 3 slots",
        ),
        (
            dict(
                features=[np.ones((3, 4), np.float32), np.ones((3, 3), np.float32), np.ones((3, 5), np.float32)],
                slots=SLOTS + [ViewSlot("image_2", "image", "auxiliary")],
                available=np.ones((3, 3), bool),
            ),
            r"view 'image_2' has dimension 5, but modality 'image' has dimension 4 elsewhere",
        ),
        (
            dict(features=[np.ones((2, 4), np.float32), np.ones((3, 3), np.float32)]),
            r"features of view 'image' have shape \(2, 4\), expected \(3, D\)",
        ),
        (dict(ids=("a", "b", "a")), r"duplicate item ids, e.g. \['a'\]"),
        (dict(available=np.array([[1, 1], [0, 0], [1, 0]], bool)), r"1 item\(s\) have no view at all, first: item 'b' at row 1"),
        (dict(available=np.ones((3, 3), bool)), r"availability has shape \(3, 3\), expected \(3, 2\)"),
    ],
)
def test_catalog_refuses_what_would_corrupt_training(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _catalog(**kwargs)


def _queries(**changes):
    base = dict(
        ids=np.array(["q0", "q1"]),
        modality="text",
        features=np.ones((2, 3), np.float32),
        relevant_indptr=np.array([0, 1, 2]),
        relevant_items=np.array([0, 2]),
        relevant_grades=np.ones(2, np.float32),
        split=np.array([0, 2], np.int8),
        interactions=np.array([[0, 0]]),
    )
    base.update(changes)
    return QuerySet(**base)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: _queries(features=np.full((2, 3), np.nan, np.float32)), "query features contain NaN or infinite"),
        (
            lambda: MultiViewDataset("t", _catalog(), np.zeros(3), queries=_queries(relevant_items=np.array([0, 7]))),
            r"query 'q1' has a relevant item outside the catalog \(index 7, catalog size 3\)",
        ),
        (
            lambda: MultiViewDataset("t", _catalog(), np.zeros(3), queries=_queries(interactions=np.array([[0, 3]]))),
            r"an interaction points outside the catalog \(size 3\) or the query set \(size 2\): row 0 is \(query 0, item 3\)",
        ),
        (
            lambda: MultiViewDataset("t", _catalog(), np.zeros(3), queries=_queries(features=np.ones((2, 5), np.float32))),
            r"data set 't': query features have dimension 5, the text tower expects 3",
        ),
        (
            lambda: MultiViewDataset("t", _catalog(), np.zeros(3), queries=_queries(modality="audio")),
            r"queries use modality 'audio', which no catalog view has",
        ),
        (lambda: MultiViewDataset("t", _catalog(), np.zeros(2)), r"item split has 2 entries for 3 items"),
    ],
)
def test_queries_and_data_sets_are_checked_against_the_catalog(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_query_whose_relevant_items_are_outside_the_gallery_is_excluded_and_counted():
    """Evaluation on a restricted gallery (checkpoint selection) drops a query whose relevant
    items all fall outside it from the averages, and reports how many (not a silent zero)."""
    from ftbench.eval.metrics import ranked_list_metrics

    report = ranked_list_metrics(np.array([[0, 1], [1, 0]]), np.array([0, 1, 1]), np.array([1]), np.ones(1), 3, (1, 2))
    assert report.num_queries == 1 and report.num_excluded == 1 and report.metrics["recall@1"] == 0.0


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[:40]),  # truncated
        lambda p: p.write_bytes(b"not a numpy file at all"),
        lambda p: np.save(p, np.ones(5, np.float32)),  # wrong dimension
        lambda p: np.save(p, np.ones(16, np.float64)),  # wrong dtype
        lambda p: np.save(p, np.full(16, np.nan, np.float32)),  # non-finite
    ],
    ids=["truncated", "garbage", "wrong-dimension", "wrong-dtype", "nan"],
)
def test_a_damaged_cache_entry_is_encoded_again_never_reused(tmp_path, damage):
    backbone = create_backbone("hash:16", "text")
    cache = FeatureCache(tmp_path)
    good = cache.encode(backbone, ["red shampoo"], "item")
    entry = cache.path(backbone, "item", content_hash("text", "red shampoo"))
    damage(entry)
    again = FeatureCache(tmp_path)
    np.testing.assert_array_equal(again.encode(backbone, ["red shampoo"], "item"), good)
    assert again.stats.hits == 0 and again.stats.encoded == 1
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), good[0])  # overwritten


def _precomputed(folder, features, keys):
    folder.mkdir(exist_ok=True)
    np.save(folder / "features.npy", features)
    (folder / "keys.txt").write_text("\n".join(keys) + "\n")


@pytest.mark.parametrize(
    "features, keys, message",
    [
        (np.ones((2, 4), np.float32), [content_hash("text", "a")], r"keys.txt: 1 keys for 2 feature rows in .*features.npy"),
        (np.ones((1, 4), np.float32), ["xyz"], r"keys.txt, line 1: expected a sha256 hex digest, got 'xyz'"),
        (np.ones((2, 4), np.float32), [content_hash("text", "a")] * 2, r"keys.txt, line 2: duplicate key"),
        (np.ones(4, np.float32), ["x"], r"features.npy: expected a 2-d array \[n, D\], got shape \(4,\)"),
        (np.array([["a"]]), [content_hash("text", "a")], r"features.npy: expected a float array, got dtype <U1"),
    ],
)
def test_precomputed_features_are_checked_when_opened(tmp_path, features, keys, message):
    _precomputed(tmp_path / "pre", features, keys)
    with pytest.raises(ValueError, match=message):
        create_backbone(f"precomputed:{tmp_path / 'pre'}", "text")


def test_precomputed_nan_rows_and_missing_keys_name_the_file_and_input(tmp_path):
    features = np.ones((2, 4), np.float32)
    features[1, 2] = np.nan
    _precomputed(tmp_path / "pre", features, [content_hash("text", "a"), content_hash("text", "b")])
    backbone = create_backbone(f"precomputed:{tmp_path / 'pre'}", "text")
    assert backbone.encode(["a"]).shape == (1, 4)
    with pytest.raises(ValueError, match=r"features.npy: NaN or infinite values in the requested rows"):
        backbone.encode(["b"])
    with pytest.raises(KeyError, match=r"have no row for text input 'c'"):
        backbone.encode(["c"])


def _result_payload():
    result = RunResult(
        run_id="x",
        config={"objective": "clip"},
        config_hash="abc",
        versions={},
        device={},
        counts={},
        metrics={"query->item": {"recall@10": 0.5}},
        not_applicable={},
        timing={},
        training={},
    )
    return json.loads(result.to_json())


def _with(**changes):
    payload = _result_payload()
    payload.update(changes)
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"run_id": "x", "config": {', r"not a valid result file \(JSON error at line 1"),
        (b"", r"not a valid result file \(JSON error at line 1: Expecting value\)"),
        (b'{"run_id": "\xff"}', r"not a valid result file \(not UTF-8 at byte 12\)"),
        (b"[1, 2]", r"a result file must hold a JSON object"),
        (_with(schema_version=0), r"schema_version 0, this ftbench reads versions 1, 2"),
        (
            json.dumps({k: v for k, v in _result_payload().items() if k != "metrics"}).encode(),
            r"result file lacks field\(s\) \['metrics'\]",
        ),
        (_with(metrics=[0.5]), r"field 'metrics' must be a JSON object, got list"),
        (_with(config_hash=12), r"field 'config_hash' must be a JSON string, got int"),
        (_with(metrics={"query->item": 0.5}), r"metrics\['query->item'\] must be an object of metric: number"),
        (
            _with(metrics={"query->item": {"recall@10": "high"}}),
            r"metrics\['query->item'\]\['recall@10'\] must be a finite number",
        ),
        (_with().replace(b"0.5", b"NaN"), r"metrics\['query->item'\]\['recall@10'\] must be a finite number, got nan"),
    ],
)
def test_a_bad_result_file_is_refused_naming_file_and_field(tmp_path, data, message):
    path = tmp_path / "r.json"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"{path}: .*{message}|{path}: {message}"):
        load_result(path)


def test_a_non_finite_metric_is_never_written(tmp_path):
    result = RunResult(
        run_id="x",
        config={},
        config_hash="a",
        versions={},
        device={},
        counts={},
        metrics={"title->image": {"mrr": float("inf")}},
        not_applicable={},
        timing={},
        training={},
    )
    with pytest.raises(ValueError, match=r"r.json: not written: metrics\['title->image'\]\['mrr'\] is not a finite number"):
        write_result(result, tmp_path / "r.json")
    assert not list(tmp_path.iterdir())


def _zip(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("top/a.txt", "A" * 5000)
        zf.writestr("top/b.bin", np.random.default_rng(1).bytes(20000))
    return path.read_bytes()


def _tgz(path):
    with tarfile.open(path, "w:gz") as tf:
        for name in ("top/a.bin", "top/b.bin"):
            info = tarfile.TarInfo(name)
            payload = np.random.default_rng(0).bytes(20000)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path.read_bytes()


@pytest.mark.parametrize(
    "name, make, damage, message",
    [
        ("a.zip", _zip, lambda d: d[: len(d) // 2], "not a zip or tar archive"),
        ("a.zip", _zip, lambda d: d[:60] + bytes(40) + d[100:], r"damaged or truncated archive \(BadZipFile"),
        ("a.tar.gz", _tgz, lambda d: d[: len(d) // 2], r"damaged or truncated archive \(EOFError"),
        ("a.tar.gz", _tgz, lambda d: d[:200] + bytes(50) + d[250:], r"damaged or truncated archive"),
    ],
    ids=["zip-truncated", "zip-bad-crc", "tgz-truncated", "tgz-corrupt"],
)
def test_a_damaged_archive_is_refused_and_nothing_is_extracted(tmp_path, name, make, damage, message):
    archive = tmp_path / name
    archive.write_bytes(damage(make(archive)))
    dest = tmp_path / "dest"
    with pytest.raises(DamagedArchiveError, match=rf"{name}: {message}"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


# -- the command line -------------------------------------------------------------------------

runner = CliRunner()
WANDS_PRODUCTS = (
    "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\tproduct_features\n"
    "0\tplatform bed\tBeds\tFurniture\twood\tstyle:Modern\n1\tslow cooker\tCookers\tKitchen\t\tqt:7\n"
    "2\tblue vanity\tVanities\tBath\tA vanity\t\n3\tvelvet chair\tChairs\tLiving\tsoft\tcolor:Blue\n"
)
WANDS_QUERIES = "query_id\tquery\n0\tbed\n1\tcooker\n2\tvanity\n3\tchair\n"
WANDS_LABELS = "id\tquery_id\tproduct_id\tlabel\n0\t0\t0\tExact\n1\t1\t1\tExact\n2\t2\t2\tExact\n3\t3\t3\tExact\n4\t3\t9\tExact\n"
CHEAP = ["--dataset", "wands", "--set", "dataset.text_backbone=hash", "--set", "dataset.use_cache=false"]
RUN = ["run", "--objective", "clip", "--views", "2", "--steps", "1", "--batch-size", "2", "--quiet", "--device", "cpu"]


def _wands(folder, products=WANDS_PRODUCTS):
    folder.mkdir()
    (folder / "product.csv").write_text(products)
    (folder / "query.csv").write_text(WANDS_QUERIES)
    (folder / "label.csv").write_text(WANDS_LABELS)
    return folder


def test_a_run_records_the_loaders_skips_in_its_result(tmp_path):
    data = _wands(tmp_path / "wands")
    # 4 products: no validation split, so no checkpoint selection (it would otherwise read test)
    res = runner.invoke(
        app_(), [*RUN, *CHEAP, "--data-dir", str(data), "--out", str(tmp_path / "out"), "--set", "train.select_metric=last"]
    )
    assert res.exit_code == 0, res.output
    (result,) = (tmp_path / "out").glob("*.json")
    assert load_result(result).skipped == {"judgments_product_missing": 1}


@pytest.mark.parametrize("command", ["run", "features"])
def test_a_broken_data_file_stops_a_command_with_one_line_naming_it(tmp_path, command):
    data = _wands(tmp_path / "wands", WANDS_PRODUCTS[: WANDS_PRODUCTS.rindex("\n", 0, -1) + 8])  # cut last record
    out = tmp_path / "out"
    args = [*RUN, *CHEAP, "--out", str(out)] if command == "run" else ["features", *CHEAP[:2], "--backbone", "text=hash"]
    res = runner.invoke(app_(), [*args, "--data-dir", str(data)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "product.csv, line 5: expected 6 tab-separated fields (as in the header), got 2 - the file looks truncated" in text
    assert "Traceback" not in res.output
    assert not out.exists() or not list(out.glob("*.json"))


def _catalog_folder(folder, items=None, queries=None, test_qrels="q2\tb\t1\n"):
    """A two-item catalog folder in the layout of `ftbench.datasets.catalog`."""
    (folder / "qrels").mkdir(parents=True)
    items = items or [{"id": "a", "title": "oak chair", "split": "train"}, {"id": "b", "title": "brass lamp", "split": "test"}]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    queries = [{"id": "q1", "text": "chair"}, {"id": "q2", "text": "lamp"}] if queries is None else queries
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / "train.tsv").write_text("q1\ta\t1\n")
    (folder / "qrels" / "test.tsv").write_text(test_qrels)
    return folder


@pytest.mark.parametrize(
    "folder, message",
    [
        (dict(test_qrels=""), "qrels/test.tsv: no judgments in the file (it is empty or only a header)"),
        (dict(queries=[]), "queries.jsonl: no queries in the file (it is empty)"),
        (
            dict(items=[{"id": "a", "title": "oak chair", "image": "https://cdn.example.com/a.jpg"}]),
            "items.jsonl, line 1: field 'image': image 'https://cdn.example.com/a.jpg' is a URL; images are read from "
            "local files only (nothing is downloaded): download the images into",
        ),
    ],
    ids=["empty-test-qrels", "empty-queries", "image-url"],
)
def test_a_catalog_that_would_lose_its_main_task_stops_run_naming_the_file(tmp_path, folder, message):
    data = _catalog_folder(tmp_path / "catalog", **folder)
    out = tmp_path / "out"
    res = runner.invoke(
        app_(),
        [
            *RUN,
            "--dataset",
            "catalog",
            "--data-dir",
            str(data),
            "--out",
            str(out),
            "--set",
            "dataset.text_backbone=hash",
            "--set",
            "dataset.image_backbone=hash",
            "--set",
            "dataset.use_cache=false",
        ],
    )
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not out.exists()  # a failed run leaves no empty --out folder behind


@pytest.mark.parametrize(
    "sets, message",
    [
        (["dataset.items=__import__('os').system('true')"], "dataset option 'items': expected an integer, got"),
        (["eval.ks=(0, 10)"], "eval option 'ks' must be a non-empty list of positive integers"),
        (["eval.ks=10"], "eval option 'ks': expected tuple, got 10"),
        (["train.lr=-1"], "train option 'lr' must be positive"),
        (["traim.lr=0.1"], "unknown option section 'traim'. Did you mean 'train'"),
        (["dataset.seed=2", "dataset.seed"], "expected key=value"),
        (["=3"], "empty key"),
        (["eval.ks=(1, 'a')"], "eval option 'ks' must be a non-empty list of positive integers, got (1, 'a')"),
        (["eval.ks=(1.5, 10)"], "eval option 'ks' must be a non-empty list of positive integers"),
        (["eval.encode_batch_size=0"], "eval option 'encode_batch_size' must be at least 1, got 0"),
        (["train.select_metric='best'"], "train option 'select_metric' must be 'auto', 'last' or 'task/metric'"),
        (["train.val_gallery_size=-3"], "train option 'val_gallery_size' must be at least 1, got -3"),
        (["dataset.split_seed=-1"], "dataset option 'split_seed' must be a non-negative integer, got -1"),
        (["dataset.item_fractions=(0.5, 0.5)"], "dataset option 'item_fractions' must be three non-negative numbers"),
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    ],
)
def test_bad_set_values_name_the_option_and_what_was_expected(tmp_path, sets, message):
    args = sets if sets[0].startswith("--") else [a for s in sets for a in ("--set", s)]
    res = runner.invoke(app_(), ["run", "--out", str(tmp_path), "--device", "cpu", *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_a_damaged_download_is_refused_by_data_fetch(tmp_path):
    archive = tmp_path / "GroceryStoreDataset.zip"
    archive.write_bytes(_zip(tmp_path / "ok.zip")[:15000])  # a download cut short
    res = runner.invoke(app_(), ["data", "fetch", "grocery-store", "--dest", str(tmp_path / "dest"), "--url", archive.as_uri()])
    assert res.exit_code == 2, res.output
    assert "not a zip or tar archive (or a damaged, truncated one)" in " ".join(res.output.split())
    assert "Traceback" not in res.output


def app_():
    from ftbench.cli.app import app

    return app


def test_a_selection_metric_of_a_task_the_data_set_lacks_is_named(tmp_path):
    """A well-formed `select_metric` naming a task the data set does not pose would score every
    validation 0 and silently select the first checkpoint; it stops the run instead."""
    res = runner.invoke(
        app_(),
        [
            "run",
            "--objective",
            "clip",
            "--views",
            "2",
            "--steps",
            "1",
            "--batch-size",
            "32",
            "--set",
            "dataset.items=300",
            "--set",
            "dataset.interactions=400",
            "--quiet",
            "--set",
            "train.select_metric='title->image/recall@10'",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2, res.output
    assert (
        "train option 'select_metric' 'title->image/recall@10': data set 'synthetic' has no task 'title->image'; "
        "use 'query->item/recall@100', 'cross-view/mean recall@10' or 'auto'"
    ) in " ".join(res.output.split())
    assert not list(tmp_path.glob("*.json"))
