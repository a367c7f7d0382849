"""Small valid data folders in each on-disk format ftbench reads, for the bad-input and fuzz tests.

Each format is a writer (a valid minimal data set in the published schema, a few items), the
names of the files a parser reads, and a builder that loads the folder with the cheap `hash`
backbone and no feature cache. The bad-input tests break one file of a valid folder in one
chosen way; the fuzz test breaks them at random. Both need the same valid starting point, hence
this shared module (pytest loads it for every test in tests/datasets/).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ftbench.data.dataset import MultiViewDataset
from ftbench.datasets.amazon_reviews_2023 import AmazonReviews2023
from ftbench.datasets.esci import ESCI
from ftbench.datasets.grocery_store import GroceryStore
from ftbench.datasets.wands import WANDS
from PIL import Image

CHEAP = dict(text_backbone="hash", use_cache=False)


def write_wands(folder: Path) -> None:
    """product.csv, query.csv, label.csv (tab-separated, header line) in the WANDS schema."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "product.csv").write_text(
        "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\tproduct_features\t"
        "rating_count\taverage_rating\treview_count\n"
        "0\tsolid wood platform bed\tBeds\tFurniture / Beds\tgood, deep sleep.\twidth:64|style:Modern\t15\t4.5\t15\n"
        "1\tslow cooker\tSlow Cookers\tKitchen / Appliances\t\tcapacity:7|programmable:Yes\t100\t2.0\t98\n"
        '2\t"fawkes 36"" blue vanity"\tVanities\tBathroom\t<p>A vanity.</p>\t\t\t\t\n'
        "3\tvelvet accent chair\tAccent Chairs\tFurniture / Living Room\tsoft velvet\tcolor:Blue\t3\t5.0\t3\n",
        encoding="utf-8",
    )
    (folder / "query.csv").write_text(
        "query_id\tquery\tquery_class\n0\tplatform bed\tBeds\n1\tslow cooker\tSlow Cookers\n2\tblue vanity\tVanities\n"
        "3\tvelvet chair\tChairs\n",
        encoding="utf-8",
    )
    (folder / "label.csv").write_text(
        "id\tquery_id\tproduct_id\tlabel\n0\t0\t0\tExact\n1\t0\t3\tIrrelevant\n2\t1\t1\tExact\n3\t2\t2\tPartial\n"
        "4\t3\t3\tExact\n5\t3\t0\tPartial\n",
        encoding="utf-8",
    )


