"""A multi-view data set: catalog + item split + optional queries, as every data set plugin returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalog import Catalog
from .queries import QuerySet
from .splits import SPLIT_CODES, split_counts


@dataclass
class MultiViewDataset:
    """What the harness trains and evaluates on.

    `item_split` [N] is 0/1/2 (train/val/test); cross-view tasks use test items only. `queries`
    (optional) search the whole catalog. `skipped` counts input records a loader skipped by a
    documented policy (written into every result). `query_tasks` names the query task(s) this
    data set poses: normally `query->item`; the Grocery Store set calls its photo queries
    `photo->product`. `cross_view_items` overrides the items the cross-view tasks use
    (default: the test split); a data set whose split is over photos rather than products (Grocery
    Store) sets it and says so in `notes`.
    """

    name: str
    catalog: Catalog
    item_split: np.ndarray
    queries: QuerySet | None = None
    query_task: str = "query->item"
    cross_view_items: np.ndarray | None = None
    config: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.item_split = np.asarray(self.item_split, dtype=np.int8)
        if len(self.item_split) != self.catalog.num_items:
            raise ValueError(
                f"data set {self.name!r}: item split has {len(self.item_split)} entries for {self.catalog.num_items} items"
            )
        if self.queries is not None:
            self.queries.check_against(self.catalog.num_items)
            if self.queries.modality not in self.catalog.feature_dims:
                raise ValueError(
                    f"data set {self.name!r}: queries use modality {self.queries.modality!r}, which no catalog view has"
                )
            expected = self.catalog.feature_dims[self.queries.modality]
            if self.queries.features.shape[1] != expected:
                raise ValueError(
                    f"data set {self.name!r}: query features have dimension "
                    f"{self.queries.features.shape[1]}, the {self.queries.modality} tower expects {expected}"
                )

    def items(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.item_split == SPLIT_CODES[split])

    def evaluation_items(self) -> np.ndarray:
        """Items the cross-view tasks are evaluated on."""
        if self.cross_view_items is not None:
            return np.asarray(self.cross_view_items, dtype=np.int64)
        return self.items("test")

    def counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "items": int(self.catalog.num_items),
            "item_split": split_counts(self.item_split),
            "view_slots": len(self.catalog.slots),
        }
        if self.queries is not None:
            out["queries"] = int(self.queries.num_queries)
            out["query_split"] = split_counts(self.queries.split)
            out["interactions"] = int(len(self.queries.interactions))
            out["relevant_pairs"] = int(len(self.queries.relevant_items))
        return out
