"""`ftbench data convert NAME --out DIR`: any data set plugin written out in the catalog layout
(`ftbench.datasets.catalog`), so that its data can be read, edited and extended as plain files.

How: the plugin is built as usual, with the cheap ``hash`` backbones and no feature cache, while
`ftbench.features.cache.record_inputs` keeps the raw inputs the loader hands to the encoders (the
view texts, the image paths, the query texts or photos). Those inputs, the item ids, the item split,
the query split, the graded relevance and the training interactions are written as
``items.jsonl``, ``queries.jsonl``, ``qrels/{train,dev,test}.tsv``, ``interactions.tsv`` and a
``catalog.json`` that declares the views in the plugin's slot order, so that the `catalog` plugin
reads back the same data set: the same items in the same order, the same views, splits and
relevance, hence the same features for the same backbone and the same metrics for the same seed.
Image files are copied under ``images/`` (their paths relative to the images' common folder).

A data set whose catalog is not encoded from raw inputs (the synthetic marketplace generates its
features) is written with its features as precomputed vectors: ``vectors/<slot>.npy`` with
``vectors/<slot>.ids`` per view slot and ``vectors/queries.npy`` for the queries.

The layout is written into a hidden temporary folder beside the destination (``.<name>.*``) and
renamed to the destination when complete: an interrupted or failed convert leaves no destination
folder, so the next convert is not refused and `run` never reads half a catalog. What a killed
convert left (no ``except`` ran) is removed by the next convert to the same destination.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..config import apply_overrides
from ..datasets import DATASETS
from ..features.cache import record_inputs
from ..files import make_folders, remove_created_folders, remove_interrupted_writes, staging_folder
from .splits import SPLIT_NAMES

#: the names `convert` writes qrels files under, by split code (the BEIR names)
QRELS_NAMES = ("train", "dev", "test")
ITEM_SPLIT_NAMES = ("train", "dev", "test")
CHEAP = {"text_backbone": "hash", "image_backbone": "hash", "use_cache": False}


def _grade_text(g: float) -> str:
    return str(int(g)) if float(g).is_integer() else repr(float(g))


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


class _ImageCopier:
    """Copies image files under ``out/images/`` keeping their paths below a common folder."""

    def __init__(self, out: Path, paths: list[Path], link: bool) -> None:
        resolved = [Path(p).resolve() for p in paths]
        self.base = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else None
        self.out = out
        self.link = link
        self.copied = 0

    def __call__(self, path: Any) -> str:
        src = Path(path).resolve()
        assert self.base is not None  # called only on the paths it was built from, so there were some
        rel = Path("images") / src.relative_to(self.base)
        dest = self.out / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self.link:
                os.symlink(src, dest)
            else:
                shutil.copyfile(src, dest)
            self.copied += 1
        return rel.as_posix()


def convert_dataset(name: str, overrides: dict[str, Any], out: Path, *, link_images: bool = False) -> dict[str, Any]:
    """Build data set `name` (with `overrides` on its config) and write it under `out` in the
    catalog layout. Returns a summary (counts and the files written). `out` must be empty or
    absent: nothing is overwritten."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out}: exists and is not an empty folder; give a new folder")
    plugin_cls = DATASETS.get(name)
    if name == "catalog":
        raise ValueError("data convert: 'catalog' is already in the catalog layout")
    fields = {f.name for f in dataclasses.fields(plugin_cls.Config)}
    cheap = {k: v for k, v in CHEAP.items() if k in fields and k not in overrides}
    config = apply_overrides(plugin_cls.Config(), {**cheap, **overrides}, f"data set {name!r}")
    with record_inputs() as recorded:
        ds = plugin_cls().build(config)
    dest = Path(os.path.abspath(out))  # `--out .` has a name and a parent too
    created = make_folders(dest.parent)
    remove_interrupted_writes(dest)
    try:
        with staging_folder(dest) as staging:
            summary = _write_layout(name, overrides, ds, recorded, staging, link_images)
            try:
                # rename(2) replaces an empty destination folder, and refuses one filled meanwhile
                os.replace(staging, dest)
            except OSError as exc:
                raise FileExistsError(
                    f"--out {out}: could not be replaced by the converted folder ({exc.strerror or exc}); give a new folder"
                ) from None
    except BaseException:
        remove_created_folders(created)
        raise
    summary["out"] = str(out)
    return summary


