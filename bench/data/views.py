"""View bookkeeping shared by all objectives: slot layout, the `--views` cap, the two sides of
cross-view alignment, primary-weighted view weights, and per-step view selection.

Sides: with image and text views, side 0 holds the image views and side 1 the text
views (and any other modality). In a single-modality catalog side 0 holds the primary view(s) and
side 1 the auxiliary views, so a positive pair is never a view with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .catalog import Catalog


@dataclass(frozen=True)
class SlotLayout:
    """Per-slot tensors: role, side and modality code, derived once from a catalog."""

    names: tuple[str, ...]
    modalities: tuple[str, ...]  # modality names; `modality_code` indexes this tuple
    modality_code: torch.Tensor  # long [S]
    is_primary: torch.Tensor  # bool [S]
    side: torch.Tensor  # long [S], 0 or 1
    multimodal: bool  # True when sides are image vs text, False when primary vs auxiliary

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> SlotLayout:
        mods = tuple(catalog.modalities)
        slot_mod = [s.modality for s in catalog.slots]
        is_primary = torch.tensor([s.role == "primary" for s in catalog.slots])
        multimodal = "image" in mods and len(mods) > 1
        if multimodal:
            side = torch.tensor([0 if m == "image" else 1 for m in slot_mod])
        else:
            side = torch.tensor([0 if p else 1 for p in is_primary.tolist()])
        return cls(
            names=tuple(s.name for s in catalog.slots),
            modalities=mods,
            modality_code=torch.tensor([mods.index(m) for m in slot_mod]),
            is_primary=is_primary,
            side=side.long(),
            multimodal=multimodal,
        )

    @property
    def num_slots(self) -> int:
        return len(self.names)


def cap_views(available: torch.Tensor, max_views: int) -> torch.Tensor:
    """Keep each item's first `max_views` available views in slot order (primary first).

    Items with fewer views keep what they have (`--views V`).
    """
    if max_views < 1:
        raise ValueError(f"--views must be at least 1, got {max_views}")
    available = available.bool()
    return available & (available.long().cumsum(dim=1) <= max_views)


def primary_weighted(mask: torch.Tensor, is_primary: torch.Tensor, primary_weight: float) -> torch.Tensor:
    """Weights [.., V] over the views in `mask`, summing to 1 per row (0 for a row with no view).

    The primary views share `primary_weight` evenly and the auxiliary views share the rest
    evenly; a row with no auxiliary view gives its primaries weight 1, a row with no primary view
    spreads weight 1 over its auxiliary views.
    """
    mask = mask.bool()
    primary = mask & is_primary
    auxiliary = mask & ~is_primary
    n_p = primary.sum(-1, keepdim=True).float()
    n_a = auxiliary.sum(-1, keepdim=True).float()
    share_p = torch.where(n_a > 0, torch.full_like(n_p, primary_weight), torch.ones_like(n_p))
    share_p = torch.where(n_p > 0, share_p, torch.zeros_like(n_p))
    share_a = 1.0 - share_p
    share_a = torch.where(n_a > 0, share_a, torch.zeros_like(n_a))
    w = primary.float() * share_p / n_p.clamp(min=1) + auxiliary.float() * share_a / n_a.clamp(min=1)
    return w


def side_weights(mask: torch.Tensor, is_primary: torch.Tensor, side: torch.Tensor, primary_weight: float) -> torch.Tensor:
    """Primary-weighted marginals of each side separately: weights sum to 1 within each side."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for s in (0, 1):
        in_side = mask.bool() & (side == s)
        out = out + primary_weighted(in_side, is_primary, primary_weight)
    return out


@dataclass
class ViewSelection:
    """Which slots to encode for each item in one step, in slot space [B, S].

    `side_weight`: weights summing to 1 within each side (marginals mu, nu); `item_weight`: the
    fused-item weights over all selected views. Objectives that subsample views rescale these so
    that weighted sums stay unbiased estimates of the all-view sums.
    """

    mask: torch.Tensor
    side_weight: torch.Tensor
    item_weight: torch.Tensor


def all_views(mask: torch.Tensor, layout: SlotLayout, primary_weight: float) -> ViewSelection:
    """The default selection: every available view (after the `--views` cap)."""
    return ViewSelection(
        mask=mask,
        side_weight=side_weights(mask, layout.is_primary, layout.side, primary_weight),
        item_weight=primary_weighted(mask, layout.is_primary, primary_weight),
    )


def first_of_each_side(mask: torch.Tensor, layout: SlotLayout) -> torch.Tensor:
    """For each item, the first view of each side: the `clip` pair.

    A side that has primary slots in the layout contributes its first primary view only (never an
    auxiliary stand-in); a side without primary slots (the auxiliary group of a single-modality
    catalog) contributes its first auxiliary view. With image and text this is (primary image,
    title); in a single-modality catalog it is the primary view and the first auxiliary view.
    """
    chosen = torch.zeros_like(mask, dtype=torch.bool)
    for s in (0, 1):
        in_side = layout.side == s
        has_primary_slot = bool((in_side & layout.is_primary).any())
        cand = mask & in_side & (layout.is_primary if has_primary_slot else torch.ones_like(in_side))
        chosen |= cand & (cand.long().cumsum(dim=1) == 1)
    return chosen


def catalog_availability(catalog: Catalog, items: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(catalog.availability(items), dtype=bool))
