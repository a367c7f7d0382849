"""Your own product catalog, read from one documented folder layout (a multi-view extension of
BEIR's ``corpus.jsonl`` / ``queries.jsonl`` / ``qrels/*.tsv``).

Layout (every path is relative to the folder; only ``items.jsonl``, ``items.parquet`` or
``items.csv`` is required; docs/catalog.md describes it with the JSON Schema of ``catalog.json``, and
``ftbench data init DIR`` writes a small example to edit)::

    DIR/
      catalog.json          views: field, modality, role, slot order; task names (optional: inferred)
      items.jsonl           one JSON object per item (or items.parquet, same columns; or
                            items.csv: a header of field names, one item per row)
      queries.jsonl         {"id": ..., "text": ...} or {"id": ..., "image": "path"} per line
      qrels/train.tsv       query-id <TAB> corpus-id <TAB> score    (BEIR; header line optional)
      qrels/dev.tsv         or the TREC shape: qid 0 docid grade    (whitespace separated)
      qrels/test.tsv
      interactions.tsv      optional: query-id <TAB> corpus-id per interaction (repeats =
                            popularity; training uses those of train queries only);
                            default: the train qrels with grade > 0
      vectors/<name>.npy    optional precomputed vectors [n, D] of one view, with
      vectors/<name>.ids    its item ids, one per line, row order (queries: vectors/queries.*)
      images/...            image files named by items.jsonl / queries.jsonl

``id`` is required and unique; ``split`` is optional (a seeded random item split otherwise; some
items with one and some without is an error); every other field is a view, a list-valued field one
slot per position (``photos_1``, ...; in ``items.csv`` numbered columns). ``catalog.json`` names the
views (primary first, then auxiliary in the order ``--views V`` keeps them), else they are inferred
and printed. Every query needs a line in exactly one qrels file, which gives its split; only the
pairs of train queries are trained on, and an item trained on is a train item. Every defect is an
error naming the file, the line and the field. The format in full, with examples: docs/catalog.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..config import option
from ..data.catalog import ArrayCatalog, Role, ViewSlot
from ..data.dataset import MultiViewDataset
from ..data.fingerprint import IMAGE_SUFFIXES, DataFiles, suffix_filter, walk_files
from ..data.queries import QuerySet, relevance_from_pairs
from ..features.cache import encode_views
from . import DATASETS
from ._text_loading import TextEncoderConfig, count_skip, utf8_lines
from .base import DatasetPlugin

#: the files of the layout besides images and vectors, by their path in the folder (data fingerprint)
LAYOUT_FILES = (
    "catalog.json",
    "items.jsonl",
    "items.parquet",
    "items.csv",
    "queries.jsonl",
    "qrels/train.tsv",
    "qrels/dev.tsv",
    "qrels/test.tsv",
    "interactions.tsv",
)
#: an image given as a URL (http://, https://, s3://, file://, ...): never fetched
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
RESERVED_FIELDS = ("id", "split")
ITEM_SPLITS = {"train": 0, "dev": 1, "val": 1, "validation": 1, "test": 2}
QRELS_FILES = (("train", 0), ("dev", 1), ("test", 2))
CROSS_VIEW_CHOICES = ("test", "all")


@dataclass
class ViewSpec:
    """One declared view: where it comes from (`field` of the item records, or `vectors`), its
    slot name, modality and role."""

    slot: str
    modality: str
    role: Role
    field: str | None = None
    vectors: str | None = None


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) of each non-blank line; errors name the file and line."""
    out = []
    for line_no, text in utf8_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}")
        out.append((line_no, record))
    return out


#: a CSV column ``NAME_K`` (K = 1, 2, ...): position K of the list-valued field NAME
NUMBERED_COLUMN = re.compile(r"^(?P<field>.+)_(?P<k>[1-9][0-9]*)$")


def csv_list_fields(columns: list[str], declared: set[str]) -> dict[str, list[str]]:
    """{field: its columns in position order} for the list-valued fields of an items.csv header:
    columns ``NAME_1 .. NAME_n`` (numbered from 1 without gaps) with no column ``NAME`` and none of
    them a field that catalog.json names (`declared`)."""
    numbered: dict[str, dict[int, str]] = {}
    for column in columns:
        match = NUMBERED_COLUMN.match(column)
        if match and column not in declared:
            numbered.setdefault(match["field"], {})[int(match["k"])] = column
    return {
        field: [by_k[k] for k in sorted(by_k)]
        for field, by_k in numbered.items()
        if field not in columns and sorted(by_k) == list(range(1, len(by_k) + 1))
    }


