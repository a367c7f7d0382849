"""Encoding: items -> `--views` cap -> the objective's view selection -> towers -> EncodedViews.

Training (`ftbench.train.loop`) and evaluation (`ftbench.eval.evaluator`) encode items the same way;
this module is that one path, so evaluation does not depend on the training loop.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.batching import ViewBatch, build_view_batch
from ..data.catalog import Catalog
from ..data.dataset import MultiViewDataset
from ..data.views import SlotLayout, ViewSelection, cap_views, catalog_availability
from ..objectives.base import EncodedViews, Objective
from .towers import Towers


def capped_availability(catalog: Catalog, items: np.ndarray, max_views: int) -> torch.Tensor:
    """[n, S] bool: the views `items` have, cut to each item's first `max_views` (`--views`)."""
    return cap_views(catalog_availability(catalog, items), max_views)


def batch_selection(
    dataset: MultiViewDataset,
    objective: Objective,
    items: np.ndarray,
    max_views: int,
    *,
    training: bool,
    generator: torch.Generator | None = None,
    exclude_slot: int | None = None,
) -> ViewSelection:
    """Availability -> `--views` cap -> the objective's view selection, [B, S] in slot space."""
    mask = capped_availability(dataset.catalog, items, max_views)
    if exclude_slot is not None:
        mask[:, exclude_slot] = False
    return objective.select_views(mask, generator) if training else objective.inference_selection(mask)


def encoded_views(embeddings: torch.Tensor, raw: ViewBatch) -> EncodedViews:
    """Tower outputs and the per-position metadata of the ViewBatch they were computed from."""
    return EncodedViews(
        embeddings=embeddings,
        mask=raw.mask,
        is_primary=raw.is_primary,
        side=raw.side,
        side_weight=raw.side_weight,
        item_weight=raw.item_weight,
        item_index=raw.item_index,
        content=raw.content,
    )


def to_device(tensors, device: torch.device):
    """Host -> device copy of a ViewBatch or tensor: on CUDA from pinned (page-locked) memory with a
    non-blocking copy, so the transfer overlaps the GPU work already queued; elsewhere a plain `.to`."""
    if device.type == "cuda":
        return tensors.pin_memory().to(device, non_blocking=True)
    return tensors.to(device)


def encode_batch(
    dataset: MultiViewDataset,
    layout: SlotLayout,
    towers: Towers,
    objective: Objective,
    items: np.ndarray,
    max_views: int,
    device: torch.device,
    *,
    training: bool,
    generator: torch.Generator | None = None,
    exclude_slot: int | None = None,
) -> EncodedViews:
    """Availability -> `--views` cap -> the objective's view selection -> towers -> EncodedViews."""
    selection = batch_selection(
        dataset, objective, items, max_views, training=training, generator=generator, exclude_slot=exclude_slot
    )
    raw = to_device(build_view_batch(dataset.catalog, layout, items, selection), device)
    return encoded_views(towers.encode_views(raw), raw)
