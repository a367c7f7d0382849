"""Untrained references: the frozen backbone features, without towers, scored on the same tasks.

A trained objective earns its place only above what the features it starts from already do. Two
references score every task whose query and target views share a modality (one backbone, one
feature space), with the raw features L2-normalised and no parameter trained:

- ``frozen-primary``: the item is its primary view of the query's modality. For the photo queries
  of grocery-store: the photo against the product's catalog image.
- ``frozen-mean``: the item is the normalised mean of its unit-normalised views of the query's
  modality, within ``--views`` (each view counts once, whatever its feature norm):

      e_i = normalize( sum_{s in S_m(i)} x_is / ||x_is|| ),

  S_m(i) the item's available views of modality m in its first ``--views`` views, the same views an
  objective is given. For grocery-store: the photo against the mean of the product's catalog image
  and training photos.

The tasks follow the trained evaluation (`ftbench.eval.evaluator`): the query task searches the
whole catalog; `image->item` and `text->item` put the primary view against the item's other views of
its modality, leave-one-out (``frozen-primary`` does not apply there: its target would be the query
itself); `aux->item` puts each auxiliary view against the item's primary view of that modality
(``frozen-primary``) or the mean of its other views of that modality (``frozen-mean``), pooled over
(item, view) pairs, each modality against a gallery of its own modality. `title->image` and
`image->title` cross modalities, whose frozen features are not one space: not applicable. A
pair whose target has no view of the query's modality is left out, and the counts say how many
queries took part.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.dataset import MultiViewDataset
from ..kernels.search import rank_of_targets
from ..model.encode import capped_availability
from .evaluator import EvalConfig, Evaluator
from .metrics import target_rank_metrics

REFERENCES = ("frozen-primary", "frozen-mean")
REFERENCE_NOTE = "untrained reference: frozen backbone features, no towers, no training"


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; zero rows stay zero (an absent view scores 0 against everything)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


class FrozenReference(Evaluator):
    """The evaluator's tasks on frozen features: `variant` is 'frozen-primary' or 'frozen-mean'."""

    def __init__(self, dataset: MultiViewDataset, variant: str, max_views: int, config: EvalConfig | None = None) -> None:
        if variant not in REFERENCES:
            raise ValueError(f"reference {variant!r}: expected one of {', '.join(REFERENCES)}")
        super().__init__(dataset, None, None, max_views, torch.device("cpu"), config)  # type: ignore[arg-type]  # frozen features: no model, no towers
        self.variant = variant
        self.slot_modality = [s.modality for s in dataset.catalog.slots]

    # -- frozen embeddings ---------------------------------------------------------------------
    def primary_of(self, modality: str) -> int | None:
        for s, slot in enumerate(self.dataset.catalog.slots):
            if slot.role == "primary" and slot.modality == modality:
                return s
        return None

    def reference_items(self, items: np.ndarray, modality: str, exclude_slot: int | None = None) -> np.ndarray:
        """Frozen item embeddings [n, D_modality] of `items` (zero rows for items without a view)."""
        catalog = self.dataset.catalog
        avail = capped_availability(catalog, items, self.max_views).numpy()
        if self.variant == "frozen-primary":
            primary = self.primary_of(modality)
            if primary is None:
                return np.zeros((len(items), catalog.feature_dims[modality]), np.float32)
            slots = [primary]
        else:
            slots = [s for s, m in enumerate(self.slot_modality) if m == modality]
        out = np.zeros((len(items), catalog.feature_dims[modality]), np.float32)
        for s in slots:
            if s == exclude_slot:
                continue
            out += _unit(catalog.features(items, s).astype(np.float32)) * avail[:, s : s + 1]
        return _unit(out)

    def views_of(self, items: np.ndarray, modality: str, exclude_slot: int | None = None) -> np.ndarray:
        """How many views `reference_items` averaged per item."""
        avail = capped_availability(self.dataset.catalog, items, self.max_views).numpy().copy()
        if exclude_slot is not None:
            avail[:, exclude_slot] = False
        if self.variant == "frozen-primary":
            p = self.primary_of(modality)
            return avail[:, p].astype(int) if p is not None else np.zeros(len(items), int)
        cols = [s for s, m in enumerate(self.slot_modality) if m == modality]
        return avail[:, cols].sum(1)

    # the query task of the base class reads these two
    def embed_items(self, items: np.ndarray, exclude_slot: int | None = None) -> torch.Tensor:
        assert self.dataset.queries is not None  # read by the query task only, which needs queries
        return torch.from_numpy(self.reference_items(np.asarray(items), self.dataset.queries.modality, exclude_slot))

    def embed_queries(self, query_index: np.ndarray) -> torch.Tensor:
        assert self.dataset.queries is not None  # read by the query task only, which needs queries
        return torch.from_numpy(_unit(self.dataset.queries.features[query_index].astype(np.float32)))

    def embed_slot(self, items: np.ndarray, slot: int) -> torch.Tensor:
        return torch.from_numpy(_unit(self.dataset.catalog.features(np.asarray(items), slot).astype(np.float32)))

    # -- tasks ---------------------------------------------------------------------------------
    def query_task(self, split: str, gallery: np.ndarray | None = None, depth: int | None = None) -> tuple[dict, dict, dict]:
        assert self.dataset.queries is not None  # the query task runs on a data set with queries
        modality = self.dataset.queries.modality
        if self.variant == "frozen-primary" and self.primary_of(modality) is None:
            name = self.dataset.query_task
            return {}, {name: f"{REFERENCE_NOTE}: catalog has no primary {modality} view"}, {}
        return super().query_task(split, gallery, depth)

    def cross_view(self, items: np.ndarray) -> tuple[dict, dict]:
        out: dict = {}
        na: dict = {}
        catalog = self.dataset.catalog
        avail = capped_availability(catalog, items, self.max_views).numpy()
        na["title->image"] = na["image->title"] = f"{REFERENCE_NOTE}: frozen image and text features are not one space"
        for name, image in (("image->item", True), ("text->item", False)):
            slot = self._primary_slot(image=image)
            if slot is None:
                na[name] = f"catalog has no {'image' if image else 'text'} views"
            elif self.variant == "frozen-primary":
                na[name] = f"{REFERENCE_NOTE}: the query is the primary view itself"
            else:
                self._pooled(name, items, avail, [slot], out, na)
        aux = [s for s, slot in enumerate(catalog.slots) if slot.role == "auxiliary"]
        self._pooled("aux->item", items, avail, aux, out, na)
        return out, na

    def _pooled(self, name: str, items: np.ndarray, avail: np.ndarray, slots: list[int], out: dict, na: dict) -> None:
        """Each query slot against its own modality's gallery of evaluation items, ranks pooled."""
        ranks = []
        for modality in sorted({self.slot_modality[s] for s in slots}):
            gallery = torch.from_numpy(self.reference_items(items, modality))
            for s in (s for s in slots if self.slot_modality[s] == modality):
                rows = np.flatnonzero(avail[:, s] & (self.views_of(items, modality, exclude_slot=s) > 0))
                if not len(rows):
                    continue
                query = self.embed_slot(items[rows], s)
                target = torch.from_numpy(self.reference_items(items[rows], modality, exclude_slot=s))
                ranks.append(rank_of_targets(query, gallery, torch.from_numpy(rows), (query * target).sum(-1)).numpy())
        if not ranks:
            na[name] = f"no evaluation item has this view and a reference view of its modality within --views {self.max_views}"
            return
        n = len(items)
        ks = [k for k in self.config.ks if k < n]
        for k in self.config.ks:
            if k >= n:
                na[f"{name}/recall@{k}"] = f"K >= gallery size ({n})"
        pooled = np.concatenate(ranks)
        out[name] = dict(target_rank_metrics(pooled, n, ks).metrics)
        out[name]["queries"] = float(len(pooled))
