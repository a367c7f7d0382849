"""`oat`: RecGOAT-style dual semantic alignment (arXiv 2602.00682).

RecGOAT aligns each item's modality embeddings with an *anchor* (its ID embedding) at two
granularities and serves a fused embedding. Per item i of a batch, ftbench's reading:

    Z_a[i]   anchor: the primary text view, the title (default), or a learnable ID embedding (`anchor`)
    Z_img[i] normalise(sum_u mu_u x_i^u) over side 0 (image views; the primary group if one modality)
    Z_txt[i] normalise(sum_v nu_v x_i^v) over side 1 (text views; the auxiliary group if one modality)

with mu, nu the primary-weighted side marginals (`side_views`). A missing side is replaced by the
anchor (the released code substitutes the ID embedding for a missing modality); a missing text
anchor by the item's fused embedding normalise(sum_v w_v x_i^v).

Instance level, cross-modal contrastive learning (CMCL): with NCE(x, y) = CE(s X Y^T, I) (one
direction, as the released `InfoNCE`) or its symmetric version (`symmetric`, default),

    L_modality = mean over the posed terms of {NCE(Z_a, Z_img), NCE(Z_a, Z'), NCE(Z_img, Z_txt)},

each over the items that have both members. No term contrasts a view with itself. RecGOAT's anchor
(an ID embedding) is independent of both modalities; a text anchor is not, so
  - with image and text views, the text side contrasted with the anchor is Z' = normalise(sum of
    the text views *other than the title*, side weights renormalised): otherwise the title sits in
    Z_txt with weight w_p and NCE(Z_a, Z_txt) is near 0 whatever the towers learn;
  - in a one-modality catalog side 0 holds the title itself (Z_img = Z_a), so NCE(Z_a, Z_img) is not
    posed at all (and NCE(Z_a, Z') uses side 1, which holds no anchor view).
A term without any pair in a batch is left out of the mean and named (`<term>_nce_empty`); a term
that the catalog cannot pose is listed in `notes`. A pair (i, j) whose members repeat between the
two items (e.g. Z' of i and j made of the same attribute texts) is left out of the softmaxes, in the
query term too; L_W and the plans have no negatives (docs/method.md, "Duplicated views").
The released code adds (1 - NCE) per pair, which *maximises* the InfoNCE loss and pushes an item's
modalities apart; the paper's CMCL minimises it, and so do we (+NCE). The released code also
repeats the terms on the BPR negatives; with one batch of items that is the same expectation and is
not repeated here.

Distribution level, optimal adaptive transport (OAT), as in the released `FusionModule`: for each
modality m in {img, txt}, the d x d cost between feature dimensions

    C^m_pq = s * mean_i (Z_m[i,p] - Z_a[i,q])^2       (over the items that have modality m)

and the entropic plan T^m (uniform marginals 1/d, eps, fixed iterations; log-domain Sinkhorn, see
ftbench.kernels.feature_transport - the released plain-domain Sinkhorn underflows at eps = 0.01, s = 100)
computed without gradient, then the aligned modality A_m = Z_m (T^m + Delta_m), Delta_m a learnable
d x d residual (Xavier-uniform init). The paper also states a 1-Wasserstein term between the aligned
modality and anchor distributions, which the released code lacks; we add it explicitly:

    L_W = mean_m S_{1,blur}({A_m[i]}_i, {Z_a[i]}_i)

with S the debiased Sinkhorn divergence of geomloss `SamplesLoss("sinkhorn", p=1, blur)` (default
scaling 0.5, tensorized), both modalities in one batched solve with each problem's own annealing
schedule (ftbench.kernels.sinkhorn_divergence: the two geomloss calls' values to float32 round-off,
their gradient without geomloss's float32 round-off on the self-distances' diagonals);
`wasserstein_weight` = 0 reproduces the released code.

Fusion (the served item embedding): z = normalise(LN((1 - g_v - g_t) Z_a + g_v A_img + g_t A_txt))
with learnable scalar gates g (released init g_v = 0.05, g_t = 0.8) and the released LayerNorm
(`fusion_layernorm`). Total, with the query term NCE(Q, z) at the objective's logit scale:

    L = query_weight * NCE(Q, z) + modality_weight * L_modality + wasserstein_weight * L_W.

Inference serves z with moving averages of the training plans (`plan_momentum`,
objectives/_feature_plans.py), so that an item's embedding does not depend on its batch.

Anchor: `anchor="id"` gives a learnable nn.Embedding(num_items, d) (normal init, std `id_init_std`,
L2-normalised), "auto" picks it when the data set has interactions. The default is "text" because
cross-view and query->item tasks are evaluated on never-trained (cold-start) items, whose ID rows
would keep their random initialisation.

References: RecGOAT (arXiv 2602.00682), released code 6lyc/RecGOAT-WSDM2027 (model_v1.py:
FusionModule, MultiModalLightGCN._compute_multimodal_contrastive_loss); Feydy et al.,
"Interpolating between Optimal Transport and MMD using Sinkhorn Divergences", AISTATS 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.sinkhorn_divergence import sinkhorn_divergences
from . import OBJECTIVES
from ._feature_plans import FeaturePlans
from ._oat_config import OatConfig
from .base import (
    AlignmentBatch,
    EncodedViews,
    Objective,
    anchor_positions,
    content_keys,
    duplicate_pairs,
    fuse,
    info_nce,
    rows,
    unique_keys,
)


@dataclass
class _Modalities:
    anchor: torch.Tensor  # [B, d]
    image: torch.Tensor  # [B, d]
    text: torch.Tensor  # [B, d]
    anchor_present: torch.Tensor  # bool [B] (True for the ID anchor)
    image_present: torch.Tensor  # bool [B]
    text_present: torch.Tensor  # bool [B]
    text_without_anchor: torch.Tensor  # [B, d]: side 1 less the anchor's own view
    text_without_anchor_present: torch.Tensor  # bool [B]


@OBJECTIVES.register("oat")
class Oat(Objective):
    name = "oat"
    summary = "RecGOAT-style: CMCL InfoNCE to an anchor + d x d feature OT with residual, gated fusion served"
    Config = OatConfig
    # how L_W is computed: "batched" (one solve for both modalities) or "geomloss" (one
    # `SamplesLoss` call per modality: the reference, kept for the cost benchmark's before/after)
    wasserstein_solver = "batched"

    def __init__(self, config: OatConfig, context) -> None:
        super().__init__(config, context)
        d = context.embedding_dim
        anchor = config.anchor
        if anchor == "auto":
            anchor = "id" if context.has_interactions else "text"
        self.anchor_kind = anchor
        if anchor == "id":
            self.id_embedding = nn.Embedding(context.num_items, d)
            nn.init.normal_(self.id_embedding.weight, std=config.id_init_std)
        self.delta_image = nn.Parameter(torch.empty(d, d))
        self.delta_text = nn.Parameter(torch.empty(d, d))
        for residual in (self.delta_image, self.delta_text):
            if config.residual_init == "zero":
                nn.init.zeros_(residual)
            else:
                nn.init.xavier_uniform_(residual)
        gates = torch.tensor([config.init_image_gate, config.init_text_gate])
        if config.learn_gates:
            self.gates = nn.Parameter(gates)
        else:
            self.register_buffer("gates", gates)
        self.norm = nn.LayerNorm(d) if config.fusion_layernorm else nn.Identity()
        self.plans = FeaturePlans(
            2,
            d,
            momentum=config.plan_momentum,
            scale=config.cost_scale,
            epsilon=config.sinkhorn_epsilon,
            iterations=config.sinkhorn_iterations,
        )
        # a text anchor in a one-modality catalog *is* side 0's primary view
        self.anchor_image_posed = anchor == "id" or context.layout.multimodal
        if not self.anchor_image_posed:
            self.notes.append("oat: anchor_image term not posed (one-modality catalog: side 0 holds the anchor's own view)")
        self._geomloss = None
        if config.wasserstein_weight > 0 and self.wasserstein_solver == "geomloss":
            from geomloss import SamplesLoss

            self._geomloss = SamplesLoss("sinkhorn", p=1, blur=config.wasserstein_blur, backend="tensorized")

    @classmethod
    def memory_estimate(cls, batch_size: int, views: int, dim: int) -> int:
        """Base estimate plus ~16 float32 d x d matrices (costs, plans, log-sum-exp temporaries,
        residuals and their gradients); an ID anchor adds num_items x d (not known here)."""
        return super().memory_estimate(batch_size, views, dim) + 16 * dim * dim * 4

    def modalities(self, views: EncodedViews) -> _Modalities:
        """Z_a, Z_img, Z_txt [B, d] with presence masks (missing sides replaced by the anchor), and the
        side-1 embedding without the anchor's own view, for the anchor-text term."""
        # the text anchor (`text_anchor`: its one-hot selection) and the three fusions (`fuse`) of
        # the views as one product [B, 4, V] x [B, V, d], so that the backward writes one [B, V, d]
        # gradient instead of four. A side's fusion runs over all slots with the side's weights
        # (zero off the side): the sum of `side_views`' compacted views, without their gather and
        # its scatter backward. fuse renormalises, so the weights of `others` need not sum to 1.
        position = anchor_positions(views, self.context.layout)
        if self.anchor_kind == "id":
            position = torch.zeros_like(position)  # an ID anchor is no view
        in_image, in_text = views.mask & (views.side == 0), views.mask & (views.side == 1)
        others = in_text & ~position
        dtype = views.embeddings.dtype
        weights = torch.cat(
            (
                position.to(dtype).unsqueeze(1),
                views.side_weight.to(dtype).unsqueeze(1) * torch.stack((in_image, in_text, others), dim=1),
            ),
            dim=1,
        )
        products = torch.matmul(weights, views.embeddings)  # [B, 4, d]
        anchor, anchor_present = products[:, 0], position.any(dim=1)
        image, text, text_others = F.normalize(products[:, 1:], dim=-1).unbind(1)
        if self.anchor_kind == "id":
            anchor = F.normalize(self.id_embedding(views.item_index), dim=-1).to(dtype)
            anchor_present = torch.ones(anchor.shape[0], dtype=torch.bool, device=anchor.device)
        elif not bool(anchor_present.all()):  # the fused fallback only where an item lacks its title
            anchor = torch.where(anchor_present.unsqueeze(1), anchor, fuse(views.embeddings, views.item_weight))
        image_present, text_present = in_image.any(dim=1), in_text.any(dim=1)
        image = torch.where(image_present.unsqueeze(1), image, anchor)
        text = torch.where(text_present.unsqueeze(1), text, anchor)
        return _Modalities(anchor, image, text, anchor_present, image_present, text_present, text_others, others.any(dim=1))

    def modality_keys(self, views: EncodedViews) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Content keys (`content_keys`) of Z_a, Z_img, Z_txt, Z' as `modalities` builds them, as
        {CMCL term: (row keys, column keys)}. Needs `views.content`."""
        content, width = views.content, 2 * views.mask.shape[1]
        position = anchor_positions(views, self.context.layout)
        weight = views.side_weight * views.mask
        in_image, in_text = views.mask & (views.side == 0), views.mask & (views.side == 1)
        if self.anchor_kind == "id":
            position = torch.zeros_like(position)
            anchor = unique_keys(views.item_index, width)  # the item's own ID embedding
        else:
            anchor = torch.where(
                position.any(dim=1, keepdim=True),
                content_keys(content, position.float()),
                content_keys(content, views.item_weight),
            )
        image = torch.where(in_image.any(dim=1, keepdim=True), content_keys(content, weight * in_image), anchor)
        text = torch.where(in_text.any(dim=1, keepdim=True), content_keys(content, weight * in_text), anchor)
        text_others = content_keys(content, weight * (in_text & ~position))
        return {
            "anchor_image": (anchor, image),
            "anchor_text": (anchor, text if self.anchor_kind == "id" else text_others),
            "image_text": (image, text),
        }

    def served_content_keys(self, views: EncodedViews) -> torch.Tensor:
        """The keys of (Z_a, Z_img, Z_txt): with the batch-level plans and parameters, they make z."""
        keys = self.modality_keys(views)
        return torch.cat([keys["anchor_image"][0], *keys["image_text"]], dim=1)

    def fuse_item(self, m: _Modalities, plan_image: torch.Tensor, plan_text: torch.Tensor):
        """(z [B, d], aligned image A_img, aligned text A_txt): gated fusion of anchor and aligned modalities."""
        aligned_image = m.image @ (plan_image + self.delta_image)
        aligned_text = m.text @ (plan_text + self.delta_text)
        g_v, g_t = self.gates[0], self.gates[1]
        z = (1.0 - g_v - g_t) * m.anchor + g_v * aligned_image + g_t * aligned_text
        return F.normalize(self.norm(z), dim=-1), aligned_image, aligned_text

    def item_embedding(self, views: EncodedViews) -> torch.Tensor:
        """The fused z (eval mode: with the averaged plans, so independent of the other items encoded)."""
        m = self.modalities(views)
        plans, _ = self.plans([(m.image, m.image_present), (m.text, m.text_present)], m.anchor)
        return self.fuse_item(m, *plans)[0]

    def query_loss(self, batch: AlignmentBatch, item: torch.Tensor) -> dict[str, torch.Tensor]:
        if batch.query is None or self.config.query_weight == 0:
            return {}
        nce = info_nce(
            self.query_embedding(batch.query), item, self.logit_scale(), self.config.symmetric, self.query_duplicates(batch)
        )
        return {"query_item_loss": self.config.query_weight * nce}

    def modality_pairs(self, m: _Modalities):
        """(name, x, y, items with both) of every CMCL term this catalog poses (see the module docstring)."""
        pairs = []
        if self.anchor_image_posed:
            pairs.append(("anchor_image", m.anchor, m.image, m.anchor_present & m.image_present))
        if self.anchor_kind == "id":
            pairs.append(("anchor_text", m.anchor, m.text, m.anchor_present & m.text_present))
        else:
            pairs.append(("anchor_text", m.anchor, m.text_without_anchor, m.anchor_present & m.text_without_anchor_present))
        pairs.append(("image_text", m.image, m.text, m.image_present & m.text_present))
        return pairs

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        views = batch.views
        m = self.modalities(views)
        plans, out = self.plans([(m.image, m.image_present), (m.text, m.text_present)], m.anchor, update=True)
        z, aligned_image, aligned_text = self.fuse_item(m, *plans)

        # one positive per row needs at least two items for a contrast to mean anything
        nces = []
        keys = self.modality_keys(views) if views.content is not None else None
        for name, x, y, both in self.modality_pairs(m):
            if int(both.sum()) >= 2:
                exclude = None if keys is None else duplicate_pairs(keys[name][0][both], keys[name][1][both])
                value = info_nce(rows(x, both), rows(y, both), scale, cfg.symmetric, exclude)
                nces.append(value)
                out[f"{name}_nce"] = value.detach()
            else:
                out[f"{name}_nce_empty"] = torch.ones((), device=views.embeddings.device)
        modality = torch.stack(nces).mean() if nces else self.empty_term(views)
        out["modality_loss"] = cfg.modality_weight * modality if nces else modality

        if cfg.wasserstein_weight > 0:
            pairs = [
                (rows(aligned, present), rows(m.anchor, present))
                for aligned, present in ((aligned_image, m.image_present), (aligned_text, m.text_present))
                if bool(present.any())
            ]
            if not pairs:
                distances = None
            elif self._geomloss is not None:
                distances = torch.stack([self._geomloss(x, y) for x, y in pairs])
            else:
                distances = sinkhorn_divergences(pairs, p=1, blur=cfg.wasserstein_blur, scaling=0.5, debias=True)
            w1 = distances.mean() if distances is not None else self.empty_term(views)
            out["wasserstein_loss"] = cfg.wasserstein_weight * w1 if distances is not None else w1
            out["wasserstein"] = w1.detach()

        out["item_embedding"] = z
        out["image_gate"] = self.gates[0].detach()
        out["text_gate"] = self.gates[1].detach()
        out["anchor_present"] = m.anchor_present.float().mean().detach()
        return out
