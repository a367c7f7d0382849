"""Property-based tests (hypothesis) of the loaders: what goes into a data file comes out of the
loader, whatever the text holds, and what a loader drops it counts.

Why: the example-based tests pin a few records; the loaders meet millions. These properties are
checked on generated inputs - arbitrary Unicode text with tabs, commas, quotes, newlines, HTML,
empty fields - against a reference computed independently in the test:

- a table written by Python's `csv` writer reads back identically through `read_table` (no field
  split, merged, trimmed or dropped);
- `clean_text` is idempotent and leaves no leading, trailing or repeated whitespace;
- `relevance_from_pairs` builds CSR lists holding every pair once, with its highest grade;
- WANDS: the catalog holds exactly the products with some text, relevance exactly the labels of
  gain > 0 between known queries and products, and every dropped label or query is counted;
- Amazon Reviews 2023: an item is kept iff it has some text, each view is present iff its field
  has text, and every dropped item is counted.

Example counts are in `@settings` (docs/guarantees.md); `deadline=None` because timing is not
what is tested.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from ftbench.data.queries import relevance_from_pairs
from ftbench.datasets._text_loading import clean_text, read_table
from ftbench.datasets.amazon_reviews_2023 import AmazonReviews2023
from ftbench.datasets.wands import WANDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
WORDY = st.text(st.sampled_from(list("ab c\t,\"'<>&;\n é漢")), max_size=12)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=60, **SETTINGS)
@given(rows=st.lists(st.lists(TEXT, min_size=3, max_size=3), min_size=1, max_size=6), sep=st.sampled_from(["\t", ","]))
def test_a_table_reads_back_exactly_what_was_written(rows, sep):
    header = ["a", "b", "c"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep)  # QUOTE_MINIMAL, "\r\n": quotes fields holding \r or \n
    writer.writerow(header)
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("t.tsv" if sep == "\t" else "t.csv")
        path.write_bytes(buffer.getvalue().encode("utf-8"))
        df = read_table(path, sep=sep, required=header)
    assert df.values.tolist() == rows


@settings(max_examples=200, **SETTINGS)
@given(value=st.one_of(TEXT, st.lists(st.one_of(TEXT, st.none()), max_size=4), st.none()))
def test_clean_text_is_idempotent_and_normalises_whitespace(value):
    once = clean_text(value)
    if once is None:
        return
    assert once == once.strip() and "  " not in once and "\n" not in once and "\t" not in once
    assert clean_text(once, strip_html=False) == once


@settings(max_examples=100, **SETTINGS)
@given(pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.floats(0.01, 1.0)), max_size=30))
def test_relevance_lists_hold_each_pair_once_with_its_highest_grade(pairs):
    best: dict[tuple[int, int], float] = {}
    for q, item, grade in pairs:
        best[(q, item)] = max(best.get((q, item), 0.0), np.float32(grade))
    arr = np.array([(q, i) for q, i, _ in pairs], dtype=np.int64).reshape(-1, 2)
    grades = np.array([g for _, _, g in pairs], dtype=np.float32)
    indptr, items, out_grades = relevance_from_pairs(6, arr, grades)
    assert indptr[0] == 0 and indptr[-1] == len(items) and (np.diff(indptr) >= 0).all()
    got = {(q, int(items[k])): float(out_grades[k]) for q in range(6) for k in range(indptr[q], indptr[q + 1])}
    assert len(got) == len(items) and got == {k: float(v) for k, v in best.items()}


LABEL = st.sampled_from(["Exact", "Partial", "Irrelevant"])


@st.composite
def wands_files(draw):
    n_products = draw(st.integers(1, 6))
    products = [(str(i), draw(WORDY), draw(WORDY), draw(WORDY)) for i in range(n_products)]
    n_queries = draw(st.integers(1, 5))
    queries = [(str(q), draw(WORDY)) for q in range(n_queries)]
    keys = draw(st.lists(st.tuples(st.integers(0, n_queries + 1), st.integers(0, n_products + 1)), unique=True, max_size=12))
    labels = [(str(k), str(q), str(p), draw(LABEL)) for k, (q, p) in enumerate(keys)]
    return products, queries, labels


def _tsv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


@settings(max_examples=40, **SETTINGS)
@given(files=wands_files())
def test_wands_keeps_what_the_files_say_and_counts_what_it_drops(files):
    products, queries, labels = files
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _tsv(
            folder / "product.csv",
            ["product_id", "product_name", "product_class", "category hierarchy", "product_description", "product_features"],
            [(pid, name, "", "", desc, feats) for pid, name, desc, feats in products],
        )
        _tsv(folder / "query.csv", ["query_id", "query"], queries)
        _tsv(folder / "label.csv", ["id", "query_id", "product_id", "label"], labels)
        with_text = [p for p in products if any(clean_text(x) for x in p[1:])]
        kept_ids = {p[0] for p in with_text}
        all_ids = {p[0] for p in products}
        query_ids = {q for q, _ in queries}
        gain = {"Exact": 1.0, "Partial": 0.5, "Irrelevant": 0.0}
        expected = {(q, p): gain[lab] for _, q, p, lab in labels if q in query_ids and p in kept_ids and gain[lab] > 0}
        expected_skips = {
            "judgments_query_missing": sum(q not in query_ids for _, q, _, _ in labels),
            "judgments_product_missing": sum(q in query_ids and p not in all_ids for _, q, p, _ in labels),
            "judgments_product_without_views": sum(q in query_ids and p in all_ids - kept_ids for _, q, p, _ in labels),
            "products_without_views": len(products) - len(with_text),
            "queries_without_relevant": len(query_ids - {q for q, _ in expected}),
        }
        expected_skips = {k: v for k, v in expected_skips.items() if v}
        try:
            ds = WANDS().build(WANDS.Config(data_dir=str(folder), text_backbone="hash", use_cache=False))
        except ValueError as exc:
            # refused only when nothing usable is left, and then it says which file
            assert not with_text or not expected, exc
            assert "product.csv" in str(exc) or "query.csv" in str(exc)
            return
    ids = ds.catalog.item_ids().tolist()
    assert ids == [p[0] for p in with_text]
    q = ds.queries
    got = {
        (str(q.ids[k]), ids[int(i)]): float(g)
        for k in range(q.num_queries)
        for i, g in zip(q.relevant(k), q.relevant_grades[q.relevant_indptr[k] : q.relevant_indptr[k + 1]])
    }
    assert got == expected
    assert ds.skipped == expected_skips


@st.composite
def amazon_records(draw):
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        out.append(
            {
                "parent_asin": f"A{i}",
                "title": draw(WORDY),
                "features": draw(st.lists(WORDY, max_size=2)),
                "description": draw(st.one_of(WORDY, st.lists(WORDY, max_size=2))),
                "store": draw(st.one_of(st.none(), WORDY)),
                "categories": draw(st.lists(WORDY, max_size=2)),
            }
        )
    return out


@settings(max_examples=40, **SETTINGS)
@given(records=amazon_records())
def test_amazon_keeps_items_with_text_and_marks_each_view(records):
    def views(r):
        cats = " > ".join(c for c in (clean_text(x, False) for x in r["categories"]) if c) or None
        store_cats = "; ".join(x for x in (clean_text(r["store"], False), cats) if x) or None
        return [clean_text(r["title"], False), clean_text(r["features"], False), clean_text(r["description"]), store_cats]

    kept = [r for r in records if any(views(r))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meta_X.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        config = AmazonReviews2023.Config(data_dir=tmp, text_backbone="hash", use_cache=False)
        if not kept:
            try:
                AmazonReviews2023().build(config)
            except ValueError as exc:
                assert f"{path}: no items read: every item lacked text" in str(exc)
                return
            raise AssertionError("a file whose items all lack text must be refused")
        ds = AmazonReviews2023().build(config)
    assert ds.catalog.item_ids().tolist() == [r["parent_asin"] for r in kept]
    avail = ds.catalog.availability(np.arange(len(kept)))
    assert avail.tolist() == [[v is not None for v in views(r)] for r in kept]
    assert ds.skipped == ({"items_without_views": len(records) - len(kept)} if len(kept) < len(records) else {})