def write_esci(folder: Path) -> None:
    """shopping_queries_dataset_{examples,products}.csv in the ESCI schema (CSV export)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shopping_queries_dataset_examples.csv").write_text(
        "example_id,query,query_id,product_id,product_locale,esci_label,small_version,large_version,split\n"
        "0,red shampoo,1,P1,us,E,1,1,train\n1,red shampoo,1,P2,us,S,1,1,train\n2,wooden comb,2,P4,us,E,1,1,test\n"
        "3,wooden comb,2,P3,us,C,1,1,test\n4,argan oil,5,P1,us,E,1,1,train\n5,hair dryer,6,P3,us,E,1,1,train\n",
        encoding="utf-8",
    )
    (folder / "shopping_queries_dataset_products.csv").write_text(
        "product_id,product_title,product_description,product_bullet_point,product_brand,product_color,product_locale\n"
        'P1,Argan Shampoo,<p>Gentle</p>,"Sulfate free, vegan",Acme,Red,us\nP2,Rose Shampoo,,Floral,Acme,,us\n'
        "P3,Dryer,Fast,,,Black,us\nP4,Comb,Wood,Handmade,Combco,Brown,us\n",
        encoding="utf-8",
    )


def write_amazon(folder: Path) -> None:
    """meta_Beauty.jsonl: one JSON object per line in the Amazon Reviews 2023 item-metadata schema."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "parent_asin": "B001",
            "title": "Argan oil shampoo",
            "features": ["Sulfate free", "500 ml"],
            "description": ["Gentle <b>care</b>"],
            "store": "Acme",
            "categories": ["Beauty", "Hair"],
            "images": [],
        },
        {
            "parent_asin": "B002",
            "title": "Wooden comb",
            "features": [],
            "description": [],
            "store": "Combco",
            "categories": [],
            "images": [{"thumb": "https://x/b1.jpg", "large": "https://x/b1L.jpg", "variant": "MAIN"}],
        },
        {
            "parent_asin": "B003",
            "title": "Hair dryer 2000W",
            "features": ["Ionic"],
            "description": "Fast drying",
            "store": None,
            "categories": ["Beauty"],
            "images": [],
        },
        {
            "parent_asin": "B004",
            "title": "Shower cap",
            "features": ["Waterproof"],
            "description": [],
            "store": "Acme",
            "categories": [],
            "images": [],
        },
    ]
    (folder / "meta_Beauty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_grocery(folder: Path) -> None:
    """classes.csv, train/val/test.txt and the images they point to, in the Grocery Store layout."""
    icons = folder / "iconic-images-and-descriptions"
    rows = []
    products = [
        ("Anjou", 20, "Pear", "Fruit/Pear/Anjou"),
        ("Zucchini", 80, "Zucchini", "Vegetables/Zucchini"),
        ("Bravo-Juice", 29, "Juice", "Packages/Juice/Bravo-Juice"),
    ]
    for k, (name, cid, coarse, rel) in enumerate(products):
        d = icons / rel
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 12), (60 * k, 100, 200 - 60 * k)).save(d / f"{name}_Iconic.jpg")
        (d / f"{name}_Description.txt").write_text(f"About {name}.\n", encoding="utf-8")
        (d / f"{name}_Information.txt").write_text(f"Title: {name} title\nCountry and volume: Sweden, 1 kg\n", encoding="utf-8")
        rows.append(
            f"{name},{cid},{coarse},{k},/iconic-images-and-descriptions/{rel}/{name}_Iconic.jpg,"
            f"/iconic-images-and-descriptions/{rel}/{name}_Description.txt"
        )
    (folder / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str),"
        "Product Description Path (str)\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    for split in ("train", "val", "test"):
        lines = []
        for k, (name, cid, _, rel) in enumerate(products):
            d = folder / split / rel
            d.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (10, 8), (40 * k, 30, 90)).save(d / f"{name}_000.jpg")
            lines.append(f"{split}/{rel}/{name}_000.jpg, {cid}, {k}")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class DataFormat:
    """A data set format: how to write a valid folder, the parsed files, how to load a folder."""

    name: str
    write: Callable[[Path], None]
    files: tuple[str, ...]
    build: Callable[[Path], MultiViewDataset]


FORMATS = {
    "wands": DataFormat(
        "wands",
        write_wands,
        ("product.csv", "query.csv", "label.csv"),
        lambda d: WANDS().build(WANDS.Config(data_dir=str(d), **CHEAP)),
    ),
    "esci": DataFormat(
        "esci",
        write_esci,
        ("shopping_queries_dataset_examples.csv", "shopping_queries_dataset_products.csv"),
        lambda d: ESCI().build(ESCI.Config(data_dir=str(d), query_val_fraction=0.0, **CHEAP)),
    ),
    "amazon-reviews-2023": DataFormat(
        "amazon-reviews-2023",
        write_amazon,
        ("meta_Beauty.jsonl",),
        lambda d: AmazonReviews2023().build(AmazonReviews2023.Config(data_dir=str(d), **CHEAP)),
    ),
    "grocery-store": DataFormat(
        "grocery-store",
        write_grocery,
        ("classes.csv", "train.txt", "val.txt", "test.txt"),
        lambda d: GroceryStore().build(GroceryStore.Config(data_dir=str(d), image_backbone="hash", **CHEAP)),
    ),
}


@pytest.fixture(params=sorted(FORMATS))
def data_format(request) -> DataFormat:
    """Each on-disk format in turn."""
    return FORMATS[request.param]


@pytest.fixture
def formats() -> dict[str, DataFormat]:
    """All formats by name (for tests parametrized over specific cases of specific formats)."""
    return FORMATS
