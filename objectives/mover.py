"""`mover`: OT soft matching + GRAM volume alignment (MOVER, arXiv 2508.12149; GRAM, ICLR 2025).

MOVER publishes no equations or code; this is our reading of its abstract. Per batch, with a_i item
i's anchor (its title) and X_j item j's other views (`groups="views"`) or side-fused groups
(`groups="sides"`), and Vol(a, X) = sqrt(det(G + delta I)) GRAM's volume of {a} u X
(`ftbench.kernels.volume`; by default, `signed=True`, of vectors lifted to (v, 1)/sqrt 2, since
GRAM's volume cannot tell a view from its negation), the score V_ij is, per `volume_score`:

    "fixed"    (default) Vol_delta(a_i, k views of item j sampled this step), k the same for every item,
               so that no item's score depends on how many views it has
    "distance" Vol(a_i, X_j) / Vol(X_j), the distance to the span of all the views: no sampling
               variance, but biased toward items with more views where the effective dimension is low
    "volume"   GRAM's raw Vol(a_i, X_j), comparable only when every item has the same view count

and the loss L = L_vol + `ot_weight` * L_ot + query_weight * L_query, with L_vol the symmetric
InfoNCE on logits -s V_ij and L_ot = sum_ij P_ij V_ij, P the entropic OT plan between anchors and
groups (`ot_cost`; `ftbench.kernels.feature_transport.fixed_sinkhorn`, no gradient: with the volume
cost its gradient in V is P by the envelope theorem, so detaching P is exact). Only items with an
anchor and another view enter L_vol and L_ot; pairs whose anchor or group repeats between two items
leave L_vol's softmaxes (docs/method.md, "Duplicated views"). Retrieval serves the fused item
embedding; `volume_scores` gives the GRAM-style score for analysis. The derivation, the checks
behind the defaults and the cost: docs/method.md, "mover".

References
----------
Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment", ICLR 2025
(ispamm/GRAM, utils/volume.py); You & Liu, "MOVER", arXiv 2508.12149; Cuturi, NeurIPS 2013.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import Search, option
from ..kernels.feature_transport import fixed_sinkhorn
from ..kernels.volume import pairwise_log_volume, pairwise_span_distance, signed_lift
from . import OBJECTIVES
from .base import (
    AlignmentBatch,
    EncodedViews,
    Objective,
    ObjectiveConfig,
    content_keys,
    duplicate_pairs,
    rows,
    symmetric_info_nce,
    text_anchor,
)

SCORES = ("distance", "fixed", "volume", "mean")


@dataclass
class MoverConfig(ObjectiveConfig):
    volume_delta: float = option(
        1e-4,
        "delta of the safe volume sqrt(det(G + delta I)) (finite gradients at collinear views)",
        "our reading",
        gt=0,
    )
    groups: str = option(
        "views",
        "'views': the volume spans the anchor and every other view of the item (GRAM with views as "
        "modalities; cost grows with V); 'sides': the anchor and the side-fused other views (k <= 3)",
        "our reading",
        choices=("views", "sides"),
    )
    volume_score: str = option(
        "fixed",
        "score V_ij: 'fixed' = Vol of the anchor + group_size sampled views (comparable across view counts "
        "and effective dimensions); 'distance' = Vol(a, X) / Vol(X), the anchor's distance to the span of "
        "the item's views (shrinks with the view count where the embeddings' effective dimension is low); "
        "'volume' = GRAM's raw Vol(a, X) (shrinks with the number of views)",
        "our reading",
        choices=SCORES,
    )
    signed: bool = option(
        True,
        "lift unit vectors to (v, 1)/sqrt 2 before the Gram determinant, so that a view and its negation "
        "are not equally close (GRAM's volume is sign-blind: towers learn views anti-aligned with the "
        "anchor, which the served fused mean then cancels); False = GRAM's volume",
        "our reading",
    )
    group_size: int = option(1, "k of volume_score='fixed': other views sampled per item per step", "our reading", ge=1)
    ot_weight: float = option(
        1.0,
        "lambda: weight of the transport-weighted volume sum_ij P_ij Vol_ij",
        "our reading",
        ge=0,
        search=Search(
            0.1, 3.0, "log", why="the volume term beside the contrastive term of weight 1: a tenth of it to three times it"
        ),
    )
    ot_epsilon: float = option(
        0.05,
        "entropic regulariser of the B x B Sinkhorn",
        "our reading",
        gt=0,
        search=Search(0.01, 0.5, "log", why="volumes lie in [0, 1]: 0.01 is a near-hard matching, 0.5 a nearly uniform plan"),
    )
    ot_iterations: int = option(100, "fixed log-domain Sinkhorn iterations of the B x B plan", "our reading", ge=1)
    ot_cost: str = option(
        "volume",
        "ground cost of the B x B plan: 'volume' (Vol_ij) or 'cosine' (1 - <a_i, f_j>)",
        "our reading",
        choices=("volume", "cosine"),
    )


@OBJECTIVES.register("mover")
class Mover(Objective):
    name = "mover"
    summary = "MOVER reading: GRAM volume contrastive (anchor vs item's other views) + OT-weighted volume"
    Config = MoverConfig
    config: MoverConfig

    @classmethod
    def memory_estimate(cls, batch_size: int, views: int, dim: int) -> int:
        """About six float32 tensors of B^2 n (anchor-view products, triangular solves, their
        gradients), n <= V other views, plus the B x B volume, plan and logits."""
        return 6 * batch_size**2 * views * 4 + 16 * batch_size * views * dim * 4 + 16 * batch_size**2 * 4

    def view_groups(self, views: EncodedViews, anchor_position: torch.Tensor, fused: bool = True):
        """(sets [B, n, d], set mask [B, n], fused other views f [B, d]) of every item, anchor excluded;
        f is None unless `fused` (only the cosine plan cost reads it)."""
        other = views.mask & ~anchor_position
        fused_other: torch.Tensor | None
        if fused:
            weight = views.item_weight.to(views.embeddings.dtype) * other
            fused_other = F.normalize(torch.einsum("bw,bwd->bd", weight, views.embeddings), dim=-1)
        else:
            fused_other = None
        if self.config.groups == "views":
            return views.embeddings, other, fused_other
        groups, present = [], []
        for s in (0, 1):
            in_side = other & (views.side == s)
            w = views.side_weight.to(views.embeddings.dtype) * in_side
            groups.append(F.normalize(torch.einsum("bw,bwd->bd", w, views.embeddings), dim=-1))
            present.append(in_side.any(dim=1))
        return torch.stack(groups, dim=1), torch.stack(present, dim=1), fused_other

    def volumes(self, anchor: torch.Tensor, sets: torch.Tensor, set_mask: torch.Tensor, sampled: bool = False) -> torch.Tensor:
        """V_ij [B1, B2] between anchor_i and sets_j, per `volume_score` (see the module docstring).

        'fixed' samples its groups here (torch's global generator), so call it once per step,
        unless `sampled`: `set_mask` holds groups `sample_groups` drew already."""
        delta, kind = self.config.volume_delta, self.config.volume_score
        if self.config.signed:
            anchor, sets = signed_lift(anchor), signed_lift(sets)
        if kind == "fixed" and not sampled:
            set_mask = self.sample_groups(set_mask)
        if kind == "mean":  # the mean over the item's views of the pair volume Vol(a, x)
            cos = torch.einsum("id,jkd->ijk", anchor, sets)
            norms = (anchor * anchor).sum(-1)[:, None, None] * (sets * sets).sum(-1)[None]
            pair = torch.sqrt(
                (
                    norms
                    + delta * ((anchor * anchor).sum(-1)[:, None, None] + (sets * sets).sum(-1)[None])
                    + delta * delta
                    - cos * cos
                ).clamp_min(delta * delta)
            )
            weight = set_mask.to(pair.dtype)
            return (pair * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)
        if kind == "distance":  # Vol(a, X) / Vol(X) = dist(a, span X): the Schur residual alone
            return pairwise_span_distance(anchor, sets, set_mask, delta)
        return torch.exp(pairwise_log_volume(anchor, sets, set_mask, delta))

    def sample_groups(self, set_mask: torch.Tensor) -> torch.Tensor:
        """bool [B, n]: k of each item's set members, uniformly, k = min(group_size, fewest members)."""
        counts = set_mask.sum(dim=1)
        k = min(self.config.group_size, int(counts[counts > 0].min())) if bool((counts > 0).any()) else 0
        keys = torch.rand(set_mask.shape, device=set_mask.device).masked_fill(~set_mask, 2.0)
        return set_mask & (keys.argsort(dim=1).argsort(dim=1) < k)

    def group_keys(
        self, views: EncodedViews, anchor_position: torch.Tensor, valid: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        """Content keys (`content_keys`) of the `valid` items' groups `groups` [B', n] (as in
        `view_groups`: views, or side-fused other views); needs `views.content`."""
        assert views.content is not None  # needs content ids (see above)
        content = views.content[valid]
        if self.config.groups == "views":
            return content_keys(content, groups.float())
        other = (views.mask & ~anchor_position)[valid]
        weight, side = views.side_weight[valid], views.side[valid]
        empty = content_keys(content, torch.zeros_like(weight))
        return torch.cat(
            [torch.where(groups[:, s : s + 1], content_keys(content, weight * (other & (side == s))), empty) for s in (0, 1)],
            dim=1,
        )

    def volume_scores(self, query: torch.Tensor, views: EncodedViews) -> torch.Tensor:
        """GRAM-style retrieval scores -V(q_i, all views of item j) [Q, B] (higher is better)."""
        return -self.volumes(self.query_embedding(query), views.embeddings, views.mask)

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        views = batch.views
        anchor, anchor_present, position = text_anchor(views, self.context.layout)
        sets, set_mask, fused_other = self.view_groups(views, position, fused=cfg.ot_weight > 0 and cfg.ot_cost == "cosine")
        valid = anchor_present & set_mask.any(dim=1)
        out: dict[str, torch.Tensor] = {}
        if bool(valid.any()):
            a = rows(anchor, valid)
            groups = rows(set_mask, valid)
            if cfg.volume_score == "fixed":  # drawn here, so that the duplicates below see the groups
                groups = self.sample_groups(groups)
                vol = self.volumes(a, rows(sets, valid), groups, sampled=True)
            else:
                vol = self.volumes(a, rows(sets, valid), groups)
            exclude = None
            if views.content is not None:
                exclude = duplicate_pairs(
                    content_keys(views.content, position.float())[valid], self.group_keys(views, position, valid, groups)
                )
            out["volume_loss"] = symmetric_info_nce(-scale * vol, exclude)
            diag = torch.diagonal(vol)
            out["positive_volume"] = diag.mean().detach()
            n = vol.shape[0]
            if n > 1:
                out["negative_volume"] = ((vol.sum() - diag.sum()) / (n * n - n)).detach()
            if cfg.ot_weight > 0:
                with torch.no_grad():
                    cost = vol.detach() if cfg.ot_cost == "volume" else 1.0 - a @ rows(fused_other, valid).t()
                    result = fixed_sinkhorn(cost, epsilon=cfg.ot_epsilon, iterations=cfg.ot_iterations)
                transported = (result.plan.to(vol.dtype) * vol).sum()
                out["ot_loss"] = cfg.ot_weight * transported
                out["transported_volume"] = transported.detach()
                assert isinstance(result.marginal_error, torch.Tensor)  # fixed_sinkhorn's: per problem
                out["ot_marginal_error"] = result.marginal_error.detach()
        else:
            out["volume_loss"] = self.empty_term(views)
            if cfg.ot_weight > 0:
                out["ot_loss"] = self.empty_term(views)
        out["volume_items"] = valid.float().sum().detach()
        return out
