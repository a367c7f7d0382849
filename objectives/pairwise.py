r"""`pairwise`: multi-positive InfoNCE over all views (SupCon style) - a simple, strong baseline.

Every encoded view of every item in the batch is an anchor. With N views in the batch (embeddings
z_a, unit norm), item labels y_a, the anchors' candidate sets A(a) and positive sets
P(a) = {p in A(a): y_p = y_a}, the cross-view term is

.. math::
    L_{\text{pair}} = \frac{1}{|\mathcal{A}|} \sum_{a \in \mathcal{A}} \frac{-1}{|P(a)|}
        \sum_{p \in P(a)} \log \frac{\exp(s \langle z_a, z_p \rangle)}
                                     {\sum_{c \in A(a)} \exp(s \langle z_a, z_c \rangle)}

over the anchors that have a positive (\mathcal{A}); s is the logit scale (temperature 1/s).
``positives="all"`` (default): A(a) is every other view in the batch, so every other view of item a
is a positive and every view of another item a negative - exactly pytorch-metric-learning's
`SupConLoss` with item ids as labels. It is the default because it uses every pair an item offers,
including views of the same side (two photos, a title and a description), which is what
auxiliary-view -> item retrieval and the fused all-view embedding rely on. ``positives="cross_side"``
restricts A(a) to the views of the other side (image <-> text; primary <-> auxiliary in a
one-modality catalog), the many-view analogue of CLIP's pairing. No view is ever contrasted with
itself. The cost is quadratic in the number of views (N = B V), with no transport. A view c of
another item is left out of A(a) when one item of the batch holds the contents of both a and c (the
same attribute text twice, or an attribute text and the title of an item that has both): by
content that pair is a positive pair, or one view twice (docs/method.md, "Duplicated views").

The shared query term pairs each query with the fused item embedding
f_i = normalise(sum_v w_v x_i^v) (primary-weighted over all views), which is also what is served.

References: P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020; K. Musgrave et
al., "A Metric Learning Reality Check", ECCV 2020 (pytorch-metric-learning).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import option
from . import OBJECTIVES
from .base import AlignmentBatch, Objective, ObjectiveConfig, content_keys, shared_content

POSITIVES = ("all", "cross_side")


@dataclass
class PairwiseConfig(ObjectiveConfig):
    positives: str = option(
        "all",
        "all: every other view of the item is a positive, every other view in the batch a candidate "
        "(SupCon); cross_side: only views of the other side are positives and candidates",
        "our reading",
        choices=POSITIVES,
    )


def multi_positive_info_nce(
    z: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor, candidates: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Mean over anchors with a positive of -mean_p log softmax_{A(a)}(s <z_a, z_.>)_p.

    z [N, d], labels [N], candidates bool [N, N] (A(a) per row, diagonal excluded by the caller).
    Returns (loss or None when no anchor has a positive, number of anchors).
    """
    positive = candidates & (labels[:, None] == labels[None, :])
    anchors = positive.any(dim=1)
    if not anchors.any():
        return None, anchors.sum()
    logits = (scale * z @ z.t()).masked_fill(~candidates, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    # where() rather than a product: log_prob is -inf outside the candidates
    pos_log_prob = torch.where(positive, log_prob, torch.zeros((), dtype=log_prob.dtype, device=z.device))
    per_anchor = -pos_log_prob.sum(dim=1)[anchors] / positive.sum(dim=1)[anchors]
    return per_anchor.mean(), anchors.sum()


@OBJECTIVES.register("pairwise")
class Pairwise(Objective):
    name = "pairwise"
    summary = "multi-positive (SupCon) InfoNCE over all views of the batch, item = label; fused item served"
    Config = PairwiseConfig
    config: PairwiseConfig

    @classmethod
    def memory_estimate(cls, batch_size: int, views: int, dim: int) -> int:
        """About six float32 tensors of (B V)^2 (logits, log-probabilities, masks, gradients)."""
        return 6 * (batch_size * views) ** 2 * 4 + 16 * batch_size * views * dim * 4

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        views = batch.views
        B, W, _ = views.embeddings.shape
        z = views.embeddings[views.mask]
        labels = torch.arange(B, device=z.device)[:, None].expand(B, W)[views.mask]
        side = views.side[views.mask]
        n = z.shape[0]
        candidates = ~torch.eye(n, dtype=torch.bool, device=z.device)
        if self.config.positives == "cross_side":
            candidates &= side[:, None] != side[None, :]
        if views.content is not None:
            # a view of another item is no negative where one item holds both its content and the
            # anchor's (docs/method.md, "Duplicated views"): left out of A(a)
            member = views.content[views.mask].unsqueeze(1)
            candidates &= ~shared_content(content_keys(member, torch.ones_like(member, dtype=torch.float32)), labels, B)
        loss, anchors = multi_positive_info_nce(z, labels, scale, candidates)
        out: dict[str, torch.Tensor] = {"pairwise_loss": self.empty_term(views) if loss is None else loss}
        out["anchors"] = anchors.detach().float()
        out["views_per_item"] = views.mask.sum(1).float().mean().detach()
        return out