def read_items_csv(path: Path, declared: set[str]) -> list[tuple[str, dict]]:
    """[(where, record)] of items.csv: a header of field names, then one item per row (RFC 4180
    quoting: a quoted cell may hold commas and line breaks). An empty cell is a missing view;
    columns ``NAME_1, NAME_2, ...`` are the list-valued field NAME (`csv_list_fields`), an empty
    position a missing view there."""
    import csv

    reader = csv.reader((text for _, text in utf8_lines(path)), strict=True)  # strict: an unclosed quote is an error

    def next_row() -> list[str] | None:
        try:
            return next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({exc})") from None

    header = next_row()
    if header is None:
        return []
    columns = [c.strip() for c in header]
    for k, column in enumerate(columns):
        if not column:
            raise ValueError(f"{path}, line 1: column {k + 1} of the header has no name")
        if column in columns[:k]:
            raise ValueError(f"{path}, line 1: column {column!r} appears twice in the header")
    if "id" not in columns:
        raise ValueError(f"{path}, line 1: the header has no 'id' column (every item needs an id); columns: {columns}")
    lists = csv_list_fields(columns, declared)
    in_list = {c: (field, k) for field, cols in lists.items() for k, c in enumerate(cols)}
    records = []
    start = reader.line_num + 1
    while (row := next_row()) is not None:
        where, start = f"{path}, line {start}", reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            raise ValueError(f"{where}: {len(row)} cells, but the header names {len(columns)} columns")
        record: dict[str, Any] = {}
        for column, cell in zip(columns, row):
            if column in in_list:
                field, k = in_list[column]
                record.setdefault(field, [None] * len(lists[field]))[k] = cell if cell.strip() else None
            elif cell.strip():
                record[column] = cell
        for field in lists:
            values = record.get(field)
            if values is not None:
                while values and values[-1] is None:
                    values.pop()
                if not values:
                    del record[field]
        records.append((where, record))
    return records


