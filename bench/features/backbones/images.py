"""Image preprocessing without torchvision: decode with PIL, centre crop and resize with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ENCODERS_HINT, BackboneUnavailable


def load_rgb(path: str | Path):
    """Decode an image file to an RGB PIL image, naming the file on failure."""
    try:
        from PIL import Image  # optional: encoders extra (pillow)
    except ImportError:
        raise BackboneUnavailable("image backbones need Pillow: pip install pillow. " + ENCODERS_HINT) from None
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises several types for corrupt files
        raise ValueError(f"image file {path} could not be decoded: {exc}") from None


def center_crop_resize(image, size: int, crop_fraction: float) -> np.ndarray:
    """uint8 [size, size, 3]: the centred square of side ``crop_fraction * min(H, W)``, resized to
    ``size`` x ``size`` with bicubic interpolation.

    This is the evaluation preprocessing of the TensorFlow EfficientNet reference code ("center
    crop with crop_padding=32": crop_fraction = size / (size + 32) = 0.875 at 224), which is also
    the usual "resize to 256, centre-crop 224" of ImageNet models up to one resampling step.
    """
    from PIL import Image  # optional: encoders extra (pillow)

    w, h = image.size
    side = crop_fraction * min(w, h)
    left = (w - side) / 2.0
    top = (h - side) / 2.0
    box = (left, top, left + side, top + side)
    out = image.resize((size, size), Image.BICUBIC, box=box)  # type: ignore[attr-defined]  # Image.Resampling.BICUBIC, kept for Pillow 9.0
    return np.asarray(out, dtype=np.uint8)
