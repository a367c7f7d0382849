"""Every data-file loader, fed a broken file, says which file and line is wrong and what it
expected - or, where skipping is the documented policy, skips the record and counts it.

Why: a loader that drops a malformed record silently, or stops with a bare traceback from deep
inside pandas or gzip, makes a benchmark result untrustworthy or its failure unexplainable. Each
case starts from a valid folder (conftest.py), breaks one file in one way, and checks the exact
outcome. docs/guarantees.md lists these cases.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest


def _replace_line(path: Path, index: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _append_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(path.read_bytes() + data)


def _truncate_mid_last_record(path: Path) -> None:
    data = path.read_bytes().rstrip(b"\n")
    path.write_bytes(data[: data.rfind(b"\n") + 6])  # keep the first 5 bytes of the last record


def _drop_column(path: Path, sep: str, index: int) -> None:
    rows = [line.split(sep) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("\n".join(sep.join(r[:index] + r[index + 1 :]) for r in rows) + "\n", encoding="utf-8")


def _named_gz_but_plain(path: Path) -> None:
    path.rename(path.with_name(path.name + ".gz"))


def _gzip_truncated(path: Path) -> None:
    packed = gzip.compress(path.read_bytes())
    path.unlink()
    path.with_name(path.name + ".gz").write_bytes(packed[: len(packed) // 2])


# (format, file, how it is broken, regex the error must match: file, line/field, what was expected)
ERRORS = [
    (
        "wands",
        "product.csv",
        _truncate_mid_last_record,
        r"product\.csv, line 5: expected 9 tab-separated fields \(as in the header\), got 2 - the file looks truncated",
    ),
    (
        "wands",
        "label.csv",
        lambda p: _append_bytes(p, b"6\t1\t2\tEx\xffact\n"),
        r"label\.csv, line 8: not valid UTF-8 \(byte b'\\xff' at column 9\)",
    ),
    ("wands", "label.csv", lambda p: p.write_bytes(b""), r"label\.csv: the file is empty; expected a header line"),
    (
        "wands",
        "product.csv",
        lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"),
        r"product\.csv: no product rows after the header \(the catalog would be empty\)",
    ),
    (
        "wands",
        "query.csv",
        lambda p: _append_bytes(p, b'4\t"unclosed quote\tx\n5\tmore\ty\n'),
        r"query\.csv, lines 6-7 \(a quote '\"' opened on line 6 may be unbalanced\): expected 3",
    ),
    (
        "wands",
        "label.csv",
        lambda p: _append_bytes(p, b"6\t1\t2\tExact\textra\n"),
        r"label\.csv, line 8: expected 4 tab-separated fields \(as in the header\), got 5$",
    ),
    (
        "wands",
        "label.csv",
        lambda p: _append_bytes(p, b"6\t1\t2\tGood\n"),
        r"label\.csv, line 8: field 'label' must be one of \('Exact', 'Partial', 'Irrelevant'\), got 'Good'",
    ),
    (
        "wands",
        "product.csv",
        lambda p: _append_bytes(p, b"1\tdup\tx\ty\tz\tw\t1\t2\t3\n"),
        r"product\.csv, line 6: duplicate product_id 1 \(first at .*line 3\)",
    ),
    (
        "wands",
        "product.csv",
        lambda p: _replace_line(p, 1, "\t".join([""] * 9)),
        r"product\.csv, line 2: field 'product_id' must be an integer id, got ''",
    ),
    (
        "wands",
        "product.csv",
        lambda p: _drop_column(p, "\t", 4),
        r"product\.csv: missing column\(s\) \['product_description'\]; columns present: ",
    ),
    (
        "esci",
        "shopping_queries_dataset_products.csv",
        _truncate_mid_last_record,
        r"products\.csv, line 5: expected 7 comma-separated fields .* - the file looks truncated",
    ),
    (
        "esci",
        "shopping_queries_dataset_examples.csv",
        lambda p: _append_bytes(p, b"6,caf\xe9,7,P1,us,E,1,1,train\n"),
        r"examples\.csv, line 8: not valid UTF-8",
    ),
    (
        "esci",
        "shopping_queries_dataset_examples.csv",
        lambda p: _append_bytes(p, b"6,shampoo,1,P3,us,E,1,1,train\n"),
        r"examples\.csv, line 8: query_id '1' has text 'shampoo', but 'red shampoo' at .*line 2",
    ),
    (
        "esci",
        "shopping_queries_dataset_products.csv",
        lambda p: _append_bytes(p, b"P2,Again,,,,,us\n"),
        r"products\.csv, line 6: duplicate product \('P2', 'us'\), first at .*line 3",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        _gzip_truncated,
        r"meta_Beauty\.jsonl\.gz, after line \d+: damaged or truncated gzip file",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        _named_gz_but_plain,
        r"meta_Beauty\.jsonl\.gz, after line 0: damaged or truncated gzip file \(BadGzipFile",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B9", "title": "\xff"}\n'),
        r"meta_Beauty\.jsonl, line 5: not valid UTF-8",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B9", "title": "x"'),
        r"meta_Beauty\.jsonl, line 5: malformed JSON",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B9"}\n'),
        r"meta_Beauty\.jsonl, line 5: missing field 'title'",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": " ", "title": "x"}\n'),
        r"meta_Beauty\.jsonl, line 5: field 'parent_asin' is empty",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B9", "title": "x", "features": ["a", 3]}\n'),
        r"meta_Beauty\.jsonl, line 5: field 'features'\[1\] must be a string, got int",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B9", "title": NaN}\n'),
        r"meta_Beauty\.jsonl, line 5: field 'title' must be str, got float",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B001", "title": "x"}\n'),
        r"meta_Beauty\.jsonl, line 5: duplicate parent_asin 'B001' \(first on line 1\)",
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: p.write_text("\n\n"),
        r"meta_Beauty\.jsonl: no items read: no JSON lines; the catalog would be empty",
    ),
    (
        "grocery-store",
        "classes.csv",
        lambda p: _append_bytes(p, b"Kiwi\xff,7,Kiwi,3,/a.jpg,/a.txt\n"),
        r"classes\.csv, line 5: not valid UTF-8",
    ),
    ("grocery-store", "classes.csv", lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"), r"classes\.csv: no products"),
    (
        "grocery-store",
        "classes.csv",
        lambda p: _append_bytes(p, b"Anjou,7,Pear,0,/a.jpg,/a.txt\n"),
        r"classes\.csv, line 5: duplicate Class Name 'Anjou' \(first on line 2\)",
    ),
    (
        "grocery-store",
        "classes.csv",
        lambda p: _append_bytes(p, b"Kiwi,7,Kiwi\n"),
        r"classes\.csv, line 5: expected 6 fields, got 3",
    ),
    (
        "grocery-store",
        "val.txt",
        lambda p: _append_bytes(p, b"val/x.jpg, twenty, 0\n"),
        r"val\.txt, line 4: field 'class id' must be an integer, got 'twenty'",
    ),
    (
        "grocery-store",
        "test.txt",
        lambda p: _append_bytes(p, b"test/Fruit/Pear/Anjou/gone.jpg, 20, 0\n"),
        r"test\.txt, line 4: photo .*gone\.jpg does not exist",
    ),
]


@pytest.mark.parametrize("fmt, name, breaks, message", ERRORS, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(ERRORS)])
def test_broken_file_is_an_error_naming_file_and_line(formats, tmp_path, fmt, name, breaks, message):
    folder = tmp_path / fmt
    formats[fmt].write(folder)
    breaks(folder / name)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        formats[fmt].build(folder)


# (format, file, how it is broken, the counts the loader must report in `skipped`)
SKIPS = [
    ("wands", "label.csv", lambda p: _append_bytes(p, b"6\t1\t99\tExact\n"), {"judgments_product_missing": 1}),
    ("wands", "label.csv", lambda p: _append_bytes(p, b"6\t99\t1\tExact\n"), {"judgments_query_missing": 1}),
    (
        "wands",
        "product.csv",
        lambda p: _replace_line(p, 4, "3" + "\t" * 8),
        {"products_without_views": 1, "judgments_product_without_views": 2},
    ),
    ("wands", "label.csv", lambda p: _replace_line(p, 3, "2\t1\t1\tIrrelevant"), {"queries_without_relevant": 1}),
    (
        "esci",
        "shopping_queries_dataset_examples.csv",
        lambda p: _append_bytes(p, b"6,hair dryer,6,P9,us,E,1,1,train\n"),
        {"judgments_product_missing": 1},
    ),
    (
        "esci",
        "shopping_queries_dataset_products.csv",
        lambda p: _replace_line(p, 3, "P3,,,,,,us"),
        {"judgments_product_without_views": 2, "queries_without_relevant": 1},
    ),
    (
        "amazon-reviews-2023",
        "meta_Beauty.jsonl",
        lambda p: _append_bytes(p, b'{"parent_asin": "B9", "title": "", "features": [], "store": null}\n'),
        {"items_without_views": 1},
    ),
    ("grocery-store", "classes.csv", lambda p: next(p.parent.rglob("Zucchini_Iconic.jpg")).unlink(), {"iconic_image_missing": 1}),
    (
        "grocery-store",
        "train.txt",
        lambda p: _append_bytes(p, b"train/Fruit/Kiwi/Kiwi_001.jpg, 7, 3\n"),
        {"photos_unknown_product": 1},
    ),
]


@pytest.mark.parametrize("fmt, name, breaks, counts", SKIPS, ids=[f"{c[0]}-{next(iter(c[3]))}" for c in SKIPS])
def test_documented_skips_are_counted(formats, tmp_path, fmt, name, breaks, counts):
    """A skip is never silent: the loader reports it in `skipped`, which every result file
    carries; what is kept stays consistent (every item has a view, relevance points into the
    catalog)."""
    folder = tmp_path / fmt
    formats[fmt].write(folder)
    clean = formats[fmt].build(folder)
    assert clean.skipped == {}
    breaks(folder / name)
    ds = formats[fmt].build(folder)
    assert ds.skipped == counts
    cat = ds.catalog
    assert cat.availability(np.arange(cat.num_items)).any(axis=1).all()
    if ds.queries is not None:
        assert ds.queries.relevant_items.max() < cat.num_items
        assert all(len(ds.queries.relevant(q)) for q in range(ds.queries.num_queries))


def test_empty_text_is_a_missing_view_but_a_missing_column_is_an_error(formats, tmp_path):
    """The published files leave fields empty on purpose (no description, no brand): an empty
    field makes the item lack that view (availability mask), never an error or a dropped item."""
    folder = tmp_path / "wands"
    formats["wands"].write(folder)
    ds = formats["wands"].build(folder)
    slots = [s.name for s in ds.catalog.slots]
    row = ds.catalog.item_ids().tolist().index("1")  # "slow cooker" has no description
    assert ds.catalog.availability(np.array([row]))[0].tolist() == [True, False, True, True]
    assert slots == ["name", "description", "features", "class_and_category"]


@pytest.mark.parametrize("where", ["train photo", "iconic image"])
def test_unreadable_image_is_an_error_naming_the_image(formats, tmp_path, where):
    """A corrupt image is never encoded as garbage or dropped: the error names the file."""
    folder = tmp_path / "grocery"
    formats["grocery-store"].write(folder)
    pattern = "Anjou_000.jpg" if where == "train photo" else "Anjou_Iconic.jpg"
    image = next(p for p in folder.rglob(pattern) if where != "train photo" or "train" in p.parts)
    image.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(ValueError, match=rf"image file .*{pattern} could not be decoded"):
        formats["grocery-store"].build(folder)
