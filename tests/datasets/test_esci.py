"""esci loader on a small fixture in the published Shopping Queries schema (CSV, and parquet when
pyarrow is installed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ftbench.datasets.esci import ESCI
from ftbench.features.backbones import create_backbone

EXAMPLES = [
    # example_id, query, query_id, product_id, product_locale, esci_label, small_version, large_version, split
    (0, "red shampoo", 1, "P1", "us", "E", 1, 1, "train"),
    (1, "red shampoo", 1, "P2", "us", "S", 1, 1, "train"),
    (2, "red shampoo", 1, "P3", "us", "I", 1, 1, "train"),
    (3, "wooden comb", 2, "P4", "us", "C", 1, 1, "test"),
    (4, "wooden comb", 2, "P9", "us", "E", 1, 1, "test"),  # P9 not in the products file
    (5, "wooden comb", 2, "P2", "us", "E", 0, 1, "test"),  # large version only
    (6, "peine", 3, "P1", "es", "E", 1, 1, "train"),  # other locale
    (7, "hair dryer", 4, "P3", "us", "I", 1, 1, "train"),  # no relevant product
    (8, "argan oil", 5, "P1", "us", "E", 1, 1, "train"),
]
PRODUCTS = [
    # product_id, product_title, product_description, product_bullet_point, product_brand, product_color, product_locale
    ("P1", "Argan Shampoo", "<p>Gentle</p>", "Sulfate free\nVegan", "Acme", "Red", "us"),
    ("P2", "Rose Shampoo", "", "Floral", "Acme", "", "us"),
    ("P3", "Dryer", "Fast", "", "", "Black", "us"),
    ("P4", "Comb", "Wood", "Handmade", "Combco", "Brown", "us"),
    ("P1", "Champú", "", "", "Acme", "Rojo", "es"),
]
EX_COLS = [
    "example_id",
    "query",
    "query_id",
    "product_id",
    "product_locale",
    "esci_label",
    "small_version",
    "large_version",
    "split",
]
PR_COLS = [
    "product_id",
    "product_title",
    "product_description",
    "product_bullet_point",
    "product_brand",
    "product_color",
    "product_locale",
]


def _write(folder, examples=EXAMPLES, products=PRODUCTS, fmt="csv"):
    ex = pd.DataFrame(examples, columns=EX_COLS)
    pr = pd.DataFrame(products, columns=PR_COLS)
    if fmt == "csv":
        ex.to_csv(folder / "shopping_queries_dataset_examples.csv", index=False)
        pr.to_csv(folder / "shopping_queries_dataset_products.csv", index=False)
    else:
        ex.to_parquet(folder / "shopping_queries_dataset_examples.parquet")
        pr.to_parquet(folder / "shopping_queries_dataset_products.parquet")


def _config(tmp_path, **kw):
    base = dict(data_dir=str(tmp_path), text_backbone="hash", cache_dir=str(tmp_path / "cache"), query_val_fraction=0.0)
    base.update(kw)
    return ESCI.Config(**base)


def _check_small_us(ds):
    cat, q = ds.catalog, ds.queries
    assert [s.name for s in cat.slots] == ["title", "bullet_points", "description", "brand_and_color"]
    assert cat.item_ids().tolist() == ["P1", "P2", "P3", "P4"]  # judged products of the locale
    assert q.ids.tolist() == ["1", "2", "5"]  # query 4 has no relevant product
    assert ds.skipped == {"judgments_product_missing": 1, "queries_without_relevant": 1}
    # gains E=1, S=0.1, C=0.01; I is not relevant
    assert q.relevant(0).tolist() == [0, 1] and np.allclose(
        q.relevant_grades[q.relevant_indptr[0] : q.relevant_indptr[1]], [1.0, 0.1]
    )
    assert q.relevant(1).tolist() == [3] and np.isclose(q.relevant_grades[q.relevant_indptr[1]], 0.01)
    assert q.split.tolist() == [0, 2, 0]
    assert q.interactions.tolist() == [[0, 0], [2, 0]]  # (train query, E product)
    bb = create_backbone("hash", "text")
    np.testing.assert_array_equal(q.features[2], bb.encode(["argan oil"])[0])
    np.testing.assert_array_equal(cat.features(np.array([0]), 1)[0], bb.encode(["Sulfate free Vegan"])[0])
    np.testing.assert_array_equal(cat.features(np.array([0]), 2)[0], bb.encode(["Gentle"])[0])  # HTML stripped
    np.testing.assert_array_equal(cat.features(np.array([0]), 3)[0], bb.encode(["Acme; Red"])[0])
    assert cat.availability(np.array([1]))[0].tolist() == [True, True, False, True]


def test_csv_small_version(tmp_path):
    _write(tmp_path)
    _check_small_us(ESCI().build(_config(tmp_path)))


def test_parquet_small_version(tmp_path):
    pytest.importorskip("pyarrow")
    _write(tmp_path, fmt="parquet")
    _check_small_us(ESCI().build(_config(tmp_path)))


def test_large_version_locale_and_validation_split(tmp_path):
    _write(tmp_path)
    ds = ESCI().build(_config(tmp_path, version="large"))
    q = ds.queries
    assert q.relevant(1).tolist() == [1, 3]  # P2 (E, large only) and P4 (C)
    es = ESCI().build(_config(tmp_path, locale="es", version="all"))
    assert es.catalog.item_ids().tolist() == ["P1"] and es.queries.ids.tolist() == ["3"]
    val = ESCI().build(_config(tmp_path, query_val_fraction=0.5))
    assert sorted(val.queries.split.tolist()) == [0, 1, 2]  # one of the two train queries -> val


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda ex, pr: ex.__setitem__(0, (0, "red shampoo", 1, "P1", "us", "X", 1, 1, "train")),
            r"examples.csv, line 2: field 'esci_label'",
        ),
        (
            lambda ex, pr: ex.append((9, "red shampoo", 1, "P1", "us", "S", 1, 1, "train")),
            r"examples.csv, line 11: duplicate judgment of product 'P1'",
        ),
        (
            lambda ex, pr: ex.append((9, "blue shampoo", 1, "P4", "us", "S", 1, 1, "train")),
            r"examples.csv, line 11: query_id '1' has text 'blue shampoo'",
        ),
        (
            lambda ex, pr: pr.append(("P2", "Dup", "", "", "", "", "us")),
            r"products.csv, line 7: duplicate product \('P2', 'us'\), first at .*line 3",
        ),
    ],
)
def test_bad_input_names_file_and_row(tmp_path, mutate, message):
    ex, pr = list(EXAMPLES), list(PRODUCTS)
    mutate(ex, pr)
    _write(tmp_path, ex, pr)
    with pytest.raises(ValueError, match=message):
        ESCI().build(_config(tmp_path))


def test_missing_column_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shopping_queries_dataset_examples"):
        ESCI().build(_config(tmp_path))
    pd.DataFrame([(1, "q", "P1", "us")], columns=["query_id", "query", "product_id", "product_locale"]).to_csv(
        tmp_path / "shopping_queries_dataset_examples.csv", index=False
    )
    pd.DataFrame(PRODUCTS, columns=PR_COLS).to_csv(tmp_path / "shopping_queries_dataset_products.csv", index=False)
    with pytest.raises(ValueError, match=r"examples.csv: missing column\(s\) \['esci_label'\]"):
        ESCI().build(_config(tmp_path))
