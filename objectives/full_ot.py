r"""`full_ot`: entropic optimal transport between view sets.

For every pair (i, j) of items in the batch with both sides, the image-view set of item i
(side 0: embeddings x_i^u, marginal mu_i = primary-weighted side weights) is transported onto the
text-view set of item j (side 1: y_j^v, marginal nu_j) with cost

.. math::
    C^{ij}_{uv} = 1 - \langle x_i^u, y_j^v \rangle \in [0, 2]

and entropic regulariser eps (`ftbench.kernels.sinkhorn`, batched over the B^2 pairs; Sinkhorn with a
fixed or tolerance-bound number of iterations, reported in the statistics):

.. math::
    P^* = \arg\min_{P \in U(\mu_i, \nu_j)} \langle P, C^{ij}\rangle
          + \varepsilon \sum_{uv} P_{uv} \log P_{uv}.

The set-to-set similarity is, by default (``similarity="transport"``), the plan-weighted mean
cosine with P* held fixed:

.. math::
    s_{ij} = \sum_{uv} P^*_{uv} \langle x_i^u, y_j^v \rangle,
    \qquad \frac{\partial s_{ij}}{\partial x_i^u} = \sum_v P^*_{uv} y_j^v .

It depends on a view set only through the measure it defines (a view copied four times with
weights 1/4 scores as the view once). ``similarity="entropic"`` uses the entropic OT value
:math:`s_{ij} = 1 - W_\varepsilon(C^{ij})` instead, whose gradient in C is also P* (envelope
theorem; `ftbench.kernels.sinkhorn.EntropicOTValue`) but whose added eps H(P*) grows with the number
of views, which is why it is not the default. ``coupling="independent"`` replaces P* by
mu_i (x) nu_j: the closed form of `factorized`, through the same code path.

Loss: symmetric InfoNCE over the B' x B' matrix scale * s (B' = items with views on both sides; a
pair whose view sets and marginals repeat between two items leaves both softmaxes, docs/method.md,
"Duplicated views"), plus the shared query term against the fused item embedding (a query point
transported onto a view set scores the dot product with the fused embedding). Cost per batch:
B^2 n m per Sinkhorn iteration - quadratic in the number of views. Derivations: docs/method.md, "full_ot".

Reference: M. Cuturi, "Sinkhorn Distances", NeurIPS 2013; G. Peyre, M. Cuturi, "Computational
Optimal Transport" (2019), Prop. 9.2 (gradient of the entropic OT value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import Search, option
from ..kernels.sinkhorn import DOMAINS, sinkhorn
from . import OBJECTIVES
from .base import AlignmentBatch, Objective, ObjectiveConfig, both_sides, side_set_duplicates, symmetric_info_nce


@dataclass
class FullOTConfig(ObjectiveConfig):
    eps: float = option(
        0.05,
        "entropic regulariser of the view-to-view OT (costs 1 - cos lie in [0, 2])",
        "our reading",
        gt=0,
        search=Search(
            0.01,
            0.5,
            "log",
            why="costs lie in [0, 2]: at 0.01 the plan is nearly the exact one, "
            "at 0.5 it is close to the product coupling (factorized)",
        ),
    )
    iterations: int = option(100, "Sinkhorn iterations: the cap, or the exact count when tolerance = 0", "our reading", ge=1)
    tolerance: float = option(
        1e-4,
        "stop when the largest L1 marginal error of a chunk of problems is below this (checked every "
        "10 iterations); 0 runs exactly `iterations` (cost curves compare like with like)",
        "our reading",
        ge=0,
    )
    domain: str = option(
        "auto",
        "Sinkhorn domain: plain (fast), log (any eps), auto (plain where cost range / eps allows)",
        "our reading",
        choices=DOMAINS,
    )
    coupling: str = option(
        "entropic",
        "entropic: the Sinkhorn plan P*; independent: the product coupling mu (x) nu (= factorized's closed form)",
        "our reading",
        choices=("entropic", "independent"),
    )
    similarity: str = option(
        "transport",
        "transport: s = sum P* <x, y> with P* held fixed (unchanged by duplicated views); "
        "entropic: s = 1 - W_eps = transport + eps H(P*)",
        "our reading",
        choices=("entropic", "transport"),
    )


def _entropy(w: torch.Tensor) -> torch.Tensor:
    """H(w) = -sum w log w over the last axis, with 0 log 0 = 0."""
    return -torch.special.xlogy(w, w).sum(-1)


@OBJECTIVES.register("full_ot")
class FullOT(Objective):
    name = "full_ot"
    summary = "entropic OT between image-view and text-view sets (Sinkhorn, B^2 V^2), InfoNCE on sum P* <x, y>"
    Config = FullOTConfig
    config: FullOTConfig

    @classmethod
    def memory_estimate(cls, batch_size: int, views: int, dim: int) -> int:
        """About eight float32 tensors of B^2 n m (Gram, cost, plan, gradients), n = m = ceil(V / 2)."""
        side = (views + 1) // 2
        return 8 * batch_size**2 * side * side * 4 + 16 * batch_size * views * dim * 4

    def set_similarity(
        self, x: torch.Tensor, mu: torch.Tensor, y: torch.Tensor, nu: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """s [B, B] between the view sets x [B, n, d] (marginals mu [B, n]) and y [B, m, d] (nu [B, m]).

        s_ij compares item i's side-0 set with item j's side-1 set (see the module docstring);
        padded views carry zero mass. Returns s and detached solver statistics.
        """
        B, n, d = x.shape
        m = y.shape[1]
        mu = mu.to(x.dtype).detach()
        nu = nu.to(x.dtype).detach()
        stats: dict[str, torch.Tensor] = {}
        if self.config.coupling == "independent":
            gram = (x.reshape(B * n, d) @ y.reshape(B * m, d).t()).view(B, n, B, m)  # [i, u, j, v]
            plan = mu[:, :, None, None] * nu[None, None, :, :]  # mu_i (x) nu_j, [i, u, j, v]
            return (plan * gram).sum(dim=(1, 3)), stats
        # G[u, v, i, j] = <x_i^u, y_j^v>, laid out with the pair axis (i, j) innermost, the
        # solver's working layout: one matmul, then a copy that moves contiguous runs of B
        xt = x.transpose(0, 1).reshape(n * B, d)
        yt = y.transpose(0, 1).reshape(m * B, d)
        gram = (xt @ yt.t()).view(n, B, m, B).permute(0, 2, 1, 3).contiguous()  # [n, m, B, B]
        cost = (1.0 - gram).view(n, m, B * B).permute(2, 0, 1)  # [B^2, n, m] view, pair (i, j) = i B + j
        a = mu[:, None, :].expand(B, B, n).reshape(B * B, n)
        b = nu[None, :, :].expand(B, B, m).reshape(B * B, m)
        cfg = self.config
        res = sinkhorn(cost, a, b, cfg.eps, iterations=cfg.iterations, tol=cfg.tolerance, domain=cfg.domain)
        assert res.value is not None and res.entropy is not None  # `sinkhorn` sets both
        if cfg.similarity == "entropic":
            sim = 1.0 - res.value.view(B, B)
        else:  # sum_uv P*_uv G_uv with the plan held fixed
            sim = (res.plan * gram.view(n, m, B * B).permute(2, 0, 1)).sum(dim=(1, 2)).view(B, B)
        dev = x.device
        stats = {
            "sinkhorn_iterations": torch.tensor(float(res.iterations), device=dev),
            "marginal_error": torch.tensor(res.marginal_error, device=dev),
            "plan_entropy": res.entropy.mean().detach(),
            "independent_entropy": (_entropy(mu)[:, None] + _entropy(nu)[None, :]).mean().detach(),
            "solver_log_domain": torch.tensor(float(res.domain != "plain"), device=dev),
        }
        return sim, stats

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        views = batch.views
        image_side, text_side, both = both_sides(views)
        out: dict[str, torch.Tensor] = {}
        if both.any():
            sim, stats = self.set_similarity(
                image_side.embeddings[both], image_side.weight[both], text_side.embeddings[both], text_side.weight[both]
            )
            out["transport_loss"] = symmetric_info_nce(scale * sim, side_set_duplicates(views, both))
            out.update(stats)
            diag = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
            out["positive_similarity"] = sim.detach()[diag].mean()
            if sim.shape[0] > 1:
                out["negative_similarity"] = sim.detach()[~diag].mean()
        else:
            out["transport_loss"] = self.empty_term(views)
        out["pairs"] = both.sum().detach().float()
        out["views_per_item"] = views.mask.sum(1).float().mean().detach()
        return out
