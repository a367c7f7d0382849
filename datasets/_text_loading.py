"""Shared pieces of the loaders for published e-commerce formats (Amazon Reviews 2023, ESCI,
WANDS): encoder options, text clean-up, table reading with row-precise errors, splits.

Not a plugin (the leading underscore keeps `import_plugins` from registering it).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import option
from ..data.dataset import MultiViewDataset
from ..data.queries import QuerySet
from ..data.splits import random_split
from ..features.backbones import Backbone, create_backbone
from ..features.cache import FeatureCache, assemble_catalog
from .base import DatasetConfig

_TAG = re.compile(r"<[^>]{0,500}>")
_SPACE = re.compile(r"\s+")


@dataclass
class TextEncoderConfig(DatasetConfig):
    """Options every text-catalog loader shares: the backbone and the feature cache."""

    text_backbone: str = option("minilm", "backbone spec for texts (views and queries)", "protocol")
    cache_dir: str = option("", "feature cache folder (empty: $FTBENCH_CACHE_DIR or ~/.cache/ftbench/features)", "convention")
    use_cache: bool = option(True, "read and write the feature cache", "convention")
    device: str = option("auto", "device of the backbones (auto = cuda if available)", "convention")
    batch_size: int = option(32, "backbone batch size", "convention", ge=1)
    item_val_fraction: float = option(
        0.1, "fraction of items in the validation split (cross-view model selection)", "convention", ge=0, lt=1
    )
    item_test_fraction: float = option(0.1, "fraction of items in the test split (cross-view tasks)", "convention", ge=0, lt=1)

    def validate(self) -> None:
        super().validate()
        if self.item_val_fraction + self.item_test_fraction >= 1.0:
            raise ValueError("options 'item_val_fraction' + 'item_test_fraction' must leave some training items")

    def backbone(self, modality: str = "text", spec: str | None = None) -> Backbone:
        return create_backbone(spec or self.text_backbone, modality, self.device, self.batch_size)

    def cache(self) -> FeatureCache:
        return FeatureCache(self.cache_dir or None, enabled=self.use_cache)

    def item_split(self, n: int) -> np.ndarray:
        f_val, f_test = self.item_val_fraction, self.item_test_fraction
        return random_split(n, (1.0 - f_val - f_test, f_val, f_test), self.split_seed)


def clean_text(value: Any, strip_html: bool = True) -> str | None:
    """A view's text: lists joined with spaces (bullets), HTML tags dropped and entities
    unescaped (`strip_html`), whitespace collapsed; None for missing or empty values."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v is not None)
    text = str(value)
    if strip_html:
        text = html.unescape(_TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    return text or None


def join_nonempty(parts: Iterable[str | None], sep: str = "; ") -> str | None:
    kept = [p for p in parts if p]
    return sep.join(kept) if kept else None


def find_file(folder: Path, stem: str, what: str) -> Path:
    """``folder/stem`` with a .parquet, .csv, .tsv or .csv.gz suffix (first found)."""
    for suffix in (".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"{what}: no {stem}.parquet or {stem}.csv in {folder}")


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a text file (gzip-compressed if its name ends in
    ``.gz``), decoded one line at a time so that a byte that is not UTF-8 is reported at its
    exact line; a leading byte-order mark is dropped. Errors are ValueErrors naming the file and
    line: a byte that is not UTF-8, a damaged or truncated gzip stream."""
    import gzip
    import zlib

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    line_no = 0
    try:
        with opener(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(
                        f"{path}, line {line_no}: not valid UTF-8 (byte {raw[exc.start : exc.start + 1]!r} at "
                        f"column {exc.start + 1})"
                    ) from None
                yield line_no, text
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}, after line {line_no}: damaged or truncated gzip file ({type(exc).__name__}: {exc})") from None


def check_table_rows(path: Path, sep: str) -> None:
    """Refuse a CSV/TSV file whose records do not all have the header's number of fields.

    pandas fills a short record with empty strings, so a truncated file (its last record cut
    off) or a record with a lost separator would otherwise load silently with empty fields.
    This pass reads the file once with the `csv` module (the quoting rules pandas uses: `"`
    quotes a field, doubled to escape it) and raises a ValueError naming the file and line; via
    `utf8_lines` it also reports a byte that is not UTF-8 at its line. An empty file is an error;
    blank lines are skipped, as pandas skips them.
    """
    import csv

    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # long descriptions are legitimate
    kind = "tab" if sep == "\t" else "comma"
    where: dict[str, Any] = {"line": 0, "last": ""}  # the reader's position: line number, its text

    def lines() -> Iterator[str]:
        for line_no, text in utf8_lines(path):
            where["line"], where["last"] = line_no, text
            yield text

    reader = csv.reader(lines(), delimiter=sep, quotechar='"', doublequote=True, strict=False)
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty; expected a header line of {kind}-separated column names")
        width = len(header)
        while True:
            first = where["line"] + 1  # the line this record starts on
            row = next(reader, None)
            if row is None:
                break
            if row and len(row) != width:
                last = where["line"]
                if last > first:
                    span = f"lines {first}-{last} (a quote '\"' opened on line {first} may be unbalanced)"
                else:
                    span = f"line {first}"
                cut = len(row) < width and not where["last"].endswith("\n") and next(reader, None) is None
                raise ValueError(
                    f"{path}, {span}: expected {width} {kind}-separated fields (as in the header), "
                    f"got {len(row)}" + (" - the file looks truncated" if cut else "")
                )
    except csv.Error as exc:
        raise ValueError(f"{path}, line {where['line']}: cannot be read as a {kind}-separated table ({exc})") from None


def read_table(path: Path, sep: str | None = None, required: Iterable[str] = ()):
    """A pandas DataFrame of strings ('' for missing) from a parquet, CSV or TSV file; a missing
    required column, a record with the wrong number of fields (`check_table_rows`), a byte that
    is not UTF-8 or an unreadable parquet file is an error naming the file."""
    import pandas as pd  # heavy: pandas

    name = path.name.lower()
    if name.endswith(".parquet"):
        try:
            df = pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(
                f"{path}: reading parquet needs pyarrow (pip install pyarrow), or give the CSV export ({exc})"
            ) from None
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for damaged files
            raise ValueError(f"{path}: cannot be read as parquet ({type(exc).__name__}: {exc})") from None
        df = df.astype(object).where(df.notna(), "")
    else:
        if sep is None:
            sep = "\t" if ".tsv" in name else ","
        check_table_rows(path, sep)
        try:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{path}: cannot be parsed as a {'tab' if sep == chr(9) else 'comma'}-separated table: {exc}"
            ) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns present: {list(df.columns)}")
    return df


def row_label(path: Path, i: int | np.integer) -> str:
    """How an error names data row `i` (0-based) of `path`: parquet rows are counted from 1;
    for CSV/TSV the line number assumes no field spans lines (header = line 1)."""
    if path.name.lower().endswith(".parquet"):
        return f"{path}, row {i + 1}"
    return f"{path}, line {i + 2}"


def count_skip(skipped: dict[str, int], key: str, n: int = 1) -> None:
    if n:
        skipped[key] = skipped.get(key, 0) + n


def text_query_dataset(
    name: str,
    config: TextEncoderConfig,
    slots: list,
    table: Sequence[Sequence[str | None]],
    item_ids: list,
    label: str,
    *,
    query_ids: np.ndarray,
    query_texts: list[str],
    relevance: tuple[np.ndarray, np.ndarray, np.ndarray],
    split: np.ndarray,
    interactions: np.ndarray,
    files: dict[str, str],
    started: float,
    skipped: dict[str, int],
    notes: list[str],
):
    """The common tail of a text-catalog loader with graded queries (ESCI, WANDS): encode the
    text views of `table` (one row of view texts per item of `item_ids`, None where empty) and the queries through
    the feature cache, build the QuerySet (`relevance` = CSR indptr, items, grades) and the
    recorded info (`files` first, then the backbone, cache and load-time facts), and return the
    data set. `label` names the catalog in progress and error messages."""
    import time
    from dataclasses import asdict

    cache = config.cache()
    text_backbone = config.backbone("text")
    catalog = assemble_catalog(slots, table, {"text": text_backbone}, cache, item_ids, label)

    indptr, rel_items, rel_grades = relevance
    queries = QuerySet(
        ids=np.asarray(query_ids, dtype=str),
        modality="text",
        features=cache.encode(text_backbone, query_texts, "query", f"{name} queries"),
        relevant_indptr=indptr,
        relevant_items=rel_items,
        relevant_grades=rel_grades,
        split=split,
        interactions=interactions,
    )
    info = asdict(config)
    info.update(files)
    info.update(
        {
            "text_backbone_fingerprint": text_backbone.fingerprint(),
            "cache_dir_resolved": str(cache.root) if config.use_cache else None,
            "features_encoded": cache.stats.encoded,
            "features_from_cache": cache.stats.hits,
            "load_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return MultiViewDataset(
        name=name,
        catalog=catalog,
        item_split=config.item_split(catalog.num_items),
        queries=queries,
        config=info,
        skipped=skipped,
        notes=notes,
    )
