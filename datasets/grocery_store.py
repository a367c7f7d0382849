"""The Grocery Store Dataset (Klasson, Zhang, Kjellström, WACV 2019; MIT licence), as a
multi-view catalog with photo queries.

Reads the published layout (github.com/marcusklasson/GroceryStoreDataset, folder `dataset/`:
``classes.csv``, each product's description and information files, ``train.txt`` / ``val.txt`` /
``test.txt`` of in-store photos). Views per product, in slot order: primary ``image`` (the iconic
catalog image) and ``title``; auxiliary ``description``, ``country_and_volume``, then
``photo_1 .. photo_P`` (the product's training photos). Protocol (photo -> product): the split is
over *photos*, as published; validation and test photos are image queries (`QuerySet.modality ==
"image"`), each relevant to exactly its own product; every product is in the catalog and trained
on, so the cross-view tasks run on all products (`cross_view_items`) and `split_seed` is unused.
The files, the fallbacks for each view (the published classes.csv has a few typos) and the
protocol in full: docs/data/real-data.md#the-grocery-store-data-set.
"""

from __future__ import annotations

import csv
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import option
from ..data.catalog import ViewSlot
from ..data.dataset import MultiViewDataset
from ..data.fetch import ArchiveSource, Limits
from ..data.fingerprint import IMAGE_SUFFIXES, DataFiles, suffix_filter, walk_files
from ..data.queries import QuerySet, relevance_from_pairs
from ..features.backbones import create_backbone
from ..features.cache import FeatureCache, assemble_catalog
from . import DATASETS
from ._text_loading import utf8_lines
from .base import DatasetConfig, DatasetPlugin

ENV_DIR = "FTBENCH_GROCERY_DIR"
MINI_RELATIVE = Path("..") / "shared" / "data" / "grocery_store_mini"
SPLIT_FILES = ("train.txt", "val.txt", "test.txt")
CLASSES_HEADER = 6


def default_data_dirs() -> list[Path]:
    """Where `data_dir=""` looks, in order: ``$FTBENCH_GROCERY_DIR``; ``../shared/data/
    grocery_store_mini`` relative to the repository (a source checkout) and to the working
    directory."""
    out = []
    if os.environ.get(ENV_DIR):
        out.append(Path(os.environ[ENV_DIR]).expanduser())
    out.append(Path(__file__).resolve().parents[1] / MINI_RELATIVE)
    out.append(Path.cwd() / MINI_RELATIVE)
    return out


def resolve_data_dir(data_dir: str) -> Path:
    """The data folder to read: `data_dir` if given (relative to the working directory), else the
    first of `default_data_dirs` that holds a ``classes.csv``."""
    if data_dir:
        path = Path(data_dir).expanduser().resolve()
        if not (path / "classes.csv").is_file():
            raise FileNotFoundError(
                f"grocery-store: data_dir {path} has no classes.csv; point --data-dir at the folder "
                f"holding classes.csv, train.txt, val.txt, test.txt (the repository's `dataset/` "
                f"folder; `ftbench data fetch grocery-store` prints it)"
            )
        return path
    tried = default_data_dirs()
    for path in tried:
        if (path / "classes.csv").is_file():
            return path.resolve()
    raise FileNotFoundError(
        "grocery-store: no data folder given and none found at "
        + ", ".join(str(p) for p in tried)
        + f"; pass --data-dir PATH (or --set dataset.data_dir=PATH), set ${ENV_DIR}, or run "
        "`ftbench data fetch grocery-store`"
    )


@dataclass
class Product:
    name: str
    class_id: int
    coarse_name: str
    folder: Path
    iconic: Path | None
    title: str
    description: str | None
    country_and_volume: str | None


def _clean(text: str) -> str:
    """Collapse whitespace, drop a byte-order mark, tidy `` , `` into ``, ``."""
    text = text.replace("\ufeff", " ")
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+,", ",", text)


def parse_information(path: Path) -> dict[str, str]:
    """``Key: value`` lines of an Information file; indented continuation lines (nutrition
    tables) are ignored. Keys keep their published spelling."""
    info: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        if not line.strip() or line[:1].isspace():
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in info:
            info[key.strip()] = _clean(value)
    return info