def read_items(root: Path) -> tuple[Path, list[tuple[str, dict]]]:
    """(file, [(where, record)]) from items.jsonl, items.parquet or items.csv."""
    jsonl, parquet, table = root / "items.jsonl", root / "items.parquet", root / "items.csv"
    present = [p.name for p in (jsonl, parquet, table) if p.is_file()]
    if len(present) > 1:
        raise ValueError(f"catalog: {root} holds {' and '.join(present)}; keep one")
    if table.is_file():
        views = read_manifest(root).get("views")
        declared = (
            {v["field"] for v in views if isinstance(v, dict) and isinstance(v.get("field"), str)}
            if isinstance(views, list)
            else set()
        )
        return table, read_items_csv(table, declared)
    if jsonl.is_file():
        return jsonl, [(f"{jsonl}, line {n}", r) for n, r in read_jsonl(jsonl)]
    if parquet.is_file():
        import pandas as pd  # heavy: pandas

        try:
            df = pd.read_parquet(parquet)
        except ImportError as exc:
            raise ImportError(f"{parquet}: reading parquet needs pyarrow (pip install pyarrow) ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for damaged files
            raise ValueError(f"{parquet}: cannot be read as parquet ({type(exc).__name__}: {exc})") from None
        records = []
        for i, row in enumerate(df.to_dict("records")):
            rec = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
            rec = {k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}
            records.append((f"{parquet}, row {i + 1}", rec))
        return parquet, records
    raise FileNotFoundError(
        f"catalog: {root} has no items.jsonl, items.parquet or items.csv; point --data-dir at a folder in the catalog "
        "layout (docs/catalog.md), or write one with `ftbench data convert`"
    )


def _is_url(value: str) -> bool:
    return bool(URL_SCHEME.match(value))


def _is_image_path(value: Any) -> bool:
    """An image file name, or the URL of one (``https://cdn/x.jpg?w=200``: its path ends in an
    image suffix), so that a field of image URLs is an image view and gets the URL error."""
    if not isinstance(value, str):
        return False
    if _is_url(value):
        value = value.split("?", 1)[0].split("#", 1)[0]
    return value.lower().endswith(IMAGE_SUFFIXES)


def infer_views(records: list[tuple[str, dict]]) -> list[ViewSpec]:
    """Views from the fields of the item records (see the module docstring)."""
    fields: dict[str, str] = {}
    for _, rec in records:
        for key, value in rec.items():
            if key in RESERVED_FIELDS or value is None or value == "" or value == []:
                continue
            values = value if isinstance(value, list) else [value]
            kind = "image" if all(_is_image_path(v) for v in values if v) else "text"
            fields.setdefault(key, kind)
    images = [f for f, k in fields.items() if k == "image"]
    texts = [f for f, k in fields.items() if k == "text"]
    primary_text = "title" if "title" in texts else (texts[0] if texts else None)
    views = []
    if images:
        views.append(ViewSpec(images[0], "image", "primary", field=images[0]))
    if primary_text:
        views.append(ViewSpec(primary_text, "text", "primary", field=primary_text))
    for f in fields:
        if f not in (primary_text, images[0] if images else None):
            views.append(ViewSpec(f, fields[f], "auxiliary", field=f))
    return views


def read_manifest(root: Path) -> dict:
    path = root / "catalog.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object with 'views', 'query_task', 'cross_view_items'")
    known = {"name", "views", "query_task", "cross_view_items", "queries", "source"}
    unknown = sorted(set(manifest) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    cv = manifest.get("cross_view_items", "test")
    if cv not in CROSS_VIEW_CHOICES:
        raise ValueError(f"{path}: field 'cross_view_items' must be one of {list(CROSS_VIEW_CHOICES)}, got {cv!r}")
    return manifest


#: the JSON Schema of catalog.json (docs/catalog.md shows it; `ftbench data validate` checks against it)
MANIFEST_SCHEMA = Path(__file__).with_name("catalog.schema.json")


def manifest_schema_errors(path: Path) -> list[str]:
    """The places where the catalog.json at `path` breaks `MANIFEST_SCHEMA`, one line each
    (``catalog.json: views[1].role: 'main' is not one of ['primary', 'auxiliary']``), in document
    order; [] when it conforms. A file that is not JSON is one such line."""
    import jsonschema  # heavy: jsonschema, for validation only

    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path}: not valid JSON ({exc})"]
    schema = json.loads(MANIFEST_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for error in sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = error.message
        if error.validator == "oneOf":  # jsonschema's own words name neither alternative
            message = "give exactly one of 'field' (a field of the item records) or 'vectors' (a .npy file)"
        elif error.validator == "not" and error.instance in RESERVED_FIELDS:
            message = f"field {error.instance!r} is reserved (the item's {error.instance}), not a view"
        out.append(f"{path}: {where or 'top level'}: {message}")
    return out


def manifest_views(path: Path, entries: Any) -> list[ViewSpec]:
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: field 'views' must be a non-empty list of view objects")
    views = []
    for k, entry in enumerate(entries):
        where = f"{path}: views[{k}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object with field/vectors, modality, role")
        unknown = sorted(set(entry) - {"field", "vectors", "slot", "modality", "role"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}")
        field, vectors = entry.get("field"), entry.get("vectors")
        if (field is None) == (vectors is None):
            raise ValueError(f"{where}: give exactly one of 'field' (a field of the item records) or 'vectors' (a .npy file)")
        if field in RESERVED_FIELDS:
            raise ValueError(f"{where}: field {field!r} is reserved (the item's {field}), not a view")
        role = entry.get("role")
        if role not in ("primary", "auxiliary"):
            raise ValueError(f"{where}: field 'role' must be 'primary' or 'auxiliary', got {role!r}")
        modality = entry.get("modality")
        if not isinstance(modality, str) or not modality:
            raise ValueError(f"{where}: field 'modality' must be a name (image, text, or any name for vectors)")
        if field is not None and modality not in ("image", "text"):
            raise ValueError(
                f"{where}: a view read from field {field!r} must be 'image' or 'text' (other modalities come from 'vectors')"
            )
        slot = entry.get("slot") or field or Path(cast(str, vectors)).stem  # vectors is given where field is not
        views.append(ViewSpec(str(slot), modality, role, field=field, vectors=vectors))
    return views


def load_vectors(root: Path, rel: str, what: str) -> tuple[np.ndarray, list[str]]:
    """[n, D] float32 array of ``rel`` and its ids from ``<rel without .npy>.ids``."""
    path = root / rel
    ids_path = path.with_suffix(".ids")
    if not path.is_file():
        raise FileNotFoundError(f"catalog: {what}: vectors file {path} does not exist")
    if not ids_path.is_file():
        raise FileNotFoundError(f"catalog: {what}: {path} needs its ids file {ids_path} (one id per line, row order)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a numeric .npy array ({exc})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: expected a 2-D numeric array [n, D], got shape {array.shape}, dtype {array.dtype}")
    ids = [t.rstrip("\r\n") for _, t in utf8_lines(ids_path)]
    while ids and not ids[-1]:
        ids.pop()
    if len(ids) != len(array):
        raise ValueError(f"{ids_path}: {len(ids)} ids for the {len(array)} rows of {path.name}")
    return array.astype(np.float32), ids


def read_qrels(path: Path) -> list[tuple[str, str, float, int]]:
    """(query id, item id, grade, line) of a qrels file: BEIR ``query-id<TAB>corpus-id<TAB>score``
    (a header line is skipped) or TREC ``qid iter docid grade``."""
    out = []
    for line_no, text in utf8_lines(path):
        if not text.strip():
            continue
        parts = text.rstrip("\r\n").split("\t") if "\t" in text else text.split()
        if line_no == 1 and len(parts) >= 3 and parts[-1].strip().lower() in ("score", "relevance", "grade", "label"):
            continue
        if len(parts) == 4:
            qid, _, docid, grade = parts
        elif len(parts) == 3:
            qid, docid, grade = parts
        else:
            raise ValueError(
                f"{path}, line {line_no}: expected 'query-id<TAB>corpus-id<TAB>score' (BEIR) or "
                f"'qid 0 docid grade' (TREC), got {len(parts)} field(s)"
            )
        try:
            g = float(grade)
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: field 'score' must be a number, got {grade.strip()!r}") from None
        if not np.isfinite(g) or g < 0:
            raise ValueError(f"{path}, line {line_no}: field 'score' must be a finite number >= 0, got {grade.strip()!r}")
        out.append((qid.strip(), docid.strip(), g, line_no))
    return out


def _view_values(value: Any, where: str, field: str) -> list[str | None]:
    """A field's value as a list of view inputs (None = missing)."""
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out: list[str | None] = []
    for k, v in enumerate(values):
        if v is None:
            out.append(None)
        elif isinstance(v, str):
            check_unicode(v, where, f"{field!r}{f'[{k}]' if isinstance(value, list) else ''}")
            out.append(v if v.strip() else None)
        else:
            pos = f"[{k}]" if isinstance(value, list) else ""
            raise ValueError(f"{where}: field {field!r}{pos} must be a string (a text or an image path), got {type(v).__name__}")
    return out


def check_unicode(text: str, where: str, field: str) -> None:
    """A JSON escape of a lone surrogate (``\\udc80``) gives a string no encoder can write as UTF-8
    (the feature cache keys and the backbones need it): an error naming the file, line and field."""
    bad = next((k for k, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise ValueError(
            f"{where}: field {field} is not valid Unicode: a lone surrogate "
            f"{text[bad].encode('utf-8', 'backslashreplace').decode('ascii')} at character {bad + 1} "
            "(a broken \\u escape); fix or drop it"
        )


def manifest_vector_files(manifest: dict) -> list[str]:
    """The vectors files catalog.json names (views and queries), as written there."""
    entries: list[Any] = manifest["views"] if isinstance(manifest.get("views"), list) else []
    queries = manifest.get("queries")
    entries = entries + ([queries] if isinstance(queries, dict) else [])
    return [e["vectors"] for e in entries if isinstance(e, dict) and isinstance(e.get("vectors"), str)]


def unfingerprinted_images(rels) -> list[str]:
    """The image paths (as written, relative to the folder) that the data fingerprint does not
    cover: outside the folder, in a hidden folder, or without an image suffix."""
    out = []
    for rel in rels:
        name = os.path.normpath(rel).replace(os.sep, "/")
        if (
            os.path.isabs(name)
            or name == ".."
            or name.startswith("../")
            or not name.lower().endswith(IMAGE_SUFFIXES)
            or any(part.startswith(".") for part in name.split("/"))
        ):
            out.append(rel)
    return out


def _note_unfingerprinted(rels, what: str, notes: list[str]) -> None:
    uncovered = unfingerprinted_images(rels)
    if uncovered:
        message = (
            f"catalog: {len(uncovered)} {what} image(s) (e.g. {uncovered[0]!r}) lie outside the folder or are "
            f"not named {'/'.join(IMAGE_SUFFIXES)}: they are not part of the data fingerprint, so changing them "
            "does not change the result's identity"
        )
        notes.append(message)
        print(message, file=sys.stderr)


@dataclass
class QuerySplitItems:
    """The item split after `train_pair_items_split`, with what it changed (see there)."""

    item_split: np.ndarray
    #: items the seeded random split had put in val or test that train queries' pairs name, by split
    moved: dict[str, int]
    #: training pairs (of train queries) whose item is a val or test item of a given split: not trained on
    held_out_pairs: int


def train_pair_items_split(
    item_split: np.ndarray, queries: QuerySet | None, given: bool, notes: list[str] | None = None
) -> QuerySplitItems:
    """The item split of a catalog whose split is over queries (qrels), reconciled with its
    training pairs (the pairs of train queries).

    Training uses every pair of a train query. An item it trains on is not held out from training,
    so it cannot be a val or test item of the cross-view tasks: with the seeded random split (no
    `split` in the items), items named by a train query's pair are train items and the others keep
    their random split. An item split given in the items is kept as given: pairs that name one of its
    val or test items are then not trained on (counted here, and by the training loop). Queries of
    val and test are never trained on, whatever their items. Both cases are printed (stderr) and
    noted, with their counts.
    """
    split = np.asarray(item_split, dtype=np.int8).copy()
    moved = {"val": 0, "test": 0}
    if queries is None or not len(queries.interactions):
        return QuerySplitItems(split, moved, 0)
    train_pairs = queries.interactions[queries.split[queries.interactions[:, 0]] == 0]
    named = np.unique(train_pairs[:, 1])
    outside = named[split[named] != 0]
    if not len(outside):
        return QuerySplitItems(split, moved, 0)
    if given:
        held = int((split[train_pairs[:, 1]] != 0).sum())
        message = (
            f"catalog: {held} of {len(train_pairs)} training pairs of train queries name one of "
            f"{len(outside)} val/test items of the split given in the items; they are not trained on "
            "(the cross-view val/test items stay unseen). Drop 'split' from the items to let train "
            "queries' items be train items."
        )
        if notes is not None:
            notes.append(message)
        print(message, file=sys.stderr)
        return QuerySplitItems(split, moved, held)
    moved = {"val": int((split[outside] == 1).sum()), "test": int((split[outside] == 2).sum())}
    split[outside] = 0
    message = (
        f"catalog: {len(outside)} items named by train queries' pairs are train items (the random item "
        f"split had {moved['val']} in val, {moved['test']} in test); every training pair is used; "
        f"{int((split == 1).sum())} val and {int((split == 2).sum())} test items remain"
        + (
            " (give 'split' in the items to hold items out of training for the cross-view tasks)."
            if not (split == 1).any() or not (split == 2).any()
            else "."
        )
    )
    if notes is not None:
        notes.append(message)
    print(message, file=sys.stderr)
    return QuerySplitItems(split, moved, 0)


def _image_input(root: Path, rel: str, where: str, field: str) -> Path:
    if _is_url(rel):
        raise ValueError(
            f"{where}: field {field!r}: image {rel!r} is a URL; images are read from local files only "
            f"(nothing is downloaded): download the images into {root} (e.g. under images/) and give their "
            "paths relative to it"
        )
    path = (root / rel).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{where}: field {field!r}: image {rel!r} does not exist (paths are relative to {root})")
    return path


@DATASETS.register("catalog")
class CatalogFolder(DatasetPlugin):
    """A product catalog in one folder; docs/catalog.md describes it.
    `ftbench data init DIR` writes an example to edit, `ftbench data validate
    DIR` checks a folder, `ftbench data convert NAME --out DIR` writes one.

        DIR/
          items.jsonl       one JSON object per item, e.g. {"id": "mug",
                            "title": ..., "image": "images/mug.jpg",
                            "photos": [...], "split": "train"}; or
                            items.parquet, or items.csv (columns = fields,
                            a list as numbered columns photos_1, photos_2)
          catalog.json      optional: views (field or vectors, modality,
                            role, slot), query_task, cross_view_items,
                            queries (schema: datasets/catalog.schema.json)
          queries.jsonl     {"id": ..., "text": ...} or {"id": ...,
                            "image": "path"}, one per line
          qrels/train.tsv   query-id TAB corpus-id TAB score (BEIR) or
          qrels/dev.tsv     qid 0 docid grade (TREC); a query's file is
          qrels/test.tsv    its split; grade 0 = judged not relevant
          interactions.tsv  optional training pairs (query-id TAB corpus-id)
          vectors/NAME.npy  optional precomputed view [n, D] + NAME.ids
          images/...        local image files named by items and queries

    `id` is required; `split` (train, dev/val, test) is given for every item
    or none (then a seeded random split). Every other field is a view: a text
    or an image path, a list of them one slot per position. Without
    catalog.json the views are inferred: image paths are image views, `title`
    and the first image field are primary."""

    summary = (
        "your own catalog: items.jsonl/.parquet/.csv + queries.jsonl + qrels/{train,dev,test}.tsv "
        "(BEIR shape, graded), any named text and image views, optional vectors/*.npy"
    )

    @dataclass
    class Config(TextEncoderConfig):
        data_dir: str = option(
            "", "the catalog folder (items.jsonl, .parquet or .csv, catalog.json, queries.jsonl, qrels/)", "convention"
        )
        image_backbone: str = option("efficientnet-lite0", "backbone spec for image views and image queries", "protocol")

        def validate(self) -> None:
            super().validate()
            if not self.data_dir:
                raise ValueError("catalog: give the folder with --data-dir DIR (or --set dataset.data_dir=DIR)")

    def data_files(self, config: CatalogFolder.Config) -> DataFiles:  # type: ignore[override]  # the registry passes each plugin its own Config
        """The layout's files (`LAYOUT_FILES`), the vectors catalog.json names (with their ids
        files) and every image file (by suffix) under the folder, by their paths in it."""
        config.validate()
        root = Path(config.data_dir).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"catalog: data_dir {root} is not a folder")
        files = cast(dict[str, str | Path], walk_files(root, suffix_filter(IMAGE_SUFFIXES)))  # DataFiles takes either
        named = list(LAYOUT_FILES)
        for rel in manifest_vector_files(read_manifest(root)):
            named += [rel, str(Path(rel).with_suffix(".ids"))]
        for rel in named:
            if (root / rel).is_file():
                files[Path(rel).as_posix()] = root / rel
        return DataFiles(files, root, ("data_dir", "cache_dir"))

    def build(self, config: CatalogFolder.Config) -> MultiViewDataset:  # type: ignore[override]  # the registry passes each plugin its own Config
        config.validate()
        t0 = time.perf_counter()
        root = Path(config.data_dir).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"catalog: data_dir {root} is not a folder")
        skipped: dict[str, int] = {}
        notes: list[str] = []
        manifest = read_manifest(root)
        items_path, records = read_items(root)
        if not records:
            raise ValueError(f"{items_path}: no items; the catalog would be empty")

        # -- ids and split -------------------------------------------------------------------
        ids: list[str] = []
        first: dict[str, str] = {}
        splits: list[int | None] = []
        for where, rec in records:
            if "id" not in rec:
                raise ValueError(f"{where}: missing field 'id' (every item needs an id)")
            item_id = rec["id"]
            if isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or not str(item_id).strip():
                raise ValueError(f"{where}: field 'id' must be a non-empty string or integer, got {item_id!r}")
            item_id = str(item_id)
            if item_id in first:
                raise ValueError(f"{where}: duplicate id {item_id!r} (first at {first[item_id]})")
            first[item_id] = where
            ids.append(item_id)
            split = rec.get("split")
            if split is not None and split not in ITEM_SPLITS:
                raise ValueError(f"{where}: field 'split' must be one of train, dev, val, test, got {split!r}")
            splits.append(None if split is None else ITEM_SPLITS[split])
        given = [s is not None for s in splits]
        if any(given) and not all(given):
            k = given.index(False) if given[0] else given.index(True)
            raise ValueError(f"{records[k][0]}: field 'split' is given for some items and not others; give it for all or none")
        item_split = np.array(splits, dtype=np.int8) if all(given) else config.item_split(len(ids))

        # -- views ---------------------------------------------------------------------------
        manifest_path = root / "catalog.json"
        if "views" in manifest:
            views = manifest_views(manifest_path, manifest["views"])
        else:
            views = infer_views(records)
            if not views:
                raise ValueError(f"{items_path}: no view field found (every field is id or split, or empty)")
            inferred = ", ".join(f"{v.slot} ({v.modality}, {v.role})" for v in views)
            notes.append(f"catalog: no catalog.json views; inferred from {items_path.name}: {inferred}")
            print(f"catalog: views inferred from {items_path.name} (write catalog.json to fix them): {inferred}", file=sys.stderr)
        slots: list[ViewSlot] = []
        columns: list[tuple[ViewSpec, int]] = []  # (view, position in a list-valued field)
        width: dict[str, int] = {}
        for v in views:
            if v.field is not None:
                width[v.field] = max((len(_view_values(r.get(v.field), w, v.field)) for w, r in records), default=0)
        for v in views:
            if v.field is not None and any(isinstance(r.get(v.field), list) for _, r in records):
                for k in range(width[v.field]):
                    slots.append(ViewSlot(f"{v.slot}_{k + 1}", v.modality, v.role))
                    columns.append((v, k))
            else:
                slots.append(ViewSlot(v.slot, v.modality, v.role))
                columns.append((v, 0))
        encoded = [j for j, (v, _) in enumerate(columns) if v.field is not None]
        table: list[list] = []
        for where, rec in records:
            row: list = []
            for j in encoded:
                v, k = columns[j]
                assert v.field is not None  # `encoded`: the columns read from a field
                values = _view_values(rec.get(v.field), where, v.field)
                value = values[k] if k < len(values) else None
                if value is not None and v.modality == "image":
                    row.append(_image_input(root, value, where, v.field))
                else:
                    row.append(value)
            table.append(row)
        # `encoded`: the columns read from a field, so every name is a string
        image_fields = sorted(cast(set[str], {columns[j][0].field for j in encoded if columns[j][0].modality == "image"}))
        _note_unfingerprinted(
            (value for where, rec in records for f in image_fields for value in _view_values(rec.get(f), where, f) if value),
            "item",
            notes,
        )
        backbones = {}
        for m in {columns[j][0].modality for j in encoded}:
            backbones[m] = config.backbone(m, config.image_backbone if m == "image" else config.text_backbone)
        cache = config.cache()
        label = f"catalog {root}"
        n = len(ids)
        features: list[np.ndarray] = [np.zeros((n, 0), np.float32)] * len(slots)
        available = np.zeros((n, len(slots)), dtype=bool)
        for m in backbones:
            cols = [k for k, j in enumerate(encoded) if columns[j][0].modality == m]
            sub = [[row[k] for k in cols] for row in table]
            arrays, avail = encode_views(sub, len(cols), backbones[m], cache, "item", f"{label}: {m} views")
            for c, k in enumerate(cols):
                features[encoded[k]] = arrays[c]
                available[:, encoded[k]] = avail[:, c]
        index = {item_id: i for i, item_id in enumerate(ids)}
        for j, (v, _) in enumerate(columns):
            if v.vectors is None:
                continue
            array, vec_ids = load_vectors(root, v.vectors, f"view {v.slot!r}")
            out = np.zeros((n, array.shape[1]), np.float32)
            for vec_row, item_id in enumerate(vec_ids):
                if item_id not in index:
                    count_skip(skipped, f"vectors_{v.slot}_unknown_item")
                    continue
                out[index[item_id]] = array[vec_row]
                available[index[item_id], j] = True
            features[j] = out
        viewless = ~available.any(axis=1)
        if viewless.any():
            count_skip(skipped, "items_without_views", int(viewless.sum()))
            keep = np.flatnonzero(~viewless)
            ids = [ids[i] for i in keep]
            item_split = item_split[keep]
            features = [f[keep] for f in features]
            available = available[keep]
            index = {item_id: i for i, item_id in enumerate(ids)}
        catalog = ArrayCatalog(slots, features, available, ids, source=label)

        queries = self._queries(root, manifest, index, config, cache, backbones, skipped, notes)
        split_by_query = train_pair_items_split(item_split, queries, given=all(given), notes=notes)
        item_split = split_by_query.item_split
        cross = manifest.get("cross_view_items", "test")
        notes.append(
            f"catalog {root.name}: {len(ids)} items, views {', '.join(s.name for s in slots)}; "
            f"item split {'from items' if all(given) else f'random (seed {config.split_seed})'}; "
            f"cross-view tasks on {'every item' if cross == 'all' else 'the test items'}."
        )
        info = asdict(config)
        info.update(
            {
                "data_dir_resolved": str(root),
                "items_file": str(items_path),
                "manifest": manifest or None,
                "backbone_fingerprints": {m: b.fingerprint() for m, b in backbones.items()},
                "cache_dir_resolved": str(cache.root) if config.use_cache else None,
                "features_encoded": cache.stats.encoded,
                "features_from_cache": cache.stats.hits,
                "items_moved_to_train": split_by_query.moved,
                "training_pairs_naming_held_out_items": split_by_query.held_out_pairs,
                "load_seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return MultiViewDataset(
            name="catalog",
            catalog=catalog,
            item_split=item_split,
            queries=queries,
            query_task=str(manifest.get("query_task", "query->item")),
            cross_view_items=np.arange(len(ids), dtype=np.int64) if cross == "all" else None,
            config=info,
            skipped=skipped,
            notes=notes,
        )

    def _queries(self, root, manifest, index, config, cache, backbones, skipped, notes) -> QuerySet | None:
        path = root / "queries.jsonl"
        qrels_dir = root / "qrels"
        qmeta = manifest.get("queries", {}) or {}
        if not isinstance(qmeta, dict) or set(qmeta) - {"vectors", "modality"}:
            raise ValueError(f"{root / 'catalog.json'}: field 'queries' must be an object with 'vectors' and 'modality'")
        if not path.is_file() and "vectors" not in qmeta:
            if qrels_dir.is_dir():
                raise FileNotFoundError(f"catalog: {qrels_dir} exists but {path} does not (qrels need their queries)")
            return None
        # query ids and raw inputs, in file order
        qids: list[str] = []
        inputs: list = []
        query_images: list[str] = []  # image paths as written (data fingerprint coverage)
        modality = None
        first: dict[str, int] = {}
        if path.is_file():
            for line_no, rec in read_jsonl(path):
                where = f"{path}, line {line_no}"
                if "id" not in rec or not str(rec["id"]).strip():
                    raise ValueError(f"{where}: missing field 'id'")
                qid = str(rec["id"])
                if qid in first:
                    raise ValueError(f"{where}: duplicate query id {qid!r} (first on line {first[qid]})")
                first[qid] = line_no
                kinds = [k for k in ("text", "image") if k in rec]
                if len(kinds) != 1 and "vectors" not in qmeta:
                    raise ValueError(f"{where}: a query needs exactly one of 'text' or 'image', got {kinds or 'neither'}")
                kind = kinds[0] if kinds else qmeta.get("modality")
                if modality is None:
                    modality = kind
                elif kind != modality:
                    raise ValueError(
                        f"{where}: query is {kind!r} but earlier queries are {modality!r}; all queries share one modality"
                    )
                value = rec.get(kind) if kinds else None
                if kinds and (not isinstance(value, str) or not value.strip()):
                    raise ValueError(f"{where}: field {kind!r} must be a non-empty string, got {value!r}")
                if kinds:
                    assert isinstance(value, str)  # checked just above
                    check_unicode(value, where, repr(kind))
                qids.append(qid)
                if kinds and kind == "image":
                    assert isinstance(value, str)  # checked above
                    inputs.append(_image_input(root, value, where, "image"))
                    query_images.append(value)
                else:  # a text query, or an id-only line of vector queries (its input is the vector)
                    inputs.append(value)
            if not qids and "vectors" not in qmeta:
                raise ValueError(
                    f"{path}: no queries in the file (it is empty); add one "
                    '{"id": ..., "text": ...} per line, or delete it (and qrels/) for a catalog '
                    "without queries"
                )
        _note_unfingerprinted(query_images, "query", notes)
        if "vectors" in qmeta:
            array, vec_ids = load_vectors(root, qmeta["vectors"], "queries")
            modality = qmeta.get("modality") or modality
            if not qids:
                qids = vec_ids
            pos = {q: r for r, q in enumerate(vec_ids)}
            missing = [q for q in qids if q not in pos]
            if missing:
                raise ValueError(f"{root / qmeta['vectors']}: no vector for query {missing[0]!r} ({len(missing)} missing)")
            features = array[[pos[q] for q in qids]]
        else:
            if modality not in backbones:
                backbones[modality] = config.backbone(
                    modality, config.image_backbone if modality == "image" else config.text_backbone
                )
            features = cache.encode(backbones[modality], inputs, "query", "catalog queries")
        qindex = {q: i for i, q in enumerate(qids)}

        # qrels: split and relevance
        split = np.full(len(qids), -1, dtype=np.int8)
        seen_in: dict[int, str] = {}
        pairs: list[tuple[int, int]] = []
        grades: list[float] = []
        found_files = 0
        for name, code in QRELS_FILES:
            file = qrels_dir / f"{name}.tsv"
            if not file.is_file():
                continue
            found_files += 1
            judgments = read_qrels(file)
            if not judgments:
                # an empty test.tsv would silently drop the main task; any empty split file is a mistake
                raise ValueError(
                    f"{file}: no judgments in the file (it is empty or only a header); give "
                    "'query-id<TAB>corpus-id<TAB>score' lines, or delete the file"
                )
            unknown_query = unknown_item = 0
            relevant_before = len(pairs)
            for qid, docid, g, line in judgments:
                if qid not in qindex:
                    count_skip(skipped, "qrels_unknown_query")
                    unknown_query += 1
                    continue
                if docid not in index:
                    count_skip(skipped, "qrels_unknown_item")
                    unknown_item += 1
                    continue
                q = qindex[qid]
                if split[q] >= 0 and split[q] != code:
                    raise ValueError(f"{file}, line {line}: query {qid!r} is also in {seen_in[q]}; a query belongs to one split")
                split[q], seen_in[q] = code, file.name
                if g > 0:
                    pairs.append((q, index[docid]))
                    grades.append(g)
            if len(pairs) == relevant_before:
                # every line skipped: the split would lose all its queries without a word (the test
                # split: the main task)
                graded_zero = len(judgments) - unknown_query - unknown_item
                raise ValueError(
                    f"{file}: no line gives a known query a relevant item ({len(judgments)} lines: {unknown_query} "
                    f"name a query not in {path.name}, {unknown_item} an item not in the catalog, "
                    f"{graded_zero} have score 0); check that its ids match theirs"
                )
        if not found_files:
            raise FileNotFoundError(
                f"catalog: {path.name} needs qrels: none of {', '.join(f'qrels/{n}.tsv' for n, _ in QRELS_FILES)} in {root}"
            )
        has_rel = np.zeros(len(qids), dtype=bool)
        for q, _ in pairs:
            has_rel[q] = True
        count_skip(skipped, "queries_without_relevant", int((~has_rel).sum()))
        keep = np.flatnonzero(has_rel)
        if not len(keep):
            raise ValueError(f"catalog: no query in {path} has a relevant item in qrels/")
        new = np.cumsum(has_rel) - 1
        pairs_arr = np.array([(new[q], i) for q, i in pairs], dtype=np.int64).reshape(-1, 2)
        indptr, rel_items, rel_grades = relevance_from_pairs(len(keep), pairs_arr, np.array(grades, dtype=np.float32))
        q_split = split[keep]
        kept_index = {qids[q]: k for k, q in enumerate(keep)}
        interactions_path = root / "interactions.tsv"
        if interactions_path.is_file():
            rows = []
            for line_no, text in utf8_lines(interactions_path):
                parts = text.rstrip("\r\n").split("\t")
                if not text.strip() or (line_no == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid")):
                    continue
                if len(parts) != 2:
                    raise ValueError(
                        f"{interactions_path}, line {line_no}: expected 'query-id<TAB>corpus-id', got {len(parts)} field(s)"
                    )
                qid, docid = parts[0].strip(), parts[1].strip()
                if qid not in kept_index or docid not in index:
                    count_skip(skipped, "interactions_unknown_query_or_item")
                    continue
                rows.append((kept_index[qid], index[docid]))
            interactions = np.array(rows, dtype=np.int64).reshape(-1, 2)
        else:
            train = q_split[pairs_arr[:, 0]] == 0
            interactions = pairs_arr[train]
        return QuerySet(
            ids=np.array([qids[q] for q in keep], dtype=str),
            modality=str(modality),
            features=features[keep],
            relevant_indptr=indptr,
            relevant_items=rel_items,
            relevant_grades=rel_grades,
            split=q_split,
            interactions=interactions,
        )
