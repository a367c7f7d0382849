"""``st:MODEL``: any sentence-transformers model, named by its Hugging Face hub id or by a local folder.

``st:intfloat/e5-base-v2`` or ``st:all-MiniLM-L6-v2`` (a bare name is also tried as
``sentence-transformers/NAME``, as sentence-transformers does) reads the model from the Hugging Face
cache, downloading it first unless ``HF_HUB_OFFLINE=1``; offline, a model not in the cache is an
error saying how to make it available. ``st:/models/my-encoder`` (also ``st:./rel``, ``st:~/x``, or
any existing folder) reads a folder written by ``SentenceTransformer.save`` (or a plain transformers
model folder, which sentence-transformers mean-pools).

The feature-cache key holds the model's files, not its name: SHA-256 over every file of the folder
(hub models: their snapshot folder), hashed once and then kept by path, size and mtime
(`model_files_digest`). Two checkpoints therefore never share cache entries, a fine-tuned copy saved
over the old one re-encodes, and the same files reached by a hub id or by a path share them.

Queries and catalog views are encoded with the model's own prompts when it defines them (its
``config_sentence_transformers.json``): ``query`` for queries; ``document``, ``passage`` or ``corpus``
for catalog views (E5 and similar models are trained with such prefixes); otherwise as given.
"""

from __future__ import annotations

import json
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
    model_files_digest,
    model_folder_files,
    package_version,
    require_module,
)
from .minilm import encode_texts, longest_first

#: prompt names sentence-transformers models use for the catalog side, in the order tried
ITEM_PROMPTS = ("document", "passage", "corpus")
#: Pooling config keys whose modes are concatenated (each adds word_embedding_dimension)
POOLING_MODES = (
    "pooling_mode_cls_token",
    "pooling_mode_mean_tokens",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)
#: files of a hub repository that sentence-transformers' PyTorch path never reads (not downloaded)
HUB_IGNORE = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "*.md"]


