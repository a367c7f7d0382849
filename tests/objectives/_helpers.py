"""Shared pieces of the objective tests (as pytorch-metric-learning's tests/losses/utils.py).

- `open_clip_loss_module`: open_clip's own loss.py (ClipLoss, SigLipLoss), the reference of clip
  and siglip.
- `Slots` / `encode_selection`: a catalog's slots written as (name, modality, role) (`image_text_layout(n)`:
  the usual image+text catalog of n views), and slot-space
  embeddings packed into an `EncodedViews` the way the batcher packs tower outputs (compacted
  positions; gradients flow back to the slot-space tensor).
- Reference pieces written here without the project's code, for the gradient tests: the
  primary-weighted view weights from their definition, symmetric InfoNCE as two loops of
  cross-entropies, converged entropic plans from POT.
- `assert_close`: a relative comparison that names the tensor and the largest difference.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util

import numpy as np
import ot
import torch
from ftbench.data.batching import build_view_batch
from ftbench.data.catalog import ViewSlot
from ftbench.data.views import SlotLayout, ViewSelection
from ftbench.model.encode import encoded_views
from ftbench.objectives.base import EncodedViews


def open_clip_loss_module():
    """open_clip's src/open_clip/loss.py loaded on its own: it imports only torch, whereas the
    package's __init__ pulls torchvision (which we keep out of the environment)."""
    dist = md.distribution("open-clip-torch")
    path = next(f for f in dist.files if str(f).endswith("open_clip/loss.py"))
    spec = importlib.util.spec_from_file_location("open_clip_loss", dist.locate_file(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Slots:
    """A catalog's view slots as (name, modality, role) triples, with the sides of the definition
    (image views vs the rest when there are image and text views, else primary vs auxiliary)
    worked out here rather than read from the project's `SlotLayout`."""

    def __init__(self, *slots: tuple[str, str, str]):
        self.slots = tuple(ViewSlot(*s) for s in slots)
        self.modalities = list(dict.fromkeys(m for _, m, _ in slots))
        self.primary = [role == "primary" for _, _, role in slots]
        multimodal = "image" in self.modalities and len(self.modalities) > 1
        self.multimodal = multimodal
        self.side = [(0 if m == "image" else 1) if multimodal else (0 if role == "primary" else 1) for _, m, role in slots]
        self.layout = SlotLayout.from_catalog(self)

    def __len__(self) -> int:
        return len(self.slots)


#: an image+text catalog's slots in the synthetic generator's order: the primary image and title,
#: then auxiliary views alternating image and text
IMAGE_TEXT_SLOTS = (
    ("image_1", "image", "primary"),
    ("title", "text", "primary"),
    ("image_2", "image", "auxiliary"),
    ("description", "text", "auxiliary"),
    ("image_3", "image", "auxiliary"),
    ("tags", "text", "auxiliary"),
    ("image_4", "image", "auxiliary"),
    ("bullets", "text", "auxiliary"),
)


def image_text_layout(views: int) -> SlotLayout:
    """The layout of an image+text catalog with the first `views` of `IMAGE_TEXT_SLOTS`."""
    if not 2 <= views <= len(IMAGE_TEXT_SLOTS):
        raise ValueError(f"image_text_layout: views must be in 2..{len(IMAGE_TEXT_SLOTS)}, got {views}")
    return Slots(*IMAGE_TEXT_SLOTS[:views]).layout


def encode_selection(x: torch.Tensor, selection: ViewSelection, layout: SlotLayout) -> EncodedViews:
    """The views `selection` picks from slot-space embeddings x [B, S, d], packed as the batcher
    packs them (`build_view_batch` positions, `encoded_views`); weights stay float32 as there."""
    raw = build_view_batch(None, layout, np.arange(x.shape[0]), selection)
    safe = raw.slot.clamp(min=0)
    embeddings = x.gather(1, safe.unsqueeze(-1).expand(-1, -1, x.shape[-1])) * raw.mask.unsqueeze(-1).to(x.dtype)
    return encoded_views(embeddings, raw)


def primary_weights(available: list[bool], primary: list[bool], w_p: float) -> list[float]:
    """The definition of the primary-weighted view weights of one item: its available primary views
    share w_p evenly and its available auxiliary views share 1 - w_p evenly; with no auxiliary view
    the primaries share 1, with no primary view the auxiliaries share 1."""
    prim = [k for k, (a, p) in enumerate(zip(available, primary)) if a and p]
    aux = [k for k, (a, p) in enumerate(zip(available, primary)) if a and not p]
    share_p = (w_p if aux else 1.0) if prim else 0.0
    share_a = 1.0 - share_p if aux else 0.0
    weights = [0.0] * len(available)
    for k in prim:
        weights[k] = share_p / len(prim)
    for k in aux:
        weights[k] = share_a / len(aux)
    return weights


def side_weights(available: list[bool], slots: Slots, w_p: float) -> list[float]:
    """`primary_weights` within each side separately (the marginals mu, nu)."""
    out = [0.0] * len(available)
    for s in (0, 1):
        on_side = [a and side == s for a, side in zip(available, slots.side)]
        for k, w in enumerate(primary_weights(on_side, slots.primary, w_p)):
            if on_side[k]:
                out[k] = w
    return out


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    """1/2 (mean_i -log softmax_j(L_ij)_i + mean_j -log softmax_i(L_ij)_j), one term at a time."""
    n = logits.shape[0]
    rows = [torch.logsumexp(logits[i], 0) - logits[i, i] for i in range(n)]
    columns = [torch.logsumexp(logits[:, j], 0) - logits[j, j] for j in range(n)]
    return 0.5 * (torch.stack(rows).mean() + torch.stack(columns).mean())


def pot_plan(cost: torch.Tensor, a, b, eps: float) -> torch.Tensor:
    """POT's converged Sinkhorn plan (a constant: no gradient), float64. POT's plain-domain solver
    (numpy, fast per iteration): its kernel exp(-C / eps) stays normal in float64 for the cost
    ranges of these tests, which is checked."""
    cost = cost.detach().double().numpy()
    assert (cost.max() - cost.min()) / eps < 300, "cost range too wide for the plain-domain reference"
    a = np.full(cost.shape[0], 1.0 / cost.shape[0]) if a is None else np.asarray(a.detach(), dtype=np.float64)
    b = np.full(cost.shape[1], 1.0 / cost.shape[1]) if b is None else np.asarray(b.detach(), dtype=np.float64)
    plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn", numItermax=200_000, stopThr=1e-14)
    assert np.abs(plan.sum(1) - a).sum() < 1e-11 and np.abs(plan.sum(0) - b).sum() < 1e-11, "POT did not converge"
    return torch.from_numpy(plan)


def assert_close(name: str, got: torch.Tensor | None, want: torch.Tensor, rtol: float) -> None:
    """|got - want| <= rtol * max |want| elementwise (a missing gradient counts as zeros)."""
    got = torch.zeros_like(want) if got is None else got.detach()
    want = want.detach()
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    assert err <= rtol * max(scale, 1e-12), f"{name}: max difference {err:.3e} against max |reference| {scale:.3e}"
