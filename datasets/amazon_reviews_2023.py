"""Amazon Reviews 2023 item metadata (Hou et al. 2024, "Bridging Language and Items for
Retrieval and Recommendation"; amazon-reviews-2023.github.io) as a multi-view catalog.

Input: one ``meta_<Category>.jsonl`` (or ``.jsonl.gz``) file, one JSON object per line, in the
published schema; the fields read are ``parent_asin`` (item id, required), ``title`` (required
key, may be empty), ``features`` (list of bullet strings), ``description`` (list of strings),
``images`` (list of ``{"thumb", "large", "hi_res", "variant"}``; the image whose ``variant`` is
``"MAIN"`` is the primary image), ``categories`` (list) and ``store``.

Views, in slot order: [``image`` (MAIN) primary if images are used], ``title`` primary;
auxiliary ``features`` (bullets joined), ``description``, ``store_and_categories``, then
[``image_2`` .. ``image_K``: the other images in list order].

Images are URLs; nothing is downloaded at run time. Without `image_dir` the catalog is text-only
(title primary vs the other text views, docs/method.md#sides). With `image_dir`, an image is used when a file
named like the last path component of its ``hi_res``, ``large`` or ``thumb`` URL (first found)
exists in `image_dir`; others are missing views.

The metadata has no queries, so the data set poses only the cross-view tasks (random item split
by `split_seed`). Bad input is an error naming the file, line and field: malformed JSON, a byte
that is not UTF-8, a damaged or truncated gzip stream, a missing or empty ``parent_asin``, a missing
``title``, a field (or list entry) of the wrong type, a duplicate ``parent_asin``, a file with no
item. Items with no text and no usable image are skipped and counted
(``skipped["items_without_views"]``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..config import option
from ..data.catalog import ViewSlot
from ..data.dataset import MultiViewDataset
from ..data.fingerprint import DataFiles, walk_files
from ..features.cache import assemble_catalog
from . import DATASETS
from ._text_loading import TextEncoderConfig, clean_text, count_skip, join_nonempty, utf8_lines
from .base import DatasetPlugin

IMAGE_URL_KEYS = ("hi_res", "large", "thumb")


def find_metadata_file(data_dir: str, metadata_file: str) -> Path:
    """`metadata_file` (absolute, or relative to `data_dir`), else the only ``meta_*.jsonl[.gz]``
    (or ``*.jsonl[.gz]``) file in `data_dir`."""
    base = Path(data_dir).expanduser() if data_dir else Path.cwd()
    if metadata_file:
        p = Path(metadata_file).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise FileNotFoundError(f"amazon-reviews-2023: metadata file {p} does not exist")
        return p
    if not base.is_dir():
        raise FileNotFoundError(f"amazon-reviews-2023: data_dir {base} is not a folder")
    for pattern in ("meta_*.jsonl", "meta_*.jsonl.gz", "*.jsonl", "*.jsonl.gz"):
        found = sorted(base.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(
                f"amazon-reviews-2023: several metadata files in {base} ({', '.join(f.name for f in found[:5])}); "
                "choose one with --set metadata_file=NAME"
            )
    raise FileNotFoundError(f"amazon-reviews-2023: no meta_*.jsonl file in {base}; set data_dir / metadata_file")


def _local_image(image: dict, image_dir: Path) -> Path | None:
    for key in IMAGE_URL_KEYS:
        url = image.get(key)
        if isinstance(url, str) and url:
            name = Path(urlparse(url).path).name
            if name and (image_dir / name).is_file():
                return image_dir / name
    return None


def _expect(record: dict, key: str, kinds: tuple[type, ...], where: str, required: bool = False):
    if key not in record or record[key] is None:
        if required:
            raise ValueError(f"{where}: missing field {key!r}")
        return None
    value = record[key]
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


def _strings(value, key: str, where: str):
    """`value` unchanged if it is a string, None, or a list of strings (None entries allowed);
    a list holding anything else is an error naming the field and the position."""
    if isinstance(value, list):
        for j, v in enumerate(value):
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{where}: field {key!r}[{j}] must be a string, got {type(v).__name__}")
    return value


@DATASETS.register("amazon-reviews-2023")
class AmazonReviews2023(DatasetPlugin):
    """Amazon Reviews 2023 item metadata (JSONL): title, bullets, description, store/categories,
    optional local images; cross-view tasks only (no queries)."""

    summary = "Amazon Reviews 2023 item metadata (JSONL): text views (+ local images if given); cross-view tasks"

    @dataclass
    class Config(TextEncoderConfig):
        data_dir: str = option("", "folder holding the meta_<Category>.jsonl(.gz) file", "convention")
        metadata_file: str = option(
            "", "metadata file name in data_dir, or a path (empty: the only meta_*.jsonl there)", "convention"
        )
        image_dir: str = option(
            "", "folder of already-downloaded images named by their URL's last component (empty: text views only)", "convention"
        )
        image_backbone: str = option("efficientnet-lite0", "backbone spec for images (when image_dir is set)", "protocol")
        max_images: int = option(4, "image slots per item when image_dir is set (MAIN first)", "convention", ge=1)
        max_items: int = option(0, "read at most this many items, in file order (0 = all)", "convention", ge=0)

    @staticmethod
    def files(config: AmazonReviews2023.Config) -> tuple[Path, Path | None]:
        """(metadata file, image folder or None) the loader reads."""
        path = find_metadata_file(config.data_dir, config.metadata_file)
        image_dir = Path(config.image_dir).expanduser() if config.image_dir else None
        if image_dir is not None and not image_dir.is_dir():
            raise FileNotFoundError(f"amazon-reviews-2023: image_dir {image_dir} is not a folder")
        return path, image_dir

    def data_files(self, config: AmazonReviews2023.Config) -> DataFiles:  # type: ignore[override]  # the registry passes each plugin its own Config
        """The metadata file and, with `image_dir`, every file in it (images are looked up there
        by their URL's last component)."""
        path, image_dir = self.files(config)
        files: dict[str, str | Path] = {"metadata": path}
        if image_dir is not None:
            files.update({f"images/{name}": p for name, p in walk_files(image_dir, recursive=False).items()})
        return DataFiles(files, path.parent.resolve(), ("data_dir", "metadata_file", "image_dir", "cache_dir"))

    def build(self, config: AmazonReviews2023.Config) -> MultiViewDataset:  # type: ignore[override]  # the registry passes each plugin its own Config
        config.validate()
        t0 = time.perf_counter()
        path, image_dir = self.files(config)
        k_img = config.max_images if image_dir else 0
        skipped: dict[str, int] = {}
        ids: list[str] = []
        rows: list[list] = []
        first_line: dict[str, int] = {}
        for line_no, line in utf8_lines(path):
            if config.max_items and len(ids) >= config.max_items:
                break
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            asin = _expect(record, "parent_asin", (str,), where, required=True)
            if not asin.strip():
                raise ValueError(f"{where}: field 'parent_asin' is empty (every item needs an id)")
            if "title" not in record:
                raise ValueError(f"{where}: missing field 'title'")
            title = clean_text(_expect(record, "title", (str,), where), strip_html=False)
            features = clean_text(_strings(_expect(record, "features", (list,), where), "features", where), strip_html=False)
            description = clean_text(_strings(_expect(record, "description", (list, str), where), "description", where))
            categories = _strings(_expect(record, "categories", (list,), where), "categories", where) or []
            store = clean_text(_expect(record, "store", (str,), where), strip_html=False)
            cats = [c for c in (clean_text(x, strip_html=False) for x in categories) if c]  # blank entries dropped
            store_cats = join_nonempty([store, " > ".join(cats) or None])
            images: list = _expect(record, "images", (list,), where) or []
            main, others = None, []
            for j, image in enumerate(images):
                if not isinstance(image, dict):
                    raise ValueError(f"{where}: field 'images'[{j}] must be an object with thumb/large/hi_res/variant")
                if image_dir is None:
                    continue
                local = _local_image(image, image_dir)
                if image.get("variant") == "MAIN" and main is None:
                    main = local
                elif local is not None:
                    others.append(local)
            if asin in first_line:
                raise ValueError(f"{where}: duplicate parent_asin {asin!r} (first on line {first_line[asin]})")
            first_line[asin] = line_no
            texts = [title, features, description, store_cats]
            imgs = ([main] + others[: k_img - 1] + [None] * k_img)[:k_img] if k_img else []
            if not any(texts) and not any(imgs):
                count_skip(skipped, "items_without_views")
                continue
            ids.append(asin)
            rows.append(imgs[:1] + texts + imgs[1:])
        if not ids:
            why = f"every item lacked text and images ({skipped['items_without_views']} skipped)" if skipped else "no JSON lines"
            raise ValueError(f"{path}: no items read: {why}; the catalog would be empty")

        slots = (
            ([ViewSlot("image", "image", "primary")] if k_img else [])
            + [
                ViewSlot("title", "text", "primary"),
                ViewSlot("features", "text", "auxiliary"),
                ViewSlot("description", "text", "auxiliary"),
                ViewSlot("store_and_categories", "text", "auxiliary"),
            ]
            + [ViewSlot(f"image_{j + 2}", "image", "auxiliary") for j in range(max(k_img - 1, 0))]
        )
        cache = config.cache()
        backbones = {"text": config.backbone("text")}
        if k_img:
            backbones["image"] = config.backbone("image", config.image_backbone)
        catalog = assemble_catalog(slots, rows, backbones, cache, ids, f"amazon-reviews-2023 {path.name}")
        info = asdict(config)
        info.update(
            {
                "metadata_file_resolved": str(path),
                "backbone_fingerprints": {m: b.fingerprint() for m, b in backbones.items()},
                "cache_dir_resolved": str(cache.root) if config.use_cache else None,
                "features_encoded": cache.stats.encoded,
                "features_from_cache": cache.stats.hits,
                "load_seconds": round(time.perf_counter() - t0, 3),
            }
        )
        notes = [
            "amazon-reviews-2023: item metadata only, no queries; cross-view tasks on a random item split "
            f"(seed {config.split_seed}). "
            + ("Images from local files in image_dir (MAIN primary)." if k_img else "Text views only (no image_dir given).")
        ]
        return MultiViewDataset(
            name="amazon-reviews-2023",
            catalog=catalog,
            item_split=config.item_split(len(ids)),
            queries=None,
            config=info,
            skipped=skipped,
            notes=notes,
        )
