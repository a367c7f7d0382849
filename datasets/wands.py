"""WANDS, the Wayfair ANnotation DataSet (Chen et al., ECIR 2022; github.com/wayfair/WANDS, MIT),
as a text catalog with graded search queries.

Reads the repository's ``dataset/`` folder (``product.csv``, ``query.csv``, ``label.csv``:
tab-separated despite their names): views ``name`` (primary), ``description``, ``features``,
``class_and_category``; gains Exact = 1.0, Partial = 0.5, Irrelevant = 0 (configurable; our reading
of the common 2/1/0 grading, normalised), gain > 0 is relevant; WANDS publishes no query split, so
queries get a random one by `split_seed`, and training interactions are (train query, Exact
product). Malformed input is an error naming the file and line; labels of missing products or
queries, queries with no relevant product and products with no text are skipped and counted.
Input schema and every skip/error rule: docs/data/real-data.md#wands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import option
from ..data.catalog import ViewSlot
from ..data.dataset import MultiViewDataset
from ..data.fingerprint import DataFiles
from ..data.queries import relevance_from_pairs
from ..data.splits import random_split
from . import DATASETS
from ._text_loading import TextEncoderConfig, clean_text, count_skip, join_nonempty, read_table, row_label, text_query_dataset
from .base import DatasetPlugin

PRODUCT_COLUMNS = ("product_id", "product_name", "product_class", "product_description", "product_features")
QUERY_COLUMNS = ("query_id", "query")
LABEL_COLUMNS = ("id", "query_id", "product_id", "label")
LABELS = ("Exact", "Partial", "Irrelevant")


def render_features(text: str | None) -> str | None:
    """``a:b|c:d`` -> ``a: b; c: d`` (pairs without a colon are kept as they are)."""
    if not text:
        return None
    parts = []
    for pair in text.split("|"):
        key, sep, value = pair.partition(":")
        key, value = key.strip(), value.strip()
        if sep and key and value:
            parts.append(f"{key}: {value}")
        elif pair.strip():
            parts.append(pair.strip())
    return clean_text("; ".join(parts), strip_html=False)


def _ids(df, column: str, path: Path) -> list[str]:
    values = df[column].astype(str).str.strip().tolist()
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        if not v.lstrip("-").isdigit():
            raise ValueError(f"{row_label(path, i)}: field {column!r} must be an integer id, got {v!r}")
        if v in seen:
            raise ValueError(f"{row_label(path, i)}: duplicate {column} {v} (first at {row_label(path, seen[v])})")
        seen[v] = i
    return values


@DATASETS.register("wands")
class WANDS(DatasetPlugin):
    """WANDS (Wayfair): text queries with Exact/Partial/Irrelevant judgments over a text catalog
    (name, description, features, class/category)."""

    summary = "WANDS (Wayfair): text queries, Exact/Partial/Irrelevant graded relevance, text catalog"

    @dataclass
    class Config(TextEncoderConfig):
        data_dir: str = option("", "folder holding product.csv, query.csv, label.csv (tab-separated)", "convention")
        gain_exact: float = option(1.0, "gain of an Exact judgment", "our reading", ge=0)
        gain_partial: float = option(0.5, "gain of a Partial judgment (0 = only Exact is relevant)", "our reading", ge=0)
        gain_irrelevant: float = option(0.0, "gain of an Irrelevant judgment", "our reading", ge=0)
        query_val_fraction: float = option(0.1, "fraction of queries in validation", "convention", ge=0)
        query_test_fraction: float = option(0.2, "fraction of queries in test", "convention", ge=0)

        def validate(self) -> None:
            super().validate()
            if self.query_val_fraction + self.query_test_fraction >= 1:
                raise ValueError("wands options 'query_val_fraction' and 'query_test_fraction' must sum below 1")

    @staticmethod
    def files(config: WANDS.Config) -> tuple[Path, dict[str, Path]]:
        """(folder, {product, query, label: file}) the loader reads; a missing one is an error."""
        folder = Path(config.data_dir).expanduser() if config.data_dir else Path.cwd()
        paths = {name: folder / f"{name}.csv" for name in ("product", "query", "label")}
        for p in paths.values():
            if not p.is_file():
                raise FileNotFoundError(f"wands: {p} does not exist (expected product.csv, query.csv, label.csv in {folder})")
        return folder, paths

    def data_files(self, config: WANDS.Config) -> DataFiles:  # type: ignore[override]  # the registry passes each plugin its own Config
        folder, paths = self.files(config)
        return DataFiles({p.name: p for p in paths.values()}, folder.resolve(), ("data_dir", "cache_dir"))

    def build(self, config: WANDS.Config) -> MultiViewDataset:  # type: ignore[override]  # the registry passes each plugin its own Config
        config.validate()
        t0 = time.perf_counter()
        folder, paths = self.files(config)
        products = read_table(paths["product"], sep="\t", required=PRODUCT_COLUMNS)
        queries_df = read_table(paths["query"], sep="\t", required=QUERY_COLUMNS)
        labels_df = read_table(paths["label"], sep="\t", required=LABEL_COLUMNS)
        category_col = next((c for c in ("category hierarchy", "category_hierarchy") if c in products.columns), None)
        if category_col is None:
            raise ValueError(
                f"{paths['product']}: missing column 'category hierarchy'; columns present: {list(products.columns)}"
            )
        skipped: dict[str, int] = {}

        all_pids = _ids(products, "product_id", paths["product"])
        if not all_pids:
            raise ValueError(f"{paths['product']}: no product rows after the header (the catalog would be empty)")
        qids = _ids(queries_df, "query_id", paths["query"])
        _ids(labels_df, "id", paths["label"])
        cols = {c: products[c].astype(str).tolist() for c in PRODUCT_COLUMNS[1:] + (category_col,)}
        all_views = [
            [
                clean_text(cols["product_name"][i], strip_html=False),
                clean_text(cols["product_description"][i]),
                render_features(cols["product_features"][i]),
                join_nonempty([clean_text(cols["product_class"][i], False), clean_text(cols[category_col][i], False)]),
            ]
            for i in range(len(all_pids))
        ]
        # a product whose every text is empty has no view: skipped and counted, like its judgments
        kept_products = [i for i, views in enumerate(all_views) if any(views)]
        count_skip(skipped, "products_without_views", len(all_pids) - len(kept_products))
        if not kept_products:
            raise ValueError(f"{paths['product']}: no product has any non-empty text (the catalog would be empty)")
        viewless = {all_pids[i] for i, views in enumerate(all_views) if not any(views)}
        pids = [all_pids[i] for i in kept_products]
        table = [all_views[i] for i in kept_products]
        item_of = {p: i for i, p in enumerate(pids)}
        query_of = {q: i for i, q in enumerate(qids)}
        gains = {"Exact": config.gain_exact, "Partial": config.gain_partial, "Irrelevant": config.gain_irrelevant}

        l_q = labels_df["query_id"].astype(str).str.strip().tolist()
        l_p = labels_df["product_id"].astype(str).str.strip().tolist()
        l_label = labels_df["label"].astype(str).str.strip().tolist()
        judged: dict[tuple[int, int], int] = {}
        pairs, grades, exact = [], [], []
        for i, (q, p, lab) in enumerate(zip(l_q, l_p, l_label)):
            if lab not in LABELS:
                raise ValueError(f"{row_label(paths['label'], i)}: field 'label' must be one of {LABELS}, got {lab!r}")
            if q not in query_of:
                count_skip(skipped, "judgments_query_missing")
                continue
            if p in viewless:
                count_skip(skipped, "judgments_product_without_views")
                continue
            if p not in item_of:
                count_skip(skipped, "judgments_product_missing")
                continue
            key = (query_of[q], item_of[p])
            if key in judged:
                raise ValueError(
                    f"{row_label(paths['label'], i)}: duplicate judgment of product {p} for query {q} "
                    f"(first at {row_label(paths['label'], judged[key])})"
                )
            judged[key] = i
            if gains[lab] > 0:
                pairs.append(key)
                grades.append(gains[lab])
            if lab == "Exact":
                exact.append(key)

        has_rel = np.zeros(len(qids), dtype=bool)
        for q, _ in pairs:
            has_rel[q] = True
        count_skip(skipped, "queries_without_relevant", int((~has_rel).sum()))
        kept = np.flatnonzero(has_rel)
        if not len(kept):
            raise ValueError(f"wands: no query in {paths['query']} has a relevant product in {paths['product']}")
        new_q = np.cumsum(has_rel) - 1
        pairs_arr = np.array([(new_q[q], it) for q, it in pairs], dtype=np.int64).reshape(-1, 2)
        indptr, rel_items, rel_grades = relevance_from_pairs(len(kept), pairs_arr, np.array(grades, dtype=np.float32))
        f_val, f_test = config.query_val_fraction, config.query_test_fraction
        split = random_split(len(kept), (1.0 - f_val - f_test, f_val, f_test), config.split_seed + 1)
        exact_arr = np.array([(new_q[q], it) for q, it in exact if has_rel[q]], dtype=np.int64).reshape(-1, 2)
        interactions = exact_arr[split[exact_arr[:, 0]] == 0] if len(exact_arr) else exact_arr

        slots = [
            ViewSlot("name", "text", "primary"),
            ViewSlot("description", "text", "auxiliary"),
            ViewSlot("features", "text", "auxiliary"),
            ViewSlot("class_and_category", "text", "auxiliary"),
        ]
        q_text = queries_df["query"].astype(str).tolist()
        notes = [
            f"wands: graded relevance Exact={gains['Exact']}, Partial={gains['Partial']}, "
            f"Irrelevant={gains['Irrelevant']}; products with gain > 0 are relevant; training pairs are "
            f"(train query, Exact product); random query split (seed {config.split_seed}), no published split."
        ]
        return text_query_dataset(
            "wands",
            config,
            slots,
            table,
            pids,
            f"wands {folder}",
            query_ids=np.array([qids[q] for q in kept], dtype=str),
            query_texts=[q_text[q] for q in kept],
            relevance=(indptr, rel_items, rel_grades),
            split=split,
            interactions=interactions,
            files={"data_dir_resolved": str(folder.resolve())},
            started=t0,
            skipped=skipped,
            notes=notes,
        )
