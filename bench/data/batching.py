"""Dense, masked batches of item views, compacted to the views an objective asked for.

A batch holds B items and W view positions (W = the largest number of selected views of any item
in the batch), so an objective that samples 2 + k views per item pays for 2 + k views whatever V
is. Positions keep slot order; padding positions have `mask == False`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from .catalog import Catalog
from .content import view_content_ids
from .views import SlotLayout, ViewSelection


@dataclass
class ViewBatch:
    """Raw (backbone-feature) views of B items, [B, W] per-position metadata.

    `features[m] = (positions, values)`: flat positions into B*W and float32 [n_m, D_m] values of
    the views of modality m. `content`: int64 [B, W] content ids of the views
    (`ftbench.data.content`; 0 at padding), when asked for, else None.
    """

    item_index: torch.Tensor  # long [B], catalog indices
    slot: torch.Tensor  # long [B, W], -1 at padding
    mask: torch.Tensor  # bool [B, W]
    is_primary: torch.Tensor  # bool [B, W]
    side: torch.Tensor  # long [B, W]
    modality_code: torch.Tensor  # long [B, W]
    side_weight: torch.Tensor  # float [B, W]
    item_weight: torch.Tensor  # float [B, W]
    features: dict[str, tuple[torch.Tensor, torch.Tensor]]
    content: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mask.shape)  # type: ignore[return-value]  # the mask is 2-d

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ViewBatch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device, non_blocking=non_blocking)
        moved["features"] = {
            m: (p.to(device, non_blocking=non_blocking), v.to(device, non_blocking=non_blocking))
            for m, (p, v) in self.features.items()
        }
        return replace(self, **moved)

    def pin_memory(self) -> ViewBatch:
        """A copy in page-locked host memory, so that `.to(cuda, non_blocking=True)` is an
        asynchronous DMA transfer (CUDA only: pinning needs an accelerator)."""
        pinned = {
            f.name: getattr(self, f.name).pin_memory() for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)
        }
        pinned["features"] = {m: (p.pin_memory(), v.pin_memory()) for m, (p, v) in self.features.items()}
        return replace(self, **pinned)


def compact_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot indices [B, W] of each row's selected slots in slot order, and their validity mask."""
    counts = mask.sum(dim=1)
    width = max(int(counts.max().item()) if mask.numel() else 0, 1)
    # stable sort puts selected slots (key 0) first, in slot order
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width).unsqueeze(0) < counts.unsqueeze(1)
    return torch.where(valid, order, torch.full_like(order, -1)), valid


def build_view_batch(
    catalog: Catalog | None,
    layout: SlotLayout,
    items: np.ndarray,
    selection: ViewSelection,
    content: bool = False,
) -> ViewBatch:
    """Materialise the selected views of `items` (catalog indices) as a compact ViewBatch.

    With `catalog=None` only the positions and weights are built (`features` stays empty): the
    evaluation then fills the positions with view embeddings it has already computed. `content`:
    also the views' content ids (the training loop's, for duplicated views)."""
    items = np.asarray(items, dtype=np.int64)
    slot, valid = compact_positions(selection.mask.cpu())
    safe = slot.clamp(min=0)
    gather = lambda t: torch.where(valid, t[safe], torch.zeros_like(t[safe]))  # noqa: E731
    side_w = torch.where(valid, selection.side_weight.gather(1, safe), torch.zeros(()))
    item_w = torch.where(valid, selection.item_weight.gather(1, safe), torch.zeros(()))
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    # the positions of each slot's views, found on the host arrays: numpy's few microseconds per
    # slot against a handful of small tensor ops each (the same int64 positions and ids)
    flat_slot = slot.reshape(-1).numpy()
    width = slot.shape[1]
    content_ids = np.zeros(slot.numel(), dtype=np.int64) if content and catalog is not None else None
    slot_codes = layout.modality_code.tolist()
    for code, modality in enumerate(layout.modalities if catalog is not None else ()):
        assert catalog is not None  # the loop runs only with a catalog
        pos_list, val_list = [], []
        for s in (s for s, c in enumerate(slot_codes) if c == code):
            pos = np.flatnonzero(flat_slot == s)
            if len(pos) == 0:
                continue
            rows = pos // width
            values = np.ascontiguousarray(catalog.features(items[rows], s), dtype=np.float32)
            pos_list.append(torch.from_numpy(pos))
            val_list.append(torch.from_numpy(values))
            if content_ids is not None:
                content_ids[pos] = view_content_ids(catalog, items[rows], s, values)
        if pos_list:
            features[modality] = (torch.cat(pos_list), torch.cat(val_list))
    return ViewBatch(
        item_index=torch.from_numpy(items),
        slot=slot,
        mask=valid,
        is_primary=gather(layout.is_primary) & valid,
        side=gather(layout.side),
        modality_code=gather(layout.modality_code),
        side_weight=side_w.float(),
        item_weight=item_w.float(),
        features=features,
        content=None if content_ids is None else torch.from_numpy(content_ids).view(slot.shape),
    )
