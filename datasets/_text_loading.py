"""Shared pieces of the loaders for published e-commerce formats (Amazon Reviews 2023, ESCI,
WANDS): encoder options, text clean-up, table reading with row-precise errors, splits.

Not a plugin (the leading underscore keeps `import_plugins` from registering it).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..backbones import Backbone, create_backbone
from ..config import option
from ..feature_cache import FeatureCache
from ..splits import random_split
from .base import DatasetConfig

_TAG = re.compile(r"<[^>]{0,500}>")
_SPACE = re.compile(r"\s+")


@dataclass
class TextEncoderConfig(DatasetConfig):
    """Options every text-catalog loader shares: the backbone and the feature cache."""

    text_backbone: str = option("minilm", "backbone spec for texts (views and queries)", "SPEC")
    cache_dir: str = option("", "feature cache folder (empty: $FTBENCH_CACHE_DIR or ~/.cache/ftbench/features)", "convention")
    use_cache: bool = option(True, "read and write the feature cache", "convention")
    device: str = option("auto", "device of the backbones (auto = cuda if available)", "convention")
    batch_size: int = option(32, "backbone batch size", "convention")
    item_val_fraction: float = option(0.1, "fraction of items in the validation split (cross-view model selection)", "convention")
    item_test_fraction: float = option(0.1, "fraction of items in the test split (cross-view tasks)", "convention")

    def validate(self) -> None:
        for name in ("item_val_fraction", "item_test_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"option {name!r} must be in [0, 1), got {v}")
        if self.item_val_fraction + self.item_test_fraction >= 1.0:
            raise ValueError("options 'item_val_fraction' + 'item_test_fraction' must leave some training items")
        if self.batch_size < 1:
            raise ValueError(f"option 'batch_size' must be >= 1, got {self.batch_size}")

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


def read_table(path: Path, sep: str | None = None, required: Iterable[str] = ()):
    """A pandas DataFrame of strings ('' for missing) from a parquet, CSV or TSV file; a missing
    required column is an error naming the file and the columns it has."""
    import pandas as pd

    name = path.name.lower()
    if name.endswith(".parquet"):
        try:
            df = pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or give the CSV export ({exc})") from None
        df = df.astype(object).where(df.notna(), "")
    else:
        if sep is None:
            sep = "\t" if ".tsv" in name else ","
        try:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
        except pd.errors.ParserError as exc:
            raise ValueError(f"{path}: cannot be parsed as a {'tab' if sep == chr(9) else 'comma'}-separated table: {exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns present: {list(df.columns)}")
    return df


def row_label(path: Path, i: int) -> str:
    """How an error names data row `i` (0-based) of `path`: parquet rows are counted from 1;
    for CSV/TSV the line number assumes no field spans lines (header = line 1)."""
    if path.name.lower().endswith(".parquet"):
        return f"{path}, row {i + 1}"
    return f"{path}, line {i + 2}"


def count_skip(skipped: dict[str, int], key: str, n: int = 1) -> None:
    if n:
        skipped[key] = skipped.get(key, 0) + n
