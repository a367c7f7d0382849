"""The catalog: N items, each seen through a fixed, ordered list of view slots.

A *slot* is a kind of view (e.g. "primary image", "title", "image 2", "description") with a
modality and a role. Slots are ordered primary first, then auxiliary in a fixed order, which is
the order `--views V` keeps. An item may lack any slot (availability mask). Features are the
frozen backbone vectors, one dimension per modality; catalogs may generate them lazily.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .content import feature_content_ids

Role = Literal["primary", "auxiliary"]


@dataclass(frozen=True)
class ViewSlot:
    """One kind of view: its name, modality (`image`, `text`, ...) and role."""

    name: str
    modality: str
    role: Role

    def __post_init__(self) -> None:
        if self.role not in ("primary", "auxiliary"):
            raise ValueError(f"view slot {self.name!r}: role must be 'primary' or 'auxiliary', got {self.role!r}")


class Catalog(ABC):
    """Items with views. Subclasses provide availability and features for any set of items."""

    slots: tuple[ViewSlot, ...]
    feature_dims: dict[str, int]

    @property
    @abstractmethod
    def num_items(self) -> int: ...

    @abstractmethod
    def item_ids(self) -> np.ndarray:
        """Stable external ids of all items (strings or integers), in catalog order."""

    @abstractmethod
    def availability(self, items: np.ndarray) -> np.ndarray:
        """Bool [n, S]: which slots each of `items` has."""

    @abstractmethod
    def features(self, items: np.ndarray, slot: int) -> np.ndarray:
        """Float32 [n, D_modality]: backbone features of `slot` for `items` (zeros where absent)."""

    def content_ids(self, items: np.ndarray, slot: int) -> np.ndarray | None:
        """int64 [n]: content ids of `slot`'s views of `items` (`ftbench.data.content`), where the
        catalog keeps those of its raw inputs; None (the default): views are identified by their
        feature vectors."""
        return None

    # -- derived helpers -------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        seen: list[str] = []
        for s in self.slots:
            if s.modality not in seen:
                seen.append(s.modality)
        return seen

    def check_slots(self) -> None:
        """Primary slots must come first; every modality must have a feature dimension."""
        roles = [s.role for s in self.slots]
        if "primary" not in roles:
            raise ValueError("catalog has no primary view slot")
        first_aux = roles.index("auxiliary") if "auxiliary" in roles else len(roles)
        if "primary" in roles[first_aux:]:
            raise ValueError("catalog view slots must list primary views before auxiliary views")
        missing = [m for m in self.modalities if m not in self.feature_dims]
        if missing:
            raise ValueError(f"catalog has no feature dimension for modalities {missing}")
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"catalog view slot names must be unique, got {names}")


class ArrayCatalog(Catalog):
    """A catalog held in memory: one float32 array [N, D] per slot plus an availability mask.

    Construction refuses what would silently corrupt training or evaluation, naming the source
    and the first offending item: no item, an availability mask or feature array of the wrong
    shape, a modality with two dimensions, NaN or infinite features in an available view, an
    item with no view at all (it would be served as an all-zero embedding), duplicate item ids.
    """

    def __init__(
        self,
        slots: Sequence[ViewSlot],
        slot_features: Sequence[np.ndarray],
        available: np.ndarray,
        item_ids: Sequence | np.ndarray,
        source: str = "in-memory catalog",
        content_ids: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        self.slots = tuple(slots)
        self.source = source
        available = np.asarray(available, dtype=bool)
        n = len(item_ids)
        if n == 0:
            raise ValueError(f"{source}: the catalog is empty (no items)")
        if available.shape != (n, len(self.slots)):
            raise ValueError(f"{source}: availability has shape {available.shape}, expected {(n, len(self.slots))}")
        if len(slot_features) != len(self.slots):
            raise ValueError(f"{source}: {len(slot_features)} feature arrays for {len(self.slots)} slots")
        dims: dict[str, int] = {}
        feats = []
        for slot, array in zip(self.slots, slot_features):
            array = np.ascontiguousarray(array, dtype=np.float32)
            if array.ndim != 2 or array.shape[0] != n:
                raise ValueError(f"{source}: features of view {slot.name!r} have shape {array.shape}, expected ({n}, D)")
            if dims.setdefault(slot.modality, array.shape[1]) != array.shape[1]:
                raise ValueError(
                    f"{source}: view {slot.name!r} has dimension {array.shape[1]}, but modality "
                    f"{slot.modality!r} has dimension {dims[slot.modality]} elsewhere"
                )
            bad = available[:, self.slots.index(slot)] & ~np.isfinite(array).all(axis=1)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{source}: features of view {slot.name!r} contain NaN or infinite values "
                    f"({int(bad.sum())} item(s), first: item {item_ids[first]!r} at row {first})"
                )
            feats.append(array)
        viewless = ~available.any(axis=1)
        if viewless.any():
            first = int(np.flatnonzero(viewless)[0])
            raise ValueError(
                f"{source}: {int(viewless.sum())} item(s) have no view at all, first: item {item_ids[first]!r} "
                f"at row {first} (a loader must skip such items and count them in `skipped`)"
            )
        ids = np.asarray(item_ids)
        if len(np.unique(ids)) != n:
            uniq, counts = np.unique(ids, return_counts=True)
            raise ValueError(f"{source}: duplicate item ids, e.g. {uniq[counts > 1][:3].tolist()}")
        self._content: list[np.ndarray | None] = [None] * len(self.slots)
        if content_ids is not None:
            if len(content_ids) != len(self.slots):
                raise ValueError(f"{source}: {len(content_ids)} content-id arrays for {len(self.slots)} slots")
            for k, (slot, given) in enumerate(zip(self.slots, content_ids)):
                if given is None:
                    continue
                given = np.asarray(given)
                if given.shape != (n,) or given.dtype != np.int64:
                    raise ValueError(
                        f"{source}: content ids of view {slot.name!r} must be int64 of shape ({n},), "
                        f"got {given.dtype} {given.shape}"
                    )
                self._content[k] = given
        self.feature_dims = dims
        self._features = feats
        self._available = available
        self._ids = ids
        self.check_slots()

    @property
    def num_items(self) -> int:
        return len(self._ids)

    def item_ids(self) -> np.ndarray:
        return self._ids

    def availability(self, items: np.ndarray) -> np.ndarray:
        return self._available[np.asarray(items)]

    def features(self, items: np.ndarray, slot: int) -> np.ndarray:
        return self._features[slot][np.asarray(items)]

    def content_ids(self, items: np.ndarray, slot: int) -> np.ndarray:
        """The ids of the raw inputs where the catalog was given them, else of the feature rows,
        hashed once per slot on first use (a batch then only indexes them)."""
        content = self._content[slot]
        if content is None:
            features, modality = self._features[slot], self.slots[slot].modality
            step = 65_536  # rows hashed at a time: bounded temporaries on large catalogs
            content = np.concatenate(
                [feature_content_ids(features[a : a + step], modality) for a in range(0, max(len(features), 1), step)]
            )
            self._content[slot] = content
        return content[np.asarray(items)]
