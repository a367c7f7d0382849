"""``precomputed:DIR``: the user's own features, ``DIR/features.npy`` indexed by ``DIR/keys.txt``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .base import BACKBONES, Backbone, Input, content_hash, file_fingerprint


@BACKBONES.register("precomputed")
class Precomputed(Backbone):
    """Features the user computed elsewhere: spec ``precomputed:DIR`` with ``DIR/features.npy``
    (float [n, D], loaded with allow_pickle=False) and ``DIR/keys.txt`` (n lines, the sha256 hex
    of each input's content, :func:`content_hash`). Queries and items share the table. An input
    whose key is missing is an error naming it. Not cached (the features are already on disk).
    """

    name = "precomputed"
    modalities = ("text", "image")
    cacheable = False

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        if not arg:
            raise ValueError("backbone 'precomputed' needs a directory: precomputed:DIR")
        self.root = Path(arg).expanduser()
        self.features_path = self.root / "features.npy"
        keys_path = self.root / "keys.txt"
        for p in (self.features_path, keys_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"precomputed features: {p} does not exist (expected features.npy and keys.txt in {self.root})"
                )
        try:
            self._features = np.load(self.features_path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:  # truncated, not .npy, or pickled objects
            pickled = "object" in str(exc).lower()
            raise ValueError(
                f"{self.features_path}: not a readable float .npy array ({exc})"
                + ("; arrays of pickled Python objects are refused (no pickle is ever loaded)" if pickled else "")
            ) from None
        if self._features.dtype.kind not in "fiu":
            raise ValueError(f"{self.features_path}: expected a float array, got dtype {self._features.dtype}")
        if self._features.ndim != 2:
            raise ValueError(f"{self.features_path}: expected a 2-d array [n, D], got shape {self._features.shape}")
        keys = keys_path.read_text(encoding="utf-8").split()
        if len(keys) != self._features.shape[0]:
            raise ValueError(f"{keys_path}: {len(keys)} keys for {self._features.shape[0]} feature rows in {self.features_path}")
        self._index: dict[str, int] = {}
        for row, key in enumerate(keys):
            if not re.fullmatch(r"[0-9a-f]{64}", key):
                raise ValueError(f"{keys_path}, line {row + 1}: expected a sha256 hex digest, got {key[:80]!r}")
            if key in self._index:
                raise ValueError(f"{keys_path}, line {row + 1}: duplicate key {key} (first on line {self._index[key] + 1})")
            self._index[key] = row

    @property
    def dim(self) -> int:
        return int(self._features.shape[1])

    @property
    def version(self) -> str:
        return f"features={file_fingerprint(self.features_path)}"

    @property
    def preprocessing(self) -> str:
        return f"user-supplied features from {self.root}"

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        rows = []
        for x in inputs:
            key = content_hash(self.modality, x)
            if key not in self._index:
                label = x if self.modality == "image" else repr(str(x)[:60])
                raise KeyError(f"precomputed features in {self.root} have no row for {self.modality} input {label} (key {key})")
            rows.append(self._index[key])
        feats = np.asarray(self._features[rows], dtype=np.float32)
        if not np.isfinite(feats).all():
            raise ValueError(f"{self.features_path}: NaN or infinite values in the requested rows")
        return feats
