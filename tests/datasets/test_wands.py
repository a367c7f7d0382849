"""wands loader on a small fixture in the published schema (tab-separated .csv files)."""

from __future__ import annotations

import numpy as np
import pytest
from ftbench.datasets.wands import WANDS, render_features
from ftbench.features.backbones import create_backbone

PRODUCT_HEADER = "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\tproduct_features\trating_count\taverage_rating\treview_count"
PRODUCTS = [
    "0\tsolid wood platform bed\tBeds\tFurniture / Bedroom Furniture / Beds & Headboards / Beds\tgood, deep sleep.\toverallwidth-sidetoside:64.7|dsprimaryproductstyle:Modern\t15\t4.5\t15",
    "1\tall-clad 7 qt . slow cooker\tSlow Cookers\tKitchen & Tabletop / Small Kitchen Appliances\t\tcapacityquarts:7|programmable:Yes\t100\t2.0\t98",
    '2\t"fawkes 36"" blue vanity"\tVanities\tHome Improvement / Bathroom Remodel\t<p>A vanity.</p>\t\t\t\t',
    "3\tvelvet accent chair\tAccent Chairs\tFurniture / Living Room Furniture\tsoft velvet\tcolor:Blue\t3\t5.0\t3",
]
QUERIES = [
    "query_id\tquery\tquery_class",
    "0\tplatform bed\tBeds",
    "1\tslow cooker\tSlow Cookers",
    "2\tblue vanity\tVanities",
    "3\tunicorn lamp\t",
]
LABELS = [
    "id\tquery_id\tproduct_id\tlabel",
    "0\t0\t0\tExact",
    "1\t0\t3\tIrrelevant",
    "2\t1\t1\tExact",
    "3\t2\t2\tPartial",
    "4\t2\t77\tExact",  # product not in product.csv
    "5\t3\t3\tIrrelevant",  # query without relevant product
    "6\t9\t0\tExact",  # query not in query.csv
]


def _write(folder, products=PRODUCTS, queries=QUERIES, labels=LABELS):
    (folder / "product.csv").write_text("\n".join([PRODUCT_HEADER] + products) + "\n", encoding="utf-8")
    (folder / "query.csv").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (folder / "label.csv").write_text("\n".join(labels) + "\n", encoding="utf-8")


def _config(tmp_path, **kw):
    base = dict(data_dir=str(tmp_path), text_backbone="hash", cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return WANDS.Config(**base)


def test_published_schema(tmp_path):
    _write(tmp_path)
    ds = WANDS().build(_config(tmp_path))
    cat, q = ds.catalog, ds.queries
    assert [s.name for s in cat.slots] == ["name", "description", "features", "class_and_category"]
    assert cat.item_ids().tolist() == ["0", "1", "2", "3"]
    assert q.ids.tolist() == ["0", "1", "2"]
    assert ds.skipped == {"judgments_product_missing": 1, "judgments_query_missing": 1, "queries_without_relevant": 1}
    assert [q.relevant(k).tolist() for k in range(3)] == [[0], [1], [2]]
    assert q.relevant_grades.tolist() == [1.0, 1.0, 0.5]  # Exact 1, Partial 0.5
    exact_train = [[k, it] for k, it in [(0, 0), (1, 1)] if q.split[k] == 0]
    assert q.interactions.tolist() == exact_train
    bb = create_backbone("hash", "text")
    np.testing.assert_array_equal(cat.features(np.array([2]), 0)[0], bb.encode(['fawkes 36" blue vanity'])[0])  # CSV quoting
    np.testing.assert_array_equal(cat.features(np.array([2]), 1)[0], bb.encode(["A vanity."])[0])
    np.testing.assert_array_equal(
        cat.features(np.array([0]), 2)[0], bb.encode(["overallwidth-sidetoside: 64.7; dsprimaryproductstyle: Modern"])[0]
    )
    np.testing.assert_array_equal(
        cat.features(np.array([3]), 3)[0], bb.encode(["Accent Chairs; Furniture / Living Room Furniture"])[0]
    )
    assert cat.availability(np.arange(4))[:, 1:3].tolist() == [[True, True], [False, True], [True, False], [True, True]]
    np.testing.assert_array_equal(q.features[1], bb.encode(["slow cooker"])[0])


def test_partial_can_be_made_irrelevant(tmp_path):
    _write(tmp_path)
    ds = WANDS().build(_config(tmp_path, gain_partial=0.0))
    assert ds.queries.ids.tolist() == ["0", "1"] and ds.skipped["queries_without_relevant"] == 2


def test_render_features():
    assert render_features("a:1|b: two|loose") == "a: 1; b: two; loose"
    assert render_features("") is None


@pytest.mark.parametrize(
    "which, rows, message",
    [
        ("labels", LABELS + ["7\t0\t1\tMaybe"], r"label.csv, line 9: field 'label' must be one of"),
        (
            "labels",
            LABELS + ["8\t0\t0\tPartial"],
            r"label.csv, line 9: duplicate judgment of product 0 for query 0 \(first at .*line 2\)",
        ),
        ("labels", LABELS + ["3\t1\t0\tExact"], r"label.csv, line 9: duplicate id 3 \(first at .*line 5\)"),
        ("products", PRODUCTS + [PRODUCTS[1]], r"product.csv, line 6: duplicate product_id 1"),
        ("queries", QUERIES + ["x\tfoo\tbar"], r"query.csv, line 6: field 'query_id' must be an integer id"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, which, rows, message):
    kw = {which: rows}
    _write(tmp_path, **kw)
    with pytest.raises(ValueError, match=message):
        WANDS().build(_config(tmp_path))


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="product.csv does not exist"):
        WANDS().build(_config(tmp_path))
    _write(tmp_path, labels=["id\tquery_id\tproduct_id", "0\t0\t0"])
    with pytest.raises(ValueError, match=r"label.csv: missing column\(s\) \['label'\]"):
        WANDS().build(_config(tmp_path))
