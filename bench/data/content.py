"""Content ids of views: which views of different items are the same text, image or vector.

Attribute views repeat across a catalog ("gender: Men" is the view of half the items), and an
in-batch contrastive term would take the identical view of another item for a negative. Every view
gets a 64-bit *content id*: equal ids mean the same content (up to 64-bit hash collisions).

- A catalog assembled from raw inputs (`ftbench.features.cache.assemble_catalog`) keeps the ids of
  its inputs: the first 64 bits of the feature cache's key (sha256 of the UTF-8 text or of the image
  file's bytes), mixed with the modality.
- Any other view (precomputed vectors, generated catalogs) is identified by its feature vector: a
  hash of the float32 row's bytes, mixed with the modality. Through the feature cache, identical
  inputs get identical vectors, so the two tell the same views apart wherever both apply.

The training loop attaches the ids of a batch's views (and of its queries) to the batch only when
two different items (or two queries) of the batch share one (`batch_has_duplicates`): a batch
without duplicates is trained exactly as it was before ids existed. How the objectives use them:
docs/method.md, "Duplicated views".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .hashing import splitmix64

if TYPE_CHECKING:
    from .catalog import Catalog

#: share of a slot's views held by more than one item above which a run warns (`shared_view_warning`)
SHARED_VIEW_WARNING = 0.2
#: items read by the run-start check; larger catalogs are estimated on a seeded sample of this many
SHARED_VIEW_SAMPLE = 5_000


def modality_key(modality: str) -> np.uint64:
    """A 64-bit key per modality name, mixed into every content id: equal bytes of two modalities
    (a text and a vector, an item text and a query) are different content."""
    digest = hashlib.sha256(f"ftbench content id: {modality}".encode()).digest()
    return np.frombuffer(digest[:8], dtype="<u8")[0]


def digest_content_ids(modality: str, digests: Sequence[str]) -> np.ndarray:
    """int64 [n]: content ids from sha256 hex digests (`ftbench.features.backbones.content_hash`)."""
    first = np.array([int(h[:16], 16) for h in digests], dtype=np.uint64)
    return (first ^ modality_key(modality)).view(np.int64)


def feature_content_ids(values: np.ndarray, modality: str) -> np.ndarray:
    """int64 [n]: content ids of feature rows [n, D], a hash of each float32 row's bytes.

    Each 64-bit word of a row is hashed with its position (splitmix64) and the words' hashes are
    summed modulo 2^64, in one vectorised pass. An in-memory catalog hashes each slot once
    (`ArrayCatalog.content_ids`); a generated catalog's batches are hashed as they are read."""
    rows = np.ascontiguousarray(values, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"feature rows must be [n, D], got shape {rows.shape}")
    if rows.shape[1] % 2:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], 1), dtype=np.float32)], axis=1)
    words = rows.view(np.uint64)
    key = modality_key(modality)
    position = splitmix64(np.arange(words.shape[1], dtype=np.uint64) ^ key)
    with np.errstate(over="ignore"):
        total = splitmix64(words ^ position).sum(axis=1, dtype=np.uint64)
    return splitmix64(total ^ np.uint64(values.shape[1])).view(np.int64)


def view_content_ids(catalog: Catalog, items: np.ndarray, slot: int, values: np.ndarray | None = None) -> np.ndarray:
    """int64 [n]: content ids of `slot`'s views of `items`: the catalog's own where it keeps them,
    else the hash of the feature rows (`values` when the caller has read them already)."""
    ids = catalog.content_ids(items, slot)
    if ids is not None:
        return np.asarray(ids, dtype=np.int64)
    if values is None:
        values = catalog.features(items, slot)
    return feature_content_ids(values, catalog.slots[slot].modality)


def batch_has_duplicates(content: torch.Tensor, mask: torch.Tensor, query_content: torch.Tensor | None = None) -> bool:
    """Whether two different items of a batch share a view's content (content [B, W], mask [B, W]),
    or two of its queries (query_content [B]) have the same content."""
    if content.device.type == "cpu" and (query_content is None or query_content.device.type == "cpu"):
        return _batch_has_duplicates_host(content.numpy(), mask.numpy(), None if query_content is None else query_content.numpy())
    return _batch_has_duplicates_tensors(content, mask, query_content)


def _batch_has_duplicates_tensors(content: torch.Tensor, mask: torch.Tensor, query_content: torch.Tensor | None) -> bool:
    """`batch_has_duplicates` in tensor ops, on the tensors' device."""
    rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]  # non-decreasing
    ids, order = torch.sort(content[mask], stable=True)  # each id's views stay in item order
    rows = rows[order]
    if bool(((ids[1:] == ids[:-1]) & (rows[1:] != rows[:-1])).any()):
        return True
    if query_content is None:
        return False
    ids = torch.sort(query_content).values
    return bool((ids[1:] == ids[:-1]).any())


def _batch_has_duplicates_host(content: np.ndarray, mask: np.ndarray, query_content: np.ndarray | None) -> bool:
    """`batch_has_duplicates` on host arrays: the same test in numpy, without a dozen small tensor ops."""
    rows, _ = np.nonzero(mask)  # row-major, as a boolean mask indexes: non-decreasing rows
    order = np.argsort(content[mask], kind="stable")
    ids, rows = content[mask][order], rows[order]
    if bool(((ids[1:] == ids[:-1]) & (rows[1:] != rows[:-1])).any()):
        return True
    if query_content is None:
        return False
    ids = np.sort(query_content)
    return bool((ids[1:] == ids[:-1]).any())


def shared_view_share(catalog: Catalog, max_items: int | None = None, seed: int = 0) -> dict[str, float]:
    """{slot name: share of the slot's views whose content another item also has (in any slot)}.

    0 for a slot without views. With `max_items` below the catalog size, a seeded uniform sample of
    that many items is read and sharing is counted within the sample (an estimate that can only be
    lower than the catalog's share)."""
    n = catalog.num_items
    items = np.arange(n, dtype=np.int64)
    if max_items is not None and n > max_items:
        items = np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))
    available = np.asarray(catalog.availability(items), dtype=bool)
    per_slot = []
    for s in range(len(catalog.slots)):
        rows = np.flatnonzero(available[:, s])
        per_slot.append((rows, view_content_ids(catalog, items[rows], s)))
    # distinct items holding each content id, over every slot
    pairs = np.unique(np.concatenate([np.stack([ids, rows]) for rows, ids in per_slot], axis=1), axis=1)
    ids, holders = np.unique(pairs[0], return_counts=True)
    out = {}
    for slot, (rows, slot_ids) in zip(catalog.slots, per_slot):
        if len(rows) == 0:
            out[slot.name] = 0.0
            continue
        out[slot.name] = float((holders[np.searchsorted(ids, slot_ids)] > 1).mean())
    return out


def shared_view_warning(
    catalog: Catalog, threshold: float = SHARED_VIEW_WARNING, max_items: int = SHARED_VIEW_SAMPLE
) -> str | None:
    """A one-line warning naming each slot of which more than `threshold` of the views are shared
    by several items, or None."""
    share = shared_view_share(catalog, max_items=max_items)
    large = [(name, value) for name, value in share.items() if value > threshold]
    if not large:
        return None
    sampled = f" (in a sample of {max_items} items)" if catalog.num_items > max_items else ""
    listed = ", ".join(f"{name!r} {value:.0%}" for name, value in large)
    return (
        f"warning: views repeat across items{sampled}: share of each slot's views that another item also has: "
        f"{listed}; identical views of other items are masked out of the in-batch negatives "
        f"(docs/method.md, 'Duplicated views'), and an X->item task from such a slot cannot single out one item"
    )