def _write_layout(name: str, overrides: dict[str, Any], ds, recorded, out: Path, link_images: bool) -> dict[str, Any]:
    """Write data set `ds` (built from `name` with `overrides`, its raw inputs in `recorded`) in
    the catalog layout into the existing folder `out`; returns the summary."""
    catalog = ds.catalog
    n = catalog.num_items
    item_ids = [str(i) for i in catalog.item_ids()]
    if len(set(item_ids)) != n:
        raise ValueError(f"data convert {name}: item ids are not unique as strings")
    manifest: dict[str, Any] = {"name": name, "source": {"dataset": name, "options": _jsonable(overrides)}}

    table = None
    for _slots, rows, ids in recorded.catalogs:
        if len(rows) == n and [str(i) for i in ids] == item_ids:
            table = rows
    images: list[Path] = []
    query_inputs = None
    if ds.queries is not None:
        for inputs in recorded.queries:
            if len(inputs) == ds.queries.num_queries:
                query_inputs = inputs
    if table is not None:
        images = [x for row in table for x, s in zip(row, catalog.slots) if x is not None and s.modality == "image"]
    if query_inputs is not None and ds.queries.modality == "image":
        images += list(query_inputs)
    copy = _ImageCopier(out, images, link_images)

    # -- items -------------------------------------------------------------------------------
    records = [{"id": item_ids[i], "split": ITEM_SPLIT_NAMES[int(ds.item_split[i])]} for i in range(n)]
    if table is not None:
        views = [{"field": s.name, "modality": s.modality, "role": s.role} for s in catalog.slots]
        for rec, row in zip(records, table):
            for s, x in zip(catalog.slots, row):
                if x is not None:
                    rec[s.name] = copy(x) if s.modality == "image" else str(x)
    else:
        views = []
        all_items = np.arange(n)
        avail = catalog.availability(all_items)
        for j, s in enumerate(catalog.slots):
            have = np.flatnonzero(avail[:, j])
            (out / "vectors").mkdir(exist_ok=True)
            np.save(out / "vectors" / f"{s.name}.npy", catalog.features(have, j))
            _write_lines(out / "vectors" / f"{s.name}.ids", [item_ids[i] for i in have])
            views.append({"vectors": f"vectors/{s.name}.npy", "slot": s.name, "modality": s.modality, "role": s.role})
    manifest["views"] = views
    _write_lines(out / "items.jsonl", [json.dumps(r, ensure_ascii=False) for r in records])

    # -- queries, qrels, interactions ----------------------------------------------------------
    summary: dict[str, Any] = {"items": n, "view_slots": len(catalog.slots), "queries": 0}
    if ds.queries is not None:
        q = ds.queries
        qids = [str(x) for x in q.ids]
        if len(set(qids)) != len(qids):
            raise ValueError(f"data convert {name}: query ids are not unique as strings")
        if query_inputs is not None:
            key = "image" if q.modality == "image" else "text"
            lines = [
                json.dumps({"id": qid, key: copy(x) if key == "image" else str(x)}, ensure_ascii=False)
                for qid, x in zip(qids, query_inputs)
            ]
        else:
            (out / "vectors").mkdir(exist_ok=True)
            np.save(out / "vectors" / "queries.npy", q.features)
            _write_lines(out / "vectors" / "queries.ids", qids)
            manifest["queries"] = {"vectors": "vectors/queries.npy", "modality": q.modality}
            lines = [json.dumps({"id": qid}) for qid in qids]
        _write_lines(out / "queries.jsonl", lines)
        by_split: dict[int, list[str]] = {0: [], 1: [], 2: []}
        for k in range(q.num_queries):
            lo, hi = q.relevant_indptr[k], q.relevant_indptr[k + 1]
            for item, g in zip(q.relevant_items[lo:hi], q.relevant_grades[lo:hi]):
                by_split[int(q.split[k])].append(f"{qids[k]}\t{item_ids[int(item)]}\t{_grade_text(g)}")
        for code, lines in by_split.items():
            if lines:
                _write_lines(out / "qrels" / f"{QRELS_NAMES[code]}.tsv", ["query-id\tcorpus-id\tscore"] + lines)
        _write_lines(
            out / "interactions.tsv", ["query-id\tcorpus-id"] + [f"{qids[int(a)]}\t{item_ids[int(b)]}" for a, b in q.interactions]
        )
        summary.update(
            {
                "queries": q.num_queries,
                "query_split": {SPLIT_NAMES[c]: len(v) for c, v in by_split.items()},
                "interactions": int(len(q.interactions)),
            }
        )
    manifest["query_task"] = ds.query_task
    cross = ds.cross_view_items
    if cross is not None and not np.array_equal(np.sort(cross), np.arange(n)):
        raise ValueError(
            f"data convert {name}: the data set evaluates cross-view tasks on a custom item subset, "
            "which the catalog layout cannot express (it takes 'test' or 'all')"
        )
    manifest["cross_view_items"] = "all" if cross is not None else "test"
    (out / "catalog.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary.update(
        {
            "images_copied": copy.copied,
            "features": "raw inputs" if table is not None else "vectors",
            "skipped": dict(ds.skipped),
            "out": str(out),
        }
    )
    return summary


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return str(value)