def hub_offline() -> bool:
    """True when Hugging Face downloads are switched off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE)."""
    truthy = {"1", "ON", "YES", "TRUE"}
    if any(os.environ.get(var, "").strip().upper() in truthy for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants  # optional: encoders extra
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def is_local_reference(ref: str) -> bool:
    """A model reference that names a folder: an existing path, or one written as a path (absolute,
    ``./``, ``../``, ``~``); anything else is a hub id."""
    return ref.startswith(("/", "./", "../", "~", ".\\")) or Path(ref).expanduser().exists()


def resolve_hub_model(ref: str) -> Path:
    """The local snapshot folder of hub model `ref` (downloaded unless offline)."""
    hub = require_module("huggingface_hub", ENCODERS_HINT)
    candidates = [ref] if "/" in ref else [ref, f"sentence-transformers/{ref}"]
    for repo in candidates:
        try:
            return Path(hub.snapshot_download(repo, local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache (LocalEntryNotFoundError) or not a repo id
            continue
    how = (
        f'download it where there is network access (python -c "from sentence_transformers import '
        f"SentenceTransformer; SentenceTransformer('{ref}').save('/models/{ref.rsplit('/', 1)[-1]}')\"), "
        f"copy the folder here and give its path: st:/models/{ref.rsplit('/', 1)[-1]}"
    )
    if hub_offline():
        raise BackboneUnavailable(
            f"backbone 'st:{ref}': the model is not in the Hugging Face cache and downloads are off (HF_HUB_OFFLINE=1): {how}"
        )
    errors = []
    for repo in candidates:
        try:
            return Path(hub.snapshot_download(repo, ignore_patterns=HUB_IGNORE))
        except Exception as exc:  # noqa: BLE001 - unknown repo, network, gated model: said below
            errors.append(f"{repo}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise BackboneUnavailable(f"backbone 'st:{ref}': the model cannot be downloaded ({'; '.join(errors)}); {how}")


def dim_from_files(folder: Path) -> int | None:
    """The sentence embedding dimension read from the folder's module configs (the last Dense
    layer's out_features, else the Pooling layer's), without loading the model; None when the
    folder's modules are not ones this reads (the model is then loaded to ask it)."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        dim = None
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            config_path = folder / module.get("path", "") / "config.json"
            if kind in ("Transformer", "Normalize"):
                continue
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if kind == "Pooling":
                modes = sum(bool(config.get(k)) for k in POOLING_MODES)
                dim = int(config["word_embedding_dimension"]) * modes if modes else None
            elif kind == "Dense":
                dim = int(config["out_features"])
            else:
                return None
            if dim is None:
                return None
        return dim
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@BACKBONES.register("st")
class SentenceTransformerText(Backbone):
    """Any sentence-transformers model for text: ``st:HUB_ID`` or ``st:PATH`` (module docstring)."""

    name = "st"
    modalities = ("text",)
    supports_bf16 = True

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        ref = (arg or "").strip()
        if not ref:
            raise ValueError(
                "backbone 'st' needs a model: st:HUB_ID (e.g. st:intfloat/e5-base-v2) or st:PATH "
                "(a folder written by SentenceTransformer.save)"
            )
        self.model_ref = ref
        self._folder: Path | None = None
        if is_local_reference(ref):
            folder = Path(ref).expanduser().resolve()
            if not folder.is_dir():
                raise BackboneUnavailable(f"backbone 'st:{ref}': model folder {folder} does not exist (or is not a folder)")
            if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
                raise BackboneUnavailable(
                    f"backbone 'st:{ref}': {folder} is not a sentence-transformers model folder (no modules.json "
                    "or config.json); write one with SentenceTransformer(...).save(FOLDER)"
                )
            self._folder = folder
        self._model = None
        self._dim: int | None = None
        self._digest: str | None = None

    def model_folder(self) -> Path:
        """The folder the model is read from: the given one, or the hub model's snapshot."""
        if self._folder is None:
            self._folder = resolve_hub_model(self.model_ref)
        return self._folder

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = dim_from_files(self.model_folder())
            if self._dim is None:
                model = self.load()  # sentence-transformers 5 renamed the method
                ask = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dim = int(ask())
        return self._dim

    def model_digest(self) -> str:
        """SHA-256 over the model folder's files (`model_files_digest`)."""
        if self._digest is None:
            self._digest = model_files_digest(model_folder_files(self.model_folder()))
        return self._digest

    @property
    def version(self) -> str:
        return (
            f"sentence-transformers={package_version('sentence-transformers')};"
            f"model_files={self.model_digest()};torch={package_version('torch')}"
        )

    @property
    def preprocessing(self) -> str:
        return (
            "sentence-transformers pipeline of the model folder (modules.json: tokeniser, max_seq_length, pooling, "
            "normalisation); prompts 'query' for queries, 'document'/'passage'/'corpus' for views when defined"
        )

    def fingerprint(self) -> dict:
        """The model is its files (`model_digest`, in `version`), not the name or path it was reached by."""
        fp = super().fingerprint()
        fp["backbone"] = self.name
        return fp

    def load(self):
        if self._model is None:
            folder = self.model_folder()
            st = require_module("sentence_transformers", ENCODERS_HINT)
            require_module("transformers.utils.logging", ENCODERS_HINT).disable_progress_bar()
            try:
                self._model = st.SentenceTransformer(str(folder), device=str(resolve_device(self.device)), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise BackboneUnavailable(
                    f"backbone 'st:{self.model_ref}': {folder} cannot be loaded by "
                    f"sentence-transformers ({type(exc).__name__}: {exc})"
                ) from None
            self._model.eval()
        return self._model

    def prompt_name(self, role: str) -> str | None:
        prompts = getattr(self.load(), "prompts", None) or {}
        names = ("query",) if role == "query" else ITEM_PROMPTS
        return next((n for n in names if n in prompts), None)

    def encode_order(self, inputs) -> list[int]:
        return longest_first(self.load(), inputs)

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        model = self.load()
        with self.autocast():
            feats = encode_texts(model, inputs, self.batch_size, prompt_name=self.prompt_name(role))
        return feats.float().cpu().numpy()