def _rel(root: Path, published: str) -> Path:
    return root / published.strip().lstrip("/\\")


def _description(root: Path, folder: Path, published: str, info: dict[str, str]) -> str | None:
    candidates: list[Path] = []
    if published.strip():
        p = _rel(root, published)
        candidates += [p, p.with_name(p.name + ".txt")]
    if folder.is_dir():
        candidates += sorted(q for q in folder.glob("*_Description*.txt") if "swedish" not in q.name.lower())
    for p in candidates:
        if p.is_file():
            text = _clean(p.read_text(encoding="utf-8-sig", errors="replace"))
            if text:
                return text
    return info.get("Description") or None


def _country_and_volume(info: dict[str, str]) -> str | None:
    if info.get("Country and volume"):
        return info["Country and volume"]
    parts = [info.get("Manufacturing country", ""), info.get("Manufacturer and volume", "")]
    text = "; ".join(p for p in parts if p)
    return text or None


def read_products(root: Path, skipped: dict[str, int]) -> list[Product]:
    """Products of ``classes.csv`` with their texts; errors name the file and line."""
    path = root / "classes.csv"
    products: list[Product] = []
    seen: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    reader = csv.reader(text for _, text in utf8_lines(path))  # non-UTF-8 bytes: error naming the line
    header = next(reader, None)
    if header is None or len(header) < CLASSES_HEADER:
        raise ValueError(f"{path}, line 1: expected a header with {CLASSES_HEADER} columns, got {header}")
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip():
            continue
        if len(row) < CLASSES_HEADER:
            raise ValueError(f"{path}, line {line}: expected {CLASSES_HEADER} fields, got {len(row)}")
        name, class_id, coarse, _, iconic_rel, desc_rel = (c.strip() for c in row[:CLASSES_HEADER])
        try:
            cid = int(class_id)
        except ValueError:
            raise ValueError(f"{path}, line {line}: field 'Class ID' must be an integer, got {class_id!r}") from None
        if cid in seen:
            raise ValueError(f"{path}, line {line}: duplicate Class ID {cid} (first on line {seen[cid]})")
        seen[cid] = line
        if not name:
            raise ValueError(f"{path}, line {line}: field 'Class Name' is empty (it is the product's id)")
        if name in seen_names:
            raise ValueError(f"{path}, line {line}: duplicate Class Name {name!r} (first on line {seen_names[name]})")
        seen_names[name] = line
        iconic = _rel(root, iconic_rel) if iconic_rel else None
        folder = iconic.parent if iconic is not None else _rel(root, desc_rel).parent
        if iconic is not None and not iconic.is_file():
            skipped["iconic_image_missing"] = skipped.get("iconic_image_missing", 0) + 1
            iconic = None
        info_file = folder / f"{name}_Information.txt"
        if not info_file.is_file():
            found = sorted(folder.glob("*_Information.txt")) if folder.is_dir() else []
            info_file = found[0] if found else info_file
        info = parse_information(info_file) if info_file.is_file() else {}
        title = info.get("Title") or name.replace("-", " ")
        products.append(
            Product(
                name=name,
                class_id=cid,
                coarse_name=coarse,
                folder=folder,
                iconic=iconic,
                title=title,
                description=_description(root, folder, desc_rel, info),
                country_and_volume=_country_and_volume(info),
            )
        )
    if not products:
        raise ValueError(f"{path}: no products")
    return products


def read_photos(
    root: Path, split_file: str, index: dict[int, int], cap: int, skipped: dict[str, int]
) -> list[tuple[str, Path, int]]:
    """(relative path, file, product index) of the photos listed in `split_file`, at most `cap`
    per product (0 = all), in file order. A photo of a class absent from classes.csv is skipped
    and counted; a listed file that does not exist is an error naming the line."""
    path = root / split_file
    if not path.is_file():
        raise FileNotFoundError(f"grocery-store: {path} does not exist (expected {', '.join(SPLIT_FILES)} in {root})")
    out: list[tuple[str, Path, int]] = []
    per_product: dict[int, int] = {}
    for line_no, line in utf8_lines(path):
        if not line.strip():
            continue
        fields = [p.strip() for p in line.split(",")]
        if len(fields) < 2:
            raise ValueError(f"{path}, line {line_no}: expected 'path, class id, coarse id', got {line.strip()!r}")
        try:
            cid = int(fields[1])
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: field 'class id' must be an integer, got {fields[1]!r}") from None
        if cid not in index:
            skipped["photos_unknown_product"] = skipped.get("photos_unknown_product", 0) + 1
            continue
        item = index[cid]
        if cap and per_product.get(item, 0) >= cap:
            continue
        photo = _rel(root, fields[0])
        if not photo.is_file():
            raise FileNotFoundError(f"{path}, line {line_no}: photo {photo} does not exist")
        per_product[item] = per_product.get(item, 0) + 1
        out.append((fields[0].lstrip("/\\"), photo, item))
    return out


