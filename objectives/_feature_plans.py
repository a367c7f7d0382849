"""Moving-average feature-dimension plans: what lets `oat` serve batch-independent embeddings.

RecGOAT's OAT plan T (a d x d coupling between feature dimensions, `ftbench.kernels.feature_transport`)
depends on the batch it is computed on, but an item's cached embedding must not depend on which
other items it is encoded with. The released code recomputes T on the whole catalogue at every
forward; a benchmark cannot, so training keeps an exponential moving average of the batch plans.
A convex combination of couplings with the same marginals is still such a coupling, so the average
is a valid plan. Eval mode serves the averaged plans; before any training step it falls back to the
batch plan.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels.feature_transport import feature_cost, fixed_sinkhorn


class FeaturePlans(nn.Module):
    """`count` d x d plans between modality and anchor features, with their moving averages."""

    # buffers (register_buffer): the averaged plans [count, d, d] and whether each has had a batch
    average: torch.Tensor
    ready: torch.Tensor

    def __init__(
        self, count: int, dim: int, *, momentum: float, scale: float, epsilon: float, iterations: int, domain: str = "auto"
    ):
        super().__init__()
        self.momentum, self.scale, self.epsilon, self.iterations = momentum, scale, epsilon, iterations
        self.domain = domain
        self.register_buffer("average", torch.full((count, dim, dim), 1.0 / (dim * dim)))
        self.register_buffer("ready", torch.zeros(count, dtype=torch.bool))

    def forward(
        self, modalities: list[tuple[torch.Tensor, torch.Tensor]], anchor: torch.Tensor, update: bool = False
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Plans for each (Z_m [B, d], present bool [B]) against `anchor` [B, d].

        Training mode: the batch's plans (one batched Sinkhorn solve for all modalities, no
        gradient; `fixed_sinkhorn` with `domain`), folded into the averages when `update`; eval
        mode: the averages. Returns the plans and a `plan_marginal_error` statistic.
        """
        if not self.training and bool(self.ready.all()):
            return [plan for plan in self.average], {}
        with torch.no_grad():
            costs = torch.stack(
                [feature_cost(z.detach(), anchor.detach(), self.scale, present.to(z.dtype)) for z, present in modalities]
            )
            result = fixed_sinkhorn(costs, epsilon=self.epsilon, iterations=self.iterations, domain=self.domain)
        plans = [plan.to(z.dtype) for plan, (z, _) in zip(result.plan, modalities)]
        assert isinstance(result.marginal_error, torch.Tensor)  # fixed_sinkhorn's: one per problem
        if update and self.training:
            with torch.no_grad():
                for k, (plan, (_, present)) in enumerate(zip(plans, modalities)):
                    if not bool(present.any()):
                        continue
                    if bool(self.ready[k]):
                        self.average[k].mul_(self.momentum).add_(plan, alpha=1.0 - self.momentum)
                    else:
                        self.average[k].copy_(plan)
                        self.ready[k] = True
        return plans, {"plan_marginal_error": result.marginal_error.max().detach()}
