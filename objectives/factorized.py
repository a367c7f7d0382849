r"""`factorized`: Factorized Transport (Etsy, arXiv 2512.18117) - our reading.

The paper publishes no equations. What it states: primary views are emphasised, auxiliary views
are sampled stochastically in training, the cost is constant per item instead of quadratic in the
number of views, and all views are fused into one cached embedding at inference. Our reading
restricts the OT plan of `full_ot` to the product coupling P = mu (x) nu, which turns the
set-to-set similarity into a dot product of fused embeddings:

.. math::
    s_{ij} = \sum_{u,v} \mu_u \nu_v \langle x_i^u, y_j^v \rangle
           = \Big\langle \sum_u \mu_u x_i^u, \sum_v \nu_v y_j^v \Big\rangle
           = \langle m_i, t_j \rangle .

mu (image side) and nu (text side) are primary-weighted marginals: the primary view(s) of a side
share w_p, its n_s auxiliary views share 1 - w_p evenly (a side without a primary view spreads 1
over its auxiliary views).

**Sampling within each side.** A training step encodes the primary views plus, on each side s
separately, k_s = min(k, n_s) of its n_s auxiliary views drawn uniformly without replacement
(cost O(2 + 2k) views per item, independent of V). A sampled view u of side s gets weight
mu_u n_s / k_s (its inclusion probability is k_s / n_s), so

.. math::
    \hat m_i = \sum_{u \in \text{prim}} \mu_u x_i^u + \frac{n_s}{k_s} \sum_{u \in S} \mu_u x_i^u,
    \qquad \mathbb{E}[\hat m_i] = m_i,
    \qquad \sum_{u \in \text{prim}} \mu_u + \frac{n_s}{k_s} \sum_{u \in S} \mu_u = 1

in every draw: unbiased, exact when k >= n_s. Sampling within each side, not from the pooled
auxiliary views, keeps each side's weights summing to 1 in every draw (otherwise the positive
logit's scale would change from step to step: a random per-item temperature); the fused item
weights are rescaled the same way. Loss:

.. math::
    L = \mathrm{InfoNCE_{sym}}(s [\langle \hat m_i, \hat t_j \rangle]_{ij})
      + \lambda_q \mathrm{InfoNCE_{sym}}(s [\langle q_i, f_j \rangle]_{ij})

with m, t kept unnormalised, as in the closed form (unless `normalize_sides`), f the fused item
embedding normalise(sum_v w_v x^v), s the logit scale. A pair whose side sets repeat between the two
items (the same views by content, with the same weights) is left out of both softmaxes
(docs/method.md, "Duplicated views"). Inference serves f over all (up to V) views with the same
weights. More on this reading: docs/method.md, "factorized".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import Search, option
from ..data.views import ViewSelection, primary_weighted, side_weights
from . import OBJECTIVES
from .base import AlignmentBatch, Objective, ObjectiveConfig, side_set_duplicates, symmetric_info_nce


@dataclass
class FactorizedConfig(ObjectiveConfig):
    aux_samples: int = option(
        1,
        "k: auxiliary views sampled per side of each item per training step (all if fewer)",
        "paper (value: our reading)",
        ge=0,
        search=Search(
            1,
            4,
            "int",
            why="a step costs O(2 + k) views per item; at 4 per side the default "
            "8 views are all used and the cost advantage is gone",
        ),
    )
    normalize_sides: bool = option(
        False, "L2-normalise each side's fused embedding before the dot product (False = closed form)", "our reading"
    )


def sample_auxiliary(mask: torch.Tensor, is_primary: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Bool [B, S]: k auxiliary views per item drawn uniformly without replacement (all if fewer)."""
    auxiliary = mask & ~is_primary
    keys = torch.rand(mask.shape, generator=generator)
    keys = torch.where(auxiliary, keys, torch.full_like(keys, 2.0))  # non-candidates sort last
    rank = keys.argsort(dim=1).argsort(dim=1)
    return auxiliary & (rank < k)


def sample_within_sides(
    mask: torch.Tensor, is_primary: torch.Tensor, side: torch.Tensor, k: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sampled bool [B, S], inverse inclusion n_s / k_s float [B, S]): k auxiliary views drawn
    uniformly within each side of each item; the factor is 1 on views that are not sampled."""
    sampled = torch.zeros_like(mask)
    inverse = torch.ones(mask.shape)
    for s in (0, 1):
        in_side = mask & (side == s)
        picked = sample_auxiliary(in_side, is_primary, k, generator)
        n_aux = (in_side & ~is_primary).sum(dim=1, keepdim=True).float()
        k_eff = picked.sum(dim=1, keepdim=True).float().clamp(min=1)
        inverse = torch.where(picked, (n_aux / k_eff).expand_as(inverse), inverse)
        sampled |= picked
    return sampled, inverse


@OBJECTIVES.register("factorized")
class Factorized(Objective):
    name = "factorized"
    summary = "Factorized Transport: product-coupled OT = fused-embedding InfoNCE, primary + k sampled aux views per side"
    Config = FactorizedConfig
    config: FactorizedConfig

    def select_views(self, mask, generator=None) -> ViewSelection:
        layout = self.context.layout
        w_p = self.config.primary_weight
        full_side = side_weights(mask, layout.is_primary, layout.side, w_p)
        full_item = primary_weighted(mask, layout.is_primary, w_p)
        sampled, inverse = sample_within_sides(mask, layout.is_primary, layout.side, self.config.aux_samples, generator)
        keep = (mask & layout.is_primary) | sampled
        return ViewSelection(mask=keep, side_weight=full_side * inverse * keep, item_weight=full_item * inverse * keep)

    def side_embeddings(self, views) -> tuple[torch.Tensor, torch.Tensor]:
        """Side sums m_i = sum_u mu_u x_i^u (image) and t_i = sum_v nu_v x_i^v (text), [B, d] each."""
        w = views.side_weight.to(views.embeddings.dtype)
        m = torch.einsum("bw,bwd->bd", w * (views.side == 0), views.embeddings)
        t = torch.einsum("bw,bwd->bd", w * (views.side == 1), views.embeddings)
        if self.config.normalize_sides:
            m, t = F.normalize(m, dim=-1), F.normalize(t, dim=-1)
        return m, t

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        views = batch.views
        m, t = self.side_embeddings(views)
        both = ((views.mask & (views.side == 0)).any(1)) & ((views.mask & (views.side == 1)).any(1))
        out: dict[str, torch.Tensor] = {}
        if both.any():
            out["transport_loss"] = symmetric_info_nce(scale * m[both] @ t[both].t(), side_set_duplicates(views, both))
        else:
            out["transport_loss"] = self.empty_term(views)
        out["pairs"] = both.sum().detach().float()
        out["views_per_item"] = views.mask.sum(1).float().mean().detach()
        return out
