"""What every backbone shares: the registry, the `Backbone` base class (version, preprocessing,
fingerprint: the feature-cache key), content hashing of inputs, and `create_backbone` for a spec
string ``NAME`` or ``NAME:ARG``. The package docstring lists the backbones.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ...registry import Registry


BACKBONES: Registry = Registry("backbone")


MODALITIES = ("text", "image")


ROLES = ("item", "query")


#: Inputs: a string for text, a path (str or Path) to an image file for images.
Input = Any


class BackboneUnavailable(RuntimeError):
    """A backbone's optional packages or weights are missing; the message says how to get them."""


def content_bytes(modality: str, x: Input) -> bytes:
    """The bytes that identify an input: UTF-8 of a text, the file's bytes for an image."""
    if modality == "text":
        if not isinstance(x, str):
            raise TypeError(f"text backbone input must be a string, got {type(x).__name__}")
        return x.encode("utf-8")
    path = Path(x)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None


def content_hash(modality: str, x: Input) -> str:
    """sha256 hex digest of :func:`content_bytes`: the content part of the feature-cache key and
    the key a `precomputed` feature file is indexed by.

    For a text: ``hashlib.sha256(text.encode("utf-8")).hexdigest()``; for an image file:
    ``hashlib.sha256(open(path, "rb").read()).hexdigest()``.
    """
    return hashlib.sha256(content_bytes(modality, x)).hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """A fast fingerprint of a (weights) file: sha256 over its size, first and last MiB.

    Reading a whole multi-hundred-MB weights file on every run would cost seconds; size plus
    head and tail detects any re-download or conversion in practice.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > (2 << 20):
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def package_version(dist: str) -> str:
    """Installed version of distribution `dist`, or "absent"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def require_module(module: str, extra_hint: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackboneUnavailable(f"python package {module!r} is not installed ({exc}). {extra_hint}") from None


ENCODERS_HINT = "Install the encoders extra: pip install -e '.[encoders]' (or `make install`)."


class Backbone(ABC):
    """A frozen encoder for one modality.

    Subclasses set `name`, `modalities` (those they can encode) and implement `dim`, `version`,
    `preprocessing` and `_encode`. `cacheable=False` opts out of the feature cache (features that
    are already on disk, like `precomputed`).
    """

    name: ClassVar[str] = "base"
    modalities: ClassVar[tuple[str, ...]] = ()
    cacheable: ClassVar[bool] = True

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        if modality not in self.modalities:
            raise ValueError(
                f"backbone {self.name!r} encodes {' and '.join(self.modalities)}, not {modality!r}"
            )
        if batch_size < 1:
            raise ValueError(f"backbone batch size must be at least 1, got {batch_size}")
        self.modality = modality
        self.arg = arg
        self.device = device
        self.batch_size = batch_size
        self.calls = 0  # number of `encode` calls that reached the model (tests count these)
        self.encoded = 0  # number of inputs those calls encoded

    # -- description -------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature dimension."""

    @property
    @abstractmethod
    def version(self) -> str:
        """Package versions and weights fingerprint: changes whenever outputs may change."""

    @property
    @abstractmethod
    def preprocessing(self) -> str:
        """How inputs are turned into model inputs (resize, crop, normalisation, tokenisation)."""

    def fingerprint(self) -> dict[str, Any]:
        """Everything about the backbone that determines its outputs (part of the cache key)."""
        return {
            "backbone": self.spec,
            "modality": self.modality,
            "version": self.version,
            "preprocessing": self.preprocessing,
            "dim": self.dim,
        }

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, inputs: Sequence[Input], role: str = "item") -> np.ndarray:
        """float32 [n, dim] features of `inputs` (texts, or image paths) in the given `role`.

        `role` is "item" (a catalog view) or "query"; backbones that encode queries differently
        (instruction prefixes, say) use it, the ones shipped here do not.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        inputs = list(inputs)
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            feats = np.asarray(self._encode(chunk, role), dtype=np.float32)
            if feats.shape != (len(chunk), self.dim):
                raise RuntimeError(
                    f"backbone {self.spec!r} returned shape {feats.shape} for {len(chunk)} inputs, "
                    f"expected ({len(chunk)}, {self.dim})"
                )
            out.append(feats)
        self.calls += 1
        self.encoded += len(inputs)
        return np.concatenate(out, axis=0)

    @abstractmethod
    def _encode(self, inputs: list[Input], role: str) -> np.ndarray: ...


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``NAME`` or ``NAME:ARG`` (the argument may itself contain colons)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty backbone spec")
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def create_backbone(spec: str, modality: str, device: str = "auto", batch_size: int = 32) -> Backbone:
    """Instantiate the backbone named by `spec` (``NAME`` or ``NAME:ARG``) for `modality`."""
    name, arg = parse_spec(spec)
    cls = BACKBONES.get(name)
    return cls(modality, arg, device=device, batch_size=batch_size)


def backbone_modalities(spec: str) -> tuple[str, ...]:
    """The modalities the backbone named in `spec` can encode."""
    return BACKBONES.get(parse_spec(spec)[0]).modalities
