"""`--save-embeddings`: the fused item embeddings of the whole catalog and the test query
embeddings, with their ids, for use in an ANN index.

Layout (a folder beside the result file, written to a temporary folder and renamed, so it is
complete or absent): `item_embeddings.npy` float32 [N, d], `item_ids.npy`, `query_embeddings.npy`
float32 [Q_test, d], `query_ids.npy`, `manifest.json`. Ids are stored as numeric or fixed-width
unicode arrays, readable with `numpy.load(path, allow_pickle=False)`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..files import remove_interrupted_writes, staging_folder


def _ids(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array if array.dtype.kind in "iuf" else array.astype(str)


def save_run_embeddings(stem: Path, evaluator, dataset) -> Path:
    """The run's embeddings into `<stem>.embeddings/`: every item, the test queries."""
    items = np.arange(dataset.catalog.num_items)
    queries = None
    if dataset.queries is not None:
        qidx = dataset.queries.indices("test")
        queries = (evaluator.embed_queries(qidx).cpu().numpy(), dataset.queries.ids[qidx], "test")
    return write_embeddings(
        Path(str(stem) + ".embeddings"), evaluator.embed_items(items).cpu().numpy(), dataset.catalog.item_ids(), queries
    )


def write_embeddings(
    target: Path,
    item_embeddings: np.ndarray,
    item_ids: np.ndarray,
    queries: tuple[np.ndarray, np.ndarray, str] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the layout above to folder `target` (replaced): item embeddings and ids, and with
    `queries` = (embeddings, ids, split name) the query embeddings and ids; `extra` joins the manifest."""
    target = Path(target)
    remove_interrupted_writes(target)  # temp folders of a killed earlier run
    target.parent.mkdir(parents=True, exist_ok=True)  # --out is created by its first writer, as atomic_write does
    with staging_folder(target) as tmp:
        np.save(tmp / "item_embeddings.npy", np.asarray(item_embeddings, dtype=np.float32))
        np.save(tmp / "item_ids.npy", _ids(item_ids))
        manifest: dict[str, object] = {
            "items": int(len(item_embeddings)),
            "dim": int(np.shape(item_embeddings)[1]),
            "normalised": True,
        }
        if queries is not None:
            embeddings, ids, split = queries
            np.save(tmp / "query_embeddings.npy", np.asarray(embeddings, dtype=np.float32))
            np.save(tmp / "query_ids.npy", _ids(ids))
            manifest["queries"] = int(len(embeddings))
            manifest["query_split"] = split
        manifest.update(extra or {})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target
