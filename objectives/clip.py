"""`clip`: CLIP's symmetric InfoNCE on the primary pair - the single-view baseline.

    L_xview = 1/2 [ CE(s * A B^T, I) + CE(s * B A^T, I) ]
    L_query = 1/2 [ CE(s * Q F^T, I) + CE(s * F Q^T, I) ],   F_i = normalise(a_i + b_i)

where a_i is item i's primary image and b_i its title (in a single-modality catalog: the primary
view and the first auxiliary view), s = exp(log scale) (log scale clamped at log 100 after each
optimiser step), and I the diagonal labels.
No other view is used, in training or at inference. The cross-view term is exactly
open_clip's `ClipLoss` (src/open_clip/loss.py) on the same features and logit scale; items lacking
either view of the pair are left out of it. A pair (i, j) whose image or title repeats between the
two items is left out of both softmaxes (docs/method.md, "Duplicated views").

Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import OBJECTIVES
from .base import (
    AlignmentBatch,
    ObjectiveConfig,
    PrimaryPairObjective,
    both_sides,
    primary_pair_duplicates,
    symmetric_info_nce,
)


@dataclass
class ClipConfig(ObjectiveConfig):
    """CLIP has only the shared fields: logit scale (tau = 1/scale) and the query-term weight."""

    untuned = ("primary_weight",)  # clip fuses its one pair with equal weights


@OBJECTIVES.register("clip")
class Clip(PrimaryPairObjective):
    name = "clip"
    summary = (
        "CLIP symmetric InfoNCE on the primary pair (image, title; one-modality catalog: primary view, first "
        "auxiliary view) + query InfoNCE; other views unused"
    )
    Config = ClipConfig

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        views = batch.views
        image_side, text_side, both = both_sides(views)
        out: dict[str, torch.Tensor] = {}
        if both.sum() >= 1:
            a = image_side.embeddings[both, 0]
            b = text_side.embeddings[both, 0]
            out["contrastive_loss"] = symmetric_info_nce(scale * a @ b.t(), primary_pair_duplicates(views, both))
        else:
            out["contrastive_loss"] = self.empty_term(views)
        out["pairs"] = both.sum().detach().float()
        return out