@DATASETS.register("grocery-store")
class GroceryStore(DatasetPlugin):
    """Grocery Store Dataset: products with an iconic image, title, description, country/volume
    and in-store photos; held-out photos are image queries (photo->product)."""

    summary = (
        "Grocery Store Dataset (Klasson et al. 2019): iconic image + title + texts + in-store photos "
        "per product; held-out photos query the catalog (photo->product)"
    )
    # the GitHub archive of the published repository (a branch archive: no fixed sha256); the data
    # folder is its dataset/
    archive = ArchiveSource(
        title="Grocery Store",
        url="https://github.com/marcusklasson/GroceryStoreDataset/archive/refs/heads/master.zip",
        archive_name="GroceryStoreDataset.zip",
        layout=("classes.csv", "train.txt", "val.txt", "test.txt", "iconic-images-and-descriptions"),
        limits=Limits(max_download_bytes=2 << 30, min_download_bytes=1 << 10),
    )

    @dataclass
    class Config(DatasetConfig):
        data_dir: str = option(
            "",
            "folder holding classes.csv, train.txt, val.txt, test.txt (the repository's `dataset/`); "
            f"empty: ${ENV_DIR}, else ../shared/data/grocery_store_mini beside the repository or "
            "the working directory",
            "convention",
        )
        image_backbone: str = option(
            "efficientnet-lite0", "backbone spec for images (catalog images, photos, photo queries)", "protocol"
        )
        text_backbone: str = option("minilm", "backbone spec for the text views", "protocol")
        max_photos_per_product: int = option(
            0,
            "keep at most this many photos per product in each split file, in file order (0 = all)",
            "convention",
            ge=0,
        )
        train_photo_queries: bool = option(
            False,
            "also use the training photos as training queries (with an interaction to their product) "
            "besides being auxiliary views; off = the val/test photos are the only queries",
            "our reading",
        )
        cache_dir: str = option("", "feature cache folder (empty: $FTBENCH_CACHE_DIR or ~/.cache/ftbench/features)", "convention")
        use_cache: bool = option(True, "read and write the feature cache", "convention")
        device: str = option("auto", "device of the backbones (auto = cuda if available)", "convention")
        batch_size: int = option(32, "backbone batch size", "convention", ge=1)

    def data_files(self, config: GroceryStore.Config) -> DataFiles:  # type: ignore[override]  # the registry passes each plugin its own Config
        """What the loader reads: every .csv, .txt and image file under the data folder (classes,
        split lists, descriptions, information files, iconic images, photos), by their paths in it;
        not README.md or LICENSE."""
        root = resolve_data_dir(config.data_dir)
        files = walk_files(root, suffix_filter((".csv", ".txt") + IMAGE_SUFFIXES))
        return DataFiles(files, root, ("data_dir", "cache_dir"))

    def build(self, config: GroceryStore.Config) -> MultiViewDataset:  # type: ignore[override]  # the registry passes each plugin its own Config
        config.validate()
        t0 = time.perf_counter()
        root = resolve_data_dir(config.data_dir)
        skipped: dict[str, int] = {}
        products = read_products(root, skipped)
        index = {p.class_id: i for i, p in enumerate(products)}
        cap = config.max_photos_per_product
        photos = {name: read_photos(root, name, index, cap, skipped) for name in SPLIT_FILES}
        n = len(products)

        train_by_item: list[list[Path]] = [[] for _ in range(n)]
        for _, file, item in photos["train.txt"]:
            train_by_item[item].append(file)
        num_photo_slots = max((len(v) for v in train_by_item), default=0)

        slots = [
            ViewSlot("image", "image", "primary"),
            ViewSlot("title", "text", "primary"),
            ViewSlot("description", "text", "auxiliary"),
            ViewSlot("country_and_volume", "text", "auxiliary"),
        ] + [ViewSlot(f"photo_{k + 1}", "image", "auxiliary") for k in range(num_photo_slots)]

        image_bb = create_backbone(config.image_backbone, "image", config.device, config.batch_size)
        text_bb = create_backbone(config.text_backbone, "text", config.device, config.batch_size)
        cache = FeatureCache(config.cache_dir or None, enabled=config.use_cache)

        table = [
            [p.iconic, p.title, p.description, p.country_and_volume]
            + [files[k] if k < len(files) else None for k in range(num_photo_slots)]
            for p, files in zip(products, train_by_item)
        ]
        t_enc = time.perf_counter()
        catalog = assemble_catalog(
            slots, table, {"image": image_bb, "text": text_bb}, cache, [p.name for p in products], f"grocery-store {root}"
        )

        # Queries: val (1) and test (2) photos; optionally train photos (0) with interactions.
        query_rows: list[tuple[str, Path, int, int]] = []
        if config.train_photo_queries:
            query_rows += [(rel, f, item, 0) for rel, f, item in photos["train.txt"]]
        query_rows += [(rel, f, item, 1) for rel, f, item in photos["val.txt"]]
        query_rows += [(rel, f, item, 2) for rel, f, item in photos["test.txt"]]
        q_feats = cache.encode(image_bb, [f for _, f, _, _ in query_rows], "query", "grocery photo queries")
        encode_seconds = time.perf_counter() - t_enc
        q_items = np.array([item for _, _, item, _ in query_rows], dtype=np.int64)
        q_split = np.array([s for _, _, _, s in query_rows], dtype=np.int8)
        pairs = np.stack([np.arange(len(query_rows)), q_items], axis=1) if query_rows else np.zeros((0, 2), np.int64)
        indptr, rel_items, rel_grades = relevance_from_pairs(len(query_rows), pairs)
        train_q = np.flatnonzero(q_split == 0)
        interactions = (
            np.stack([train_q, q_items[train_q]], axis=1).astype(np.int64) if len(train_q) else np.zeros((0, 2), np.int64)
        )
        queries = QuerySet(
            ids=np.array([rel for rel, _, _, _ in query_rows], dtype=str),
            modality="image",
            features=q_feats,
            relevant_indptr=indptr,
            relevant_items=rel_items,
            relevant_grades=rel_grades,
            split=q_split,
            interactions=interactions,
        )

        notes = [
            "grocery-store protocol: the split is over photos (the published train/val/test files); "
            "training photos are auxiliary image views of their product, val/test photos are image "
            "queries (photo->product) against the whole catalog, each relevant to its own product; "
            "every product is in the catalog and trained on, so cross-view tasks use all products.",
            f"features: images {image_bb.spec}, texts {text_bb.spec}; "
            f"{cache.stats.encoded} inputs encoded, {cache.stats.hits} read from the cache.",
        ]
        if cap:
            notes.append(f"at most {cap} photos per product per split file (max_photos_per_product).")
        info = asdict(config)
        info.update(
            {
                "data_dir_resolved": str(root),
                "image_backbone_fingerprint": image_bb.fingerprint(),
                "text_backbone_fingerprint": text_bb.fingerprint(),
                "cache_dir_resolved": str(cache.root) if config.use_cache else None,
                "features_encoded": cache.stats.encoded,
                "features_from_cache": cache.stats.hits,
                "feature_seconds": round(encode_seconds, 3),
                "load_seconds": round(time.perf_counter() - t0, 3),
                "photos": {k.removesuffix(".txt"): len(v) for k, v in photos.items()},
            }
        )
        return MultiViewDataset(
            name="grocery-store",
            catalog=catalog,
            item_split=np.zeros(n, dtype=np.int8),
            queries=queries,
            query_task="photo->product",
            cross_view_items=np.arange(n, dtype=np.int64),
            config=info,
            skipped=skipped,
            notes=notes,
        )
