r"""`siglip`: the sigmoid pairwise loss on the primary pair, with a learnable bias - a simple baseline.

For the B items of a batch with both views of the primary pair (a_i: primary image, b_i: title;
in a one-modality catalog the primary view and the first auxiliary view, as in `clip`), every
pair (i, j) is an independent binary classification, positive iff i = j:

.. math::
    L_{\text{sig}} = -\frac{1}{B} \sum_{i=1}^{B} \sum_{j=1}^{B}
        \log \sigma\big( z_{ij} (s \langle a_i, b_j \rangle + \beta) \big),
    \qquad z_{ij} = 1 \text{ if } i = j \text{ else } -1,

with the learnable logit scale s and bias beta initialised as in SigLIP (s = 10, beta = -10: the
logits start strongly negative, matching the B - 1 negatives per positive). It equals open_clip's
`SigLipLoss` (src/open_clip/loss.py, single device) on the same features, scale and bias. No
softmax couples the pairs, so the loss needs no batch-wide normalisation. A pair (i, j) whose image
or title repeats between the two items is dropped from the sum (docs/method.md, "Duplicated views").

The shared query term (symmetric InfoNCE between each query and the served item embedding, at the
same logit scale s) is added; the served embedding is normalise(a_i + b_i), and no other view is
used, exactly as for `clip` (whose pair in a one-modality catalog is the primary view and the first
auxiliary view), so that the two differ only in the pair loss.

Reference: X. Zhai, B. Mustafa, A. Kolesnikov, L. Beyer, "Sigmoid Loss for Language Image
Pre-Training", ICCV 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Search, option
from . import OBJECTIVES
from .base import AlignmentBatch, ObjectiveConfig, PrimaryPairObjective, both_sides, primary_pair_duplicates


@dataclass
class SiglipConfig(ObjectiveConfig):
    init_logit_scale: float = option(
        10.0,
        "initial logit scale s of the sigmoid and query terms",
        "SigLIP",
        search=Search(1.0, 30.0, "log", why="SigLIP starts at 10 (log 10 = 2.3); a factor 10 below and 3 above"),
    )
    init_logit_bias: float = option(
        -10.0,
        "initial learnable bias beta of the sigmoid logits",
        "SigLIP",
        search=Search(
            -15.0,
            -1.0,
            "linear",
            why="SigLIP's -10 offsets the B-1 negatives per positive; the range spans batch sizes 16 to 4096 at scale 10",
        ),
    )

    untuned = ("primary_weight",)  # the primary pair has equal weights, as in clip


def sigmoid_pair_loss(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """-(1/B) sum_ij log sigmoid(z_ij (s <a_i, b_j> + beta)), z = 2 I - 1; the pairs of `exclude`
    (duplicated views) are dropped from the sum."""
    logits = scale * a @ b.t() + bias
    signs = 2 * torch.eye(a.shape[0], dtype=logits.dtype, device=logits.device) - 1
    pair_terms = F.logsigmoid(signs * logits)
    if exclude is not None:
        pair_terms = pair_terms.masked_fill(exclude, 0.0)
    return -pair_terms.sum() / a.shape[0]


@OBJECTIVES.register("siglip")
class Siglip(PrimaryPairObjective):
    name = "siglip"
    summary = (
        "SigLIP sigmoid loss on the primary pair (image, title; one-modality catalog: primary view, first "
        "auxiliary view) with a learnable bias + query InfoNCE; other views unused"
    )
    Config = SiglipConfig

    def __init__(self, config: SiglipConfig, context) -> None:
        super().__init__(config, context)
        self.logit_bias = nn.Parameter(torch.tensor(float(config.init_logit_bias)))

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        views = batch.views
        image_side, text_side, both = both_sides(views)
        out: dict[str, torch.Tensor] = {}
        if both.any():
            a, b = image_side.embeddings[both, 0], text_side.embeddings[both, 0]
            out["sigmoid_loss"] = sigmoid_pair_loss(
                a, b, scale, self.logit_bias.to(a.dtype), primary_pair_duplicates(views, both)
            )
        else:
            out["sigmoid_loss"] = self.empty_term(views)
        out["logit_bias"] = self.logit_bias.detach()
        out["pairs"] = both.sum().detach().float()
        return out
