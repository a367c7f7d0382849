"""``hash[:D]``: deterministic, dependency-free features for tests and smoke runs."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from .base import BACKBONES, Backbone, Input, package_version
from .images import load_rgb

_WORD = re.compile(r"\w+", re.UNICODE)


@BACKBONES.register("hash")
class HashFeatures(Backbone):
    """Cheap deterministic features with no model, for tests and CI smoke runs.

    Text: the signed feature-hashing trick (Weinberger et al. 2009, "Feature hashing for large
    scale multitask learning") over lower-cased word unigrams and bigrams:
    x[h(t) mod D] += s(t) with h, s from blake2b(t), then x / ||x|| (all zeros for an empty text).
    Texts sharing words get correlated features, so title <-> description retrieval is learnable.
    Image: the image shrunk to 8 x 8 RGB with a box filter, as 192 values x/255 - 0.5: colour
    layout, enough for photo -> product to be better than chance on produce. D = 128 for text
    unless given (``hash:D``); images are always 192-d.
    """

    name = "hash"
    modalities = ("text", "image")
    THUMB = 8

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        if arg is not None and (not arg.isdigit() or int(arg) < 1):
            raise ValueError(f"backbone 'hash' takes a positive text dimension (hash:D), got {arg!r}")
        self.text_dim = int(arg) if arg else 128

    @property
    def dim(self) -> int:
        return self.text_dim if self.modality == "text" else 3 * self.THUMB * self.THUMB

    @property
    def version(self) -> str:
        return "1" if self.modality == "text" else f"1;pillow={package_version('pillow')}"

    @property
    def preprocessing(self) -> str:
        if self.modality == "text":
            return f"lower-case \\w+ unigrams+bigrams, blake2b signed hashing into {self.text_dim}, L2 normalise"
        return f"PIL RGB, box resize {self.THUMB}x{self.THUMB}, x/255-0.5"

    def _text(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        tokens = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        x = np.zeros(self.text_dim, dtype=np.float64)
        for t in tokens:
            h = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
            x[(h >> 1) % self.text_dim] += 1.0 if h & 1 else -1.0
        norm = np.linalg.norm(x)
        return (x / norm if norm > 0 else x).astype(np.float32)

    def _image(self, path: Input) -> np.ndarray:
        from PIL import Image  # optional: encoders extra (pillow)

        thumb = load_rgb(path).resize((self.THUMB, self.THUMB), Image.BOX)  # type: ignore[attr-defined]  # Image.Resampling.BOX, kept for Pillow 9.0
        return (np.asarray(thumb, dtype=np.float32) / 255.0 - 0.5).reshape(-1)

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        fn = self._text if self.modality == "text" else self._image
        return np.stack([fn(x) for x in inputs])
