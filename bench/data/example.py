"""`ftbench data init DIR`: a small, valid example catalog to edit into your own.

It holds every part of the catalog layout (docs/catalog.md; `ftbench.datasets.catalog`): 24 items
(six kinds of homeware in four colours) with a title, a description (one item lacks it: a missing
view), a main image and a list of two more photos (one item has one: a missing view at position
2), each image a PNG drawn here with PIL (the kind's shape in the item's colour); ``catalog.json``
declaring those views in slot order; 24 text queries, one per item, each relevant to its item
(grade 2), to another item of its kind in its split (grade 1) and judged not relevant to an item of
another kind (grade 0); qrels split 16 / 4 / 4 like the items (a query's items are in its split, so
every training pair can be trained on). Everything is deterministic: two inits give the same
bytes, hence the same data fingerprint.

The items are written as ``items.jsonl``, or as ``items.csv`` (``items_format="csv"``: the photos as
numbered columns ``photos_1, photos_2``). The folder must be new or empty; it appears only when
complete (written beside it, then renamed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

COLOURS = {"red": (200, 40, 40), "blue": (40, 80, 200), "green": (40, 150, 60), "yellow": (225, 190, 30)}
#: kind -> (title words, description, shape drawn, query wording)
KINDS = {
    "mug": ("stoneware mug", "A 350 ml {colour} stoneware mug for coffee or tea; dishwasher safe.", "circle", "coffee cup"),
    "lamp": ("desk lamp", "An adjustable desk lamp with a {colour} shade and a warm LED bulb.", "triangle", "reading light"),
    "chair": ("dining chair", "A solid oak dining chair with a {colour} woven seat.", "square", "seat for the dining table"),
    "vase": ("glass vase", "A hand-blown {colour} glass vase, 30 cm tall, for cut flowers.", "tall ellipse", "flower vase"),
    "rug": ("wool rug", "A flat-woven {colour} wool rug, 160 x 230 cm.", "wide bar", "carpet for the living room"),
    "clock": (
        "wall clock",
        "A silent quartz wall clock with a {colour} frame, 30 cm across.",
        "ring",
        "clock for the kitchen wall",
    ),
}
ITEMS_FORMATS = ("jsonl", "csv")
IMAGE_SIZE = 64


def _split(kind_index: int, colour_index: int) -> str:
    """16 train, 4 dev, 4 test items: per kind, the first two colours train; the third and fourth
    colours train for two kinds, dev for two, test for two (so that a dev or test query has a
    second item of its kind in its split)."""
    if colour_index < 2:
        return "train"
    return ("train", "train", "dev", "dev", "test", "test")[kind_index]


def _draw(shape: str, colour: tuple[int, int, int], variant: int) -> bytes:
    """A PNG: the shape in the colour; variant 0 on white, 1 smaller on grey, 2 shifted on beige."""
    from PIL import Image, ImageDraw  # optional: encoders extra (pillow)

    background = ((255, 255, 255), (200, 200, 200), (235, 225, 200))[variant]
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    pad, shift = (8, 18, 12)[variant], (0, 0, 6)[variant]
    x0, y0, x1, y1 = pad + shift, pad, IMAGE_SIZE - pad + shift, IMAGE_SIZE - pad
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "tall ellipse":
        draw.ellipse((x0 + (x1 - x0) // 4, y0, x1 - (x1 - x0) // 4, y1), fill=colour)
    elif shape == "wide bar":
        draw.rectangle((x0, y0 + (y1 - y0) // 3, x1, y1 - (y1 - y0) // 3), fill=colour)
    else:  # ring
        draw.ellipse((x0, y0, x1, y1), outline=colour, width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def example_catalog() -> tuple[list[dict], list[dict], dict[str, list[tuple[str, str, int]]], dict[str, bytes], dict]:
    """(items, queries, qrels by split name, image bytes by path, catalog.json) of the example."""
    items, queries, images = [], [], {}
    qrels: dict[str, list[tuple[str, str, int]]] = {"train": [], "dev": [], "test": []}
    kinds = list(KINDS)
    for k, kind in enumerate(kinds):
        words, description, shape, asked = KINDS[kind]
        for c, (colour, rgb) in enumerate(COLOURS.items()):
            item_id = f"{colour}-{kind}"
            photos = [f"images/{item_id}_{v}.png" for v in (1, 2)]
            for v, path in enumerate([f"images/{item_id}.png", *photos]):
                images[path] = _draw(shape, rgb, v)
            record: dict[str, Any] = {
                "id": item_id,
                "title": f"{colour} {words}",
                "description": description.format(colour=colour),
                "image": f"images/{item_id}.png",
                "photos": photos,
                "split": _split(k, c),
            }
            if item_id == "yellow-vase":
                del record["description"]  # a missing view
            if item_id == "green-rug":
                record["photos"] = photos[:1]  # a missing view at position 2
                del images[photos[1]]
            items.append(record)
    by_split: dict[str, list[dict]] = {}
    for record in items:
        by_split.setdefault(record["split"], []).append(record)
    for record in items:
        kind, colour = record["id"].split("-")[1], record["id"].split("-")[0]
        qid = f"q-{record['id']}"
        queries.append({"id": qid, "text": f"{colour} {KINDS[kind][3]}"})
        same_split = by_split[record["split"]]
        sibling = next(r for r in same_split if r is not record and r["id"].endswith(f"-{kind}"))
        other = next(r for r in same_split if not r["id"].endswith(f"-{kind}"))
        qrels[record["split"]] += [(qid, record["id"], 2), (qid, sibling["id"], 1), (qid, other["id"], 0)]
    manifest = {
        "name": "example",
        "views": [
            {"field": "image", "modality": "image", "role": "primary"},
            {"field": "title", "modality": "text", "role": "primary"},
            {"field": "description", "modality": "text", "role": "auxiliary"},
            {"field": "photos", "modality": "image", "role": "auxiliary", "slot": "photo"},
        ],
        "query_task": "query->item",
        "cross_view_items": "test",
    }
    return items, queries, qrels, images, manifest


def _items_csv(items: list[dict]) -> str:
    width = max(len(r.get("photos", [])) for r in items)
    columns = ["id", "title", "description", "image", *[f"photos_{k + 1}" for k in range(width)], "split"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in items:
        photos = r.get("photos", [])
        writer.writerow(
            [
                r["id"],
                r["title"],
                r.get("description", ""),
                r["image"],
                *[photos[k] if k < len(photos) else "" for k in range(width)],
                r["split"],
            ]
        )
    return buffer.getvalue()


def write_example_catalog(out: str | Path, items_format: str = "jsonl") -> dict[str, int]:
    """Write the example catalog into `out` (new or empty); returns counts of what was written.
    A non-empty `out` is a FileExistsError naming it."""
    if items_format not in ITEMS_FORMATS:
        raise ValueError(f"items format must be one of {', '.join(ITEMS_FORMATS)}, got {items_format!r}")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} is not an empty folder; `ftbench data init` writes a new or empty folder (it never overwrites)"
        )
    items, queries, qrels, images, manifest = example_catalog()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (work / "images").mkdir()
        for path, data in images.items():
            (work / path).write_bytes(data)
        if items_format == "csv":
            (work / "items.csv").write_text(_items_csv(items), encoding="utf-8")
        else:
            (work / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
        (work / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
        (work / "qrels").mkdir()
        for split, lines in qrels.items():
            text = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{i}\t{g}\n" for q, i, g in lines)
            (work / "qrels" / f"{split}.tsv").write_text(text, encoding="utf-8")
        (work / "catalog.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        work.chmod(0o755)  # mkdtemp makes it private; a catalog folder is an ordinary one
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {
        "items": len(items),
        "images": len(images),
        "queries": len(queries),
        **{f"qrels/{s}.tsv lines": len(v) for s, v in qrels.items()},
    }
