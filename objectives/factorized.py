"""`factorized`: Factorized Transport (Etsy, arXiv 2512.18117) - our reading (SPEC §3.3).

The paper publishes no equations. What it states: primary views are emphasised, auxiliary views
are sampled stochastically in training, the cost is constant per item instead of quadratic in the
number of views, and all views are fused into one cached embedding at inference. Our reading
restricts the OT plan of `full_ot` to the product coupling P = mu (x) nu, which turns the
set-to-set similarity into a dot product of fused embeddings:

    s_ij = sum_{u,v} mu_u nu_v <x_i^u, x_j^v> = < sum_u mu_u x_i^u , sum_v nu_v x_j^v >

mu (image side) and nu (text side) are primary-weighted marginals: the primary view(s) of a side
share w_p, its auxiliary views share 1 - w_p evenly. Training encodes the primary views plus k
auxiliary views sampled uniformly per item (cost O(2 + k), independent of V); a sampled auxiliary
view is reweighted by n_aux / k (Horvitz-Thompson), so each side's weighted sum is an unbiased
Monte-Carlo estimate of the all-view sum, and equals it exactly when k >= n_aux. Loss:

    L = InfoNCE_sym(s * [<m_i, t_j>]_ij) + query_weight * InfoNCE_sym(s * [<q_i, f_j>]_ij)

with m, t the side sums (kept unnormalised, as in the closed form, unless `normalize_sides`), f the
fused item embedding normalise(sum_v w_v x^v) over all views (sampled in training), s the logit scale.
Inference serves f over all (up to V) views with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import option
from ..data.views import ViewSelection, primary_weighted, side_weights
from . import OBJECTIVES
from .base import AlignmentBatch, Objective, ObjectiveConfig, symmetric_info_nce


@dataclass
class FactorizedConfig(ObjectiveConfig):
    aux_samples: int = option(1, "k: auxiliary views sampled per item per training step", "paper (value: our reading)")
    normalize_sides: bool = option(
        False, "L2-normalise each side's fused embedding before the dot product (False = closed form)", "our reading"
    )

    def validate(self) -> None:
        super().validate()
        if self.aux_samples < 0:
            raise ValueError(f"aux_samples must be >= 0, got {self.aux_samples}")


def sample_auxiliary(mask: torch.Tensor, is_primary: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Bool [B, S]: k auxiliary views per item drawn uniformly without replacement (all if fewer)."""
    auxiliary = mask & ~is_primary
    keys = torch.rand(mask.shape, generator=generator)
    keys = torch.where(auxiliary, keys, torch.full_like(keys, 2.0))  # non-candidates sort last
    rank = keys.argsort(dim=1).argsort(dim=1)
    return auxiliary & (rank < k)


@OBJECTIVES.register("factorized")
class Factorized(Objective):
    name = "factorized"
    summary = "Factorized Transport: product-coupled OT = fused-embedding InfoNCE, primary + k sampled aux views"
    Config = FactorizedConfig

    def select_views(self, mask, generator=None) -> ViewSelection:
        layout = self.context.layout
        w_p = self.config.primary_weight
        full_side = side_weights(mask, layout.is_primary, layout.side, w_p)
        full_item = primary_weighted(mask, layout.is_primary, w_p)
        sampled = sample_auxiliary(mask, layout.is_primary, self.config.aux_samples, generator)
        n_aux = (mask & ~layout.is_primary).sum(dim=1, keepdim=True).float()
        k_eff = sampled.sum(dim=1, keepdim=True).float().clamp(min=1)
        inverse_inclusion = n_aux / k_eff  # 1 / P(view sampled) for uniform k-of-n sampling
        keep = (mask & layout.is_primary) | sampled
        scale = torch.where(sampled, inverse_inclusion.expand_as(mask), torch.ones(mask.shape))
        return ViewSelection(
            mask=keep,
            side_weight=full_side * scale * keep,
            item_weight=full_item * scale * keep,
        )

    def side_embeddings(self, views) -> tuple[torch.Tensor, torch.Tensor]:
        """Side sums m_i = sum_u mu_u x_i^u (image) and t_i = sum_v nu_v x_i^v (text), [B, d] each."""
        w = views.side_weight.to(views.embeddings.dtype)
        m = torch.einsum("bw,bwd->bd", w * (views.side == 0), views.embeddings)
        t = torch.einsum("bw,bwd->bd", w * (views.side == 1), views.embeddings)
        if self.config.normalize_sides:
            m, t = F.normalize(m, dim=-1), F.normalize(t, dim=-1)
        return m, t

    def forward(self, batch: AlignmentBatch) -> dict[str, torch.Tensor]:
        views = batch.views
        m, t = self.side_embeddings(views)
        both = ((views.mask & (views.side == 0)).any(1)) & ((views.mask & (views.side == 1)).any(1))
        scale = self.logit_scale()
        out: dict[str, torch.Tensor] = {}
        if both.any():
            out["transport_loss"] = symmetric_info_nce(scale * m[both] @ t[both].t())
        else:
            out["transport_loss"] = views.embeddings.sum() * 0.0
        out.update(self.query_loss(batch, self.item_embedding(views)))
        out["logit_scale"] = scale.detach()
        out["views_per_item"] = views.mask.sum(1).float().mean().detach()
        return out
