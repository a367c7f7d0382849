"""Options of the `oat` objective (kept apart so that objectives/oat.py stays readable)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Search, option
from .base import ObjectiveConfig


@dataclass
class OatConfig(ObjectiveConfig):
    anchor: str = option(
        "text",
        "anchor Z_a: 'text' (primary text view), 'id' (learnable item-ID embedding; untrained for "
        "never-trained test items), 'auto' (id when the data set has interactions, else text)",
        "paper (default: our reading)",
        choices=("auto", "text", "id"),
    )
    modality_weight: float = option(
        1.0,
        "weight of the CMCL modality InfoNCE (mean over anchor-image, anchor-text, image-text); released "
        "code: contrastive_weight * modality_consistency_weight = 0.01 * 0.5 beside BPR",
        "our reading",
        ge=0,
        search=Search(0.1, 3.0, "log", why="beside the query term of weight 1: from a tenth of it to three times it"),
    )
    symmetric: bool = option(
        True, "symmetric InfoNCE (both directions) for every term; False = released one-direction InfoNCE", "our reading"
    )
    sinkhorn_epsilon: float = option(0.01, "eps of the d x d feature-dimension Sinkhorn", "released code", gt=0)
    cost_scale: float = option(100.0, "s: C_pq = s * mean_i (Z_m[i,p] - Z_a[i,q])^2", "released code", gt=0)
    sinkhorn_iterations: int = option(100, "fixed Sinkhorn iterations (log domain)", "released code", ge=1)
    plan_momentum: float = option(
        0.9,
        "EMA momentum of the training plans served in eval mode (0: last batch's plan)",
        "our reading",
        ge=0,
        lt=1,
    )
    residual_init: str = option(
        "zero",
        "init of the d x d residuals Delta_m: 'zero' (the served z starts as the gated mix of anchor and "
        "modalities, in the views' space); 'xavier' (released code: z starts in a random linear map of the "
        "views' space, which only a query term trains - without training queries z stays there)",
        "our reading (released code: xavier)",
        choices=("xavier", "zero"),
    )
    init_image_gate: float = option(0.05, "initial g_v (released alpha), weight of the aligned image", "released code")
    init_text_gate: float = option(0.8, "initial g_t (released beta), weight of the aligned text", "released code")
    learn_gates: bool = option(True, "train the fusion gates g_v, g_t", "released code")
    fusion_layernorm: bool = option(True, "LayerNorm on the fused vector before L2-normalising", "released code")
    wasserstein_weight: float = option(
        1.0,
        "weight of the explicit 1-Wasserstein (Sinkhorn divergence, p=1) term between aligned modality "
        "and anchor distributions; 0 reproduces the released code",
        "paper (value: our reading)",
        ge=0,
        search=Search(
            0.0,
            2.0,
            "linear",
            why="0 is the released code (no explicit W1 term); linear so that 0 can be reached; 2 doubles the paper's term",
        ),
    )
    wasserstein_blur: float = option(0.05, "geomloss blur of the W1 term (eps = blur^p)", "convention (geomloss default)", gt=0)
    id_init_std: float = option(0.1, "std of the normal init of the ID anchor embedding", "released code")
