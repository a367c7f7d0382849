"""Amazon Shopping Queries Dataset, "ESCI" (Reddy et al. 2022, arXiv 2206.06588;
github.com/amazon-science/esci-data), as a text catalog with graded search queries.

Reads the published examples and products files (``.parquet`` or ``.csv``) of one `locale`: views
``title`` (primary), ``bullet_points``, ``description`` (HTML stripped), ``brand_and_color``;
each judged product has its label's gain (default E = 1.0, S = 0.1, C = 0.01, I = 0.0, the paper's
Task 1 nDCG gains), gain > 0 is relevant; the published ``split`` column gives the query split
(val drawn from train), and training interactions are (train query, E product). Malformed input
is an error naming the file and row; judgments of missing or empty products and queries left with
no relevant product are skipped and counted in ``skipped``. Input schema, splits and every
skip/error rule: docs/data/real-data.md#esci.
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
from ._text_loading import (
    TextEncoderConfig,
    clean_text,
    count_skip,
    find_file,
    join_nonempty,
    read_table,
    row_label,
    text_query_dataset,
)
from .base import DatasetPlugin

EXAMPLES = "shopping_queries_dataset_examples"
PRODUCTS = "shopping_queries_dataset_products"
EXAMPLE_COLUMNS = ("query_id", "query", "product_id", "product_locale", "esci_label")
PRODUCT_COLUMNS = (
    "product_id",
    "product_locale",
    "product_title",
    "product_description",
    "product_bullet_point",
    "product_brand",
    "product_color",
)
LABELS = ("E", "S", "C", "I")


@DATASETS.register("esci")
class ESCI(DatasetPlugin):
    """Amazon Shopping Queries (ESCI): text queries with E/S/C/I graded judgments over a text
    catalog (title, bullets, description, brand/colour)."""

    summary = "Amazon Shopping Queries (ESCI): text queries, E/S/C/I graded relevance, text catalog"

    @dataclass
    class Config(TextEncoderConfig):
        data_dir: str = option("", "folder holding shopping_queries_dataset_{examples,products}.parquet or .csv", "convention")
        locale: str = option("us", "product_locale to keep", "paper", choices=("us", "es", "jp"))
        version: str = option(
            "small",
            "examples to keep: small_version == 1 (Task 1, reduced), large_version == 1, or all",
            "paper",
            choices=("small", "large", "all"),
        )
        gain_exact: float = option(1.0, "gain of an E (exact) judgment", "paper", ge=0)
        gain_substitute: float = option(0.1, "gain of an S (substitute) judgment", "paper", ge=0)
        gain_complement: float = option(0.01, "gain of a C (complement) judgment", "paper", ge=0)
        gain_irrelevant: float = option(0.0, "gain of an I (irrelevant) judgment", "paper", ge=0)
        query_val_fraction: float = option(
            0.1, "share of the published train queries moved to validation", "convention", ge=0, lt=1
        )
        max_queries: int = option(0, "keep at most this many queries, drawn with split_seed (0 = all)", "convention", ge=0)

        def gains(self) -> dict[str, float]:
            return {"E": self.gain_exact, "S": self.gain_substitute, "C": self.gain_complement, "I": self.gain_irrelevant}

    @staticmethod
    def files(config: ESCI.Config) -> tuple[Path, Path, Path]:
        """(folder, examples file, products file) the loader reads."""
        folder = Path(config.data_dir).expanduser() if config.data_dir else Path.cwd()
        return folder, find_file(folder, EXAMPLES, "esci"), find_file(folder, PRODUCTS, "esci")

    def data_files(self, config: ESCI.Config) -> DataFiles:  # type: ignore[override]  # the registry passes each plugin its own Config
        folder, ex_path, pr_path = self.files(config)
        return DataFiles({"examples": ex_path, "products": pr_path}, folder.resolve(), ("data_dir", "cache_dir"))

    def build(self, config: ESCI.Config) -> MultiViewDataset:  # type: ignore[override]  # the registry passes each plugin its own Config
        config.validate()
        t0 = time.perf_counter()
        _, ex_path, pr_path = self.files(config)
        examples = read_table(ex_path, required=EXAMPLE_COLUMNS)
        products = read_table(pr_path, required=PRODUCT_COLUMNS)
        skipped: dict[str, int] = {}
        rng = np.random.default_rng(np.random.SeedSequence([config.split_seed, 0xE5C1]))

        # -- examples: filter, validate -----------------------------------------------------
        keep = (examples["product_locale"].astype(str) == config.locale).to_numpy()
        if config.version != "all":
            version_col = f"{config.version}_version"
            if version_col not in examples.columns:
                raise ValueError(
                    f"{ex_path}: missing column {version_col!r} needed by version={config.version!r} (or use version=all)"
                )
            keep = keep & examples[version_col].astype(str).isin(["1", "1.0", "True", "true"]).to_numpy()
        rows = np.flatnonzero(keep)
        labels = examples["esci_label"].astype(str).to_numpy()
        bad = [i for i in rows if labels[i] not in LABELS]
        if bad:
            raise ValueError(f"{row_label(ex_path, bad[0])}: field 'esci_label' must be one of {LABELS}, got {labels[bad[0]]!r}")
        qids = examples["query_id"].astype(str).to_numpy()
        qtext = examples["query"].astype(str).to_numpy()
        pids = examples["product_id"].astype(str).to_numpy()
        has_split = "split" in examples.columns
        psplit = examples["split"].astype(str).to_numpy() if has_split else None

        query_index: dict[str, int] = {}
        query_rows: list[int | np.integer] = []  # first row of each query
        for i in rows:
            q = qids[i]
            if q not in query_index:
                query_index[q] = len(query_rows)
                query_rows.append(i)
            elif qtext[query_rows[query_index[q]]] != qtext[i]:
                raise ValueError(
                    f"{row_label(ex_path, i)}: query_id {q!r} has text {qtext[i]!r}, but "
                    f"{qtext[query_rows[query_index[q]]]!r} at {row_label(ex_path, query_rows[query_index[q]])}"
                )
        if config.max_queries and len(query_rows) > config.max_queries:
            chosen = set(np.sort(rng.choice(len(query_rows), config.max_queries, replace=False)).tolist())
            kept_q = [q for q, j in query_index.items() if j in chosen]
            query_index = {q: k for k, q in enumerate(kept_q)}
            query_rows = [query_rows[j] for j in sorted(chosen)]
            rows = np.array([i for i in rows if qids[i] in query_index], dtype=np.int64)

        # -- products --------------------------------------------------------------------------
        locale_rows = np.flatnonzero((products["product_locale"].astype(str) == config.locale).to_numpy())
        ppid = products["product_id"].astype(str).to_numpy()
        product_row: dict[str, int | np.integer] = {}
        for i in locale_rows:
            if ppid[i] in product_row:
                raise ValueError(
                    f"{row_label(pr_path, i)}: duplicate product ({ppid[i]!r}, {config.locale!r}), "
                    f"first at {row_label(pr_path, product_row[ppid[i]])}"
                )
            product_row[ppid[i]] = i

        col = {c: products[c].astype(str).to_numpy() for c in PRODUCT_COLUMNS[2:]}
        views_of: dict[str, list] = {}

        def product_views(pid: str) -> list:
            """The four text views of a product (None where empty), computed once."""
            if pid not in views_of:
                r = product_row[pid]
                views_of[pid] = [
                    clean_text(col["product_title"][r]),
                    clean_text(col["product_bullet_point"][r]),
                    clean_text(col["product_description"][r]),
                    join_nonempty([clean_text(col["product_brand"][r]), clean_text(col["product_color"][r])]),
                ]
            return views_of[pid]

        gains = config.gains()
        judged: dict[tuple[int, str], int | np.integer] = {}
        item_index: dict[str, int] = {}
        pairs: list[tuple[int, int]] = []
        grades: list[float] = []
        exact: list[tuple[int, int]] = []
        for i in rows:
            q = query_index[qids[i]]
            p = pids[i]
            if (q, p) in judged:
                raise ValueError(
                    f"{row_label(ex_path, i)}: duplicate judgment of product {p!r} for query_id {qids[i]!r} (first at {row_label(ex_path, judged[(q, p)])})"
                )
            judged[(q, p)] = i
            if p not in product_row:
                count_skip(skipped, "judgments_product_missing")
                continue
            if not any(product_views(p)):  # every text empty: the product has no view
                count_skip(skipped, "judgments_product_without_views")
                continue
            item = item_index.setdefault(p, len(item_index))
            g = gains[labels[i]]
            if g > 0:
                pairs.append((q, item))
                grades.append(g)
            if labels[i] == "E":
                exact.append((q, item))
        if not item_index:
            raise ValueError(f"esci: no judged product of locale {config.locale!r} is in {pr_path}")

        # -- queries: drop those with no relevant product, renumber ------------------------------
        has_rel = np.zeros(len(query_rows), dtype=bool)
        for q, _ in pairs:
            has_rel[q] = True
        count_skip(skipped, "queries_without_relevant", int((~has_rel).sum()))
        new_q = np.cumsum(has_rel) - 1
        kept = np.flatnonzero(has_rel)
        if not len(kept):
            raise ValueError(f"esci: no query of locale {config.locale!r} has a relevant product")
        pairs_arr = np.array([(new_q[q], it) for q, it in pairs], dtype=np.int64).reshape(-1, 2)
        indptr, rel_items, rel_grades = relevance_from_pairs(len(kept), pairs_arr, np.array(grades, dtype=np.float32))

        split = np.zeros(len(kept), dtype=np.int8)
        if has_split:
            assert psplit is not None  # read with the split column
            published = np.array([psplit[query_rows[q]] for q in kept])
            unknown = sorted(set(published) - {"train", "test"})
            if unknown:
                q0 = kept[np.flatnonzero(published == unknown[0])[0]]
                raise ValueError(f"{row_label(ex_path, query_rows[q0])}: field 'split' must be train or test, got {unknown[0]!r}")
            split[published == "test"] = 2
            train = np.flatnonzero(published == "train")
            n_val = int(round(config.query_val_fraction * len(train)))
            split[rng.permutation(train)[:n_val]] = 1
        else:
            f = config.query_val_fraction
            split = random_split(len(kept), (1.0 - 2 * f, f, f), config.split_seed) if f > 0 else split
        exact_arr = np.array([(new_q[q], it) for q, it in exact if has_rel[q]], dtype=np.int64).reshape(-1, 2)
        interactions = exact_arr[split[exact_arr[:, 0]] == 0] if len(exact_arr) else exact_arr

        # -- features ---------------------------------------------------------------------------
        items = list(item_index)
        table = [product_views(p) for p in items]
        slots = [
            ViewSlot("title", "text", "primary"),
            ViewSlot("bullet_points", "text", "auxiliary"),
            ViewSlot("description", "text", "auxiliary"),
            ViewSlot("brand_and_color", "text", "auxiliary"),
        ]
        notes = [
            f"esci ({config.locale}, {config.version}): graded relevance E={gains['E']}, S={gains['S']}, "
            f"C={gains['C']}, I={gains['I']}; products with gain > 0 are relevant; training pairs are "
            "(train query, E product); query split from the published split column "
            f"({'present' if has_split else 'absent: random split'}), val drawn from train with seed {config.split_seed}."
        ]
        return text_query_dataset(
            "esci",
            config,
            slots,
            table,
            items,
            f"esci {config.locale}",
            query_ids=np.array([qids[query_rows[q]] for q in kept], dtype=str),
            query_texts=[qtext[query_rows[q]] for q in kept],
            relevance=(indptr, rel_items, rel_grades),
            split=split,
            interactions=interactions,
            files={"examples_file": str(ex_path), "products_file": str(pr_path)},
            started=t0,
            skipped=skipped,
            notes=notes,
        )
