"""``open_clip:MODEL:W``: any open_clip model with a local weights file, for text and images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...device import resolve_device
from .base import BACKBONES, Backbone, BackboneUnavailable, Input, require_module, file_fingerprint, package_version
from .images import load_rgb


@BACKBONES.register("open_clip")
class OpenClip(Backbone):
    """Any open_clip model with a local weights file: spec ``open_clip:MODEL:WEIGHTS``, e.g.
    ``open_clip:ViT-B-32:/models/vit_b_32-laion2b_s34b_b79k.bin``.

    Text: ``open_clip.get_tokenizer(MODEL)`` then ``encode_text``; images: open_clip's own
    evaluation transform (from ``create_model_and_transforms``) then ``encode_image``. Outputs are
    the projected, unnormalised CLIP embeddings. open_clip (and the torchvision it depends on) is
    not an ftbench dependency: ``pip install open_clip_torch`` where you have the weights. No hub
    download is attempted: WEIGHTS must be a file.
    """

    name = "open_clip"
    modalities = ("text", "image")

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        model, sep, weights = (arg or "").partition(":")
        if not model or not sep or not weights:
            raise ValueError(
                f"backbone 'open_clip' needs a model name and a local weights file: "
                f"open_clip:MODEL:WEIGHTS (got {self.spec!r})"
            )
        self.model_name = model
        self.weights = Path(weights).expanduser()
        if not self.weights.is_file():
            raise BackboneUnavailable(f"open_clip weights file {self.weights} does not exist")
        self._model = None
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            model = self.load()[0]
            visual = getattr(model, "visual", None)
            out = getattr(visual, "output_dim", None)
            if out is None:
                import torch

                with torch.inference_mode():
                    tokens = self.load()[2](["a"]).to(self._device)
                    out = int(model.encode_text(tokens).shape[-1])
            self._dim = int(out)
        return self._dim

    @property
    def version(self) -> str:
        return (
            f"open_clip={package_version('open_clip_torch')};model={self.model_name};"
            f"weights={file_fingerprint(self.weights)};torch={package_version('torch')}"
        )

    @property
    def preprocessing(self) -> str:
        return "open_clip tokenizer" if self.modality == "text" else "open_clip evaluation transform"

    def load(self):
        if self._model is None:
            oc = require_module("open_clip", "Install it where you have the weights: pip install open_clip_torch.")
            self._device = str(resolve_device(self.device))
            model, _, preprocess = oc.create_model_and_transforms(self.model_name, pretrained=str(self.weights))
            tokenizer = oc.get_tokenizer(self.model_name)
            self._model = (model.eval().to(self._device), preprocess, tokenizer)
        return self._model

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        import torch

        model, preprocess, tokenizer = self.load()
        with torch.inference_mode():
            if self.modality == "text":
                feats = model.encode_text(tokenizer([str(x) for x in inputs]).to(self._device))
            else:
                batch = torch.stack([preprocess(load_rgb(p)) for p in inputs]).to(self._device)
                feats = model.encode_image(batch)
        return feats.float().cpu().numpy()
