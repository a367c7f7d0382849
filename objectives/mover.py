"""`mover`: OT soft matching + GRAM volume alignment (MOVER, arXiv 2508.12149; GRAM, ICLR 2025).

MOVER publishes no equations or code. Its abstract: modality embeddings are soft-matched by
cross-modal optimal transport, a module (GAVE) computes the geometric volume of the matched groups,
and the loss combines transport weighting with volume alignment. Our reading (SPEC §3.5), per batch:

    a_i      anchor: item i's primary text view (the title; the primary view of a text-only catalog),
             chosen as in `oat` (`anchor_positions`)
    X_j      "views of item j": all of item j's other views (`groups="views"`, k = 1 + n_j vectors),
             or the normalised side-fused groups of its other views (`groups="sides"`, k <= 3)
    V_ij     = Vol_delta(a_i, X_j) = sqrt(det(G + delta I)), G the Gram matrix of {a_i} u X_j
             (ftbench.kernels.volume; delta = `volume_delta` keeps gradients finite at collinear sets)

(a) GRAM contrastive term: logits_ij = -s V_ij (s the learnable logit scale 1/tau),
    L_vol = 1/2 [CE(logits, I) + CE(logits^T, I)].
(b) OT term: P = entropic OT plan between the anchors {a_i} and the view groups {X_j} (uniform
    marginals 1/n, cost C_ij = V_ij (`ot_cost="volume"`) or 1 - <a_i, f_j> with f_j the fused other
    views (`"cosine"`), log-domain Sinkhorn with `ot_epsilon`, `ot_iterations`), computed without
    gradient, and L_ot = sum_ij P_ij V_ij, the transport-weighted volume. With the volume cost this
    is the entropic OT value of that cost, whose gradient in V is P (envelope theorem), so detaching P
    is exact. Total: L = L_vol + `ot_weight` * L_ot + query_weight * L_query (base `query_loss`:
    symmetric InfoNCE between queries and the served fused item embedding).

Only items with an anchor and at least one other view (group) enter (a) and (b); the others still
train through the query term. Cost per step with `groups="views"` and at most n other views per
item: O(B n^3 + B^2 n^2 + B^2 n d) via the Schur-complement form of ftbench.kernels.volume (not B^2 (n+1)^3),
i.e. quadratic in views like `full_ot`; `groups="sides"` is O(B^2 d), constant in V.

Retrieval: the evaluation reports the fused item embedding normalise(sum_v w_v x^v) (base
`item_embedding`, one cached vector per item), like the other objectives. `volume_scores` gives the
GRAM score -Vol(query, all views of item j) for query->item style tasks, which needs the item's views
at query time and is not cached; it is exposed for analysis, not used by the reported metrics.

References: Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment", ICLR 2025
(ispamm/GRAM, utils/volume.py); You & Liu, "MOVER", arXiv 2508.12149; Cuturi, NeurIPS 2013.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import option
from ..kernels.feature_transport import log_sinkhorn
from ..kernels.volume import pairwise_volume
from . import OBJECTIVES
from .base import AlignmentBatch, EncodedViews, Objective, ObjectiveConfig, symmetric_info_nce
from .oat import text_anchor


@dataclass
class MoverConfig(ObjectiveConfig):
    volume_delta: float = option(
        1e-4, "delta of the safe volume sqrt(det(G + delta I)) (finite gradients at collinear views)", "our reading"
    )
    groups: str = option(
        "views",
        "'views': the volume spans the anchor and every other view of the item (GRAM with views as "
        "modalities; cost grows with V); 'sides': the anchor and the side-fused other views (k <= 3)",
        "our reading",
        choices=("views", "sides"),
    )
    ot_weight: float = option(1.0, "lambda: weight of the transport-weighted volume sum_ij P_ij Vol_ij", "our reading")
    ot_epsilon: float = option(0.05, "entropic regulariser of the B x B Sinkhorn", "our reading")
    ot_iterations: int = option(100, "fixed log-domain Sinkhorn iterations of the B x B plan", "our reading")
    ot_cost: str = option(
        "volume", "ground cost of the B x B plan: 'volume' (Vol_ij) or 'cosine' (1 - <a_i, f_j>)", "our reading",
        choices=("volume", "cosine"),
    )

    def validate(self) -> None:
        super().validate()
        if self.volume_delta <= 0:
            raise ValueError(f"mover option 'volume_delta' must be > 0 for training, got {self.volume_delta}")
        if self.groups not in ("views", "sides"):
            raise ValueError(f"mover option 'groups': expected 'views' or 'sides', got {self.groups!r}")
        if self.ot_cost not in ("volume", "cosine"):
            raise ValueError(f"mover option 'ot_cost': expected 'volume' or 'cosine', got {self.ot_cost!r}")
        if self.ot_weight < 0:
            raise ValueError(f"mover option 'ot_weight' must be >= 0, got {self.ot_weight}")
        if self.ot_epsilon <= 0 or self.ot_iterations < 1:
            raise ValueError("mover options 'ot_epsilon' must be > 0 and 'ot_iterations' >= 1")


@OBJECTIVES.register("mover")
class Mover(Objective):
    name = "mover"
    summary = "MOVER reading: GRAM volume contrastive (anchor vs item's other views) + OT-weighted volume"
    Config = MoverConfig

    @classmethod
    def memory_estimate(cls, batch_size: int, views: int, dim: int) -> int:
        """About six float32 tensors of B^2 n (anchor-view products, triangular solves, their
        gradients), n <= V other views, plus the B x B volume, plan and logits."""
        return 6 * batch_size**2 * views * 4 + 16 * batch_size * views * dim * 4 + 16 * batch_size**2 * 4

    def view_groups(self, views: EncodedViews, anchor_position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sets [B, n, d], set mask [B, n], fused other views f [B, d]) of every item, anchor excluded."""
        other = views.mask & ~anchor_position
        weight = views.item_weight.to(views.embeddings.dtype) * other
        fused = F.normalize(torch.einsum("bw,bwd->bd", weight, views.embeddings), dim=-1)
        if self.config.groups == "views":
            return views.embeddings, other, fused
        groups, present = [], []
        for s in (0, 1):
            in_side = other & (views.side == s)
            w = views.side_weight.to(views.embeddings.dtype) * in_side
            groups.append(F.normalize(torch.einsum("bw,bwd->bd", w, views.embeddings), dim=-1))
            present.append(in_side.any(dim=1))
        return torch.stack(groups, dim=1), torch.stack(present, dim=1), fused

    def volumes(self, anchor: torch.Tensor, sets: torch.Tensor, set_mask: torch.Tensor) -> torch.Tensor:
        """V_ij = Vol_delta(anchor_i, sets_j) [B1, B2]."""
        return pairwise_volume(anchor, sets, set_mask, self.config.volume_delta)

    def volume_scores(self, query: torch.Tensor, views: EncodedViews) -> torch.Tensor:
        """GRAM retrieval scores -Vol_delta(q_i, all views of item j) [Q, B] (higher is better)."""
        return -self.volumes(self.query_embedding(query), views.embeddings, views.mask)

    def forward(self, batch: AlignmentBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        views = batch.views
        anchor, anchor_present, position = text_anchor(views, self.context.layout)
        sets, set_mask, fused_other = self.view_groups(views, position)
        valid = anchor_present & set_mask.any(dim=1)
        scale = self.logit_scale()
        out: dict[str, torch.Tensor] = {}
        if bool(valid.any()):
            a = anchor[valid]
            vol = self.volumes(a, sets[valid], set_mask[valid])
            out["volume_loss"] = symmetric_info_nce(-scale * vol)
            diag = torch.diagonal(vol)
            out["positive_volume"] = diag.mean().detach()
            n = vol.shape[0]
            if n > 1:
                out["negative_volume"] = ((vol.sum() - diag.sum()) / (n * n - n)).detach()
            if cfg.ot_weight > 0:
                with torch.no_grad():
                    if cfg.ot_cost == "volume":
                        cost = vol.detach()
                    else:
                        cost = 1.0 - a @ fused_other[valid].t()
                    result = log_sinkhorn(cost, epsilon=cfg.ot_epsilon, iterations=cfg.ot_iterations)
                transported = (result.plan.to(vol.dtype) * vol).sum()
                out["ot_loss"] = cfg.ot_weight * transported
                out["transported_volume"] = transported.detach()
                out["ot_marginal_error"] = result.marginal_error.detach()
        else:  # keep the terms named and the graph connected, with zero value
            zero = views.embeddings.sum() * 0.0
            out["volume_loss"] = zero
            if cfg.ot_weight > 0:
                out["ot_loss"] = zero
        out.update(self.query_loss(batch, self.item_embedding(views)))
        out["logit_scale"] = scale.detach()
        out["volume_items"] = valid.float().sum().detach()
        return out
