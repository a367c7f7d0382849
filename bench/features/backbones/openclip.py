"""``open_clip:...``: any open_clip model (Cherti et al. 2023), for text and images, named three ways:

* ``open_clip:MODEL/PRETRAINED``, e.g. ``open_clip:ViT-B-32/laion2b_s34b_b79k``: a model and one of
  its pretrained tags (``open_clip.list_pretrained()``); the weights come from open_clip's cache
  (downloaded first unless ``HF_HUB_OFFLINE=1``: offline, weights not in the cache are an error
  saying how to make them available);
* ``open_clip:MODEL:WEIGHTS``, e.g. ``open_clip:ViT-B-32:/models/vit_b_32.bin``: a model and a local
  weights file;
* ``open_clip:FOLDER``: a local folder holding ``open_clip_config.json`` and its weights (the layout
  of open_clip models on the Hugging Face hub; open_clip's ``local-dir:`` schema).

The feature-cache key holds the weights (and the folder's config), hashed with SHA-256 once and then
kept by path, size and mtime (`model_files_digest`), so two checkpoints never share cache entries.

open_clip_torch and torchvision are not ftbench dependencies: open_clip imports torchvision (its
image transforms) at import, so without it this backbone says what to install
(``pip install open_clip_torch torchvision``, the torchvision build that matches the installed torch).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...device import resolve_device
from .base import (
    BACKBONES,
    Backbone,
    BackboneUnavailable,
    Input,
    model_files_digest,
    model_folder_files,
    package_version,
)
from .images import load_rgb
from .sentence_transformer import hub_offline, is_local_reference

INSTALL_HINT = (
    f"pip install open_clip_torch torchvision (torchvision: the build matching the installed torch {package_version('torch')})"
)
FORMS = "open_clip:MODEL/PRETRAINED (e.g. open_clip:ViT-B-32/laion2b_s34b_b79k), open_clip:MODEL:/path/to/weights or open_clip:/path/to/folder"


def import_open_clip() -> Any:
    """The open_clip module, or a `BackboneUnavailable` naming the package to install: open_clip
    itself, or a package it imports (torchvision, which it needs and does not declare everywhere)."""
    try:
        return importlib.import_module("open_clip")
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        if missing and missing != "open_clip":
            raise BackboneUnavailable(
                f"open_clip is installed but cannot be imported: it needs the python package {missing!r}, which is "
                f"not installed ({exc}). Install it: {INSTALL_HINT}"
            ) from None
        raise BackboneUnavailable(f"python package 'open_clip' is not installed ({exc}). Install it: {INSTALL_HINT}") from None


@BACKBONES.register("open_clip")
class OpenClip(Backbone):
    """Any open_clip model, by pretrained tag, weights file or folder (module docstring). Text:
    ``open_clip.get_tokenizer(MODEL)`` then ``encode_text``; images: open_clip's own evaluation
    transform (from ``create_model_and_transforms``) then ``encode_image``. Outputs are the projected,
    unnormalised CLIP embeddings."""

    name = "open_clip"
    modalities = ("text", "image")

    def __init__(self, modality: str, arg: str | None = None, device: str = "auto", batch_size: int = 32) -> None:
        super().__init__(modality, arg, device, batch_size)
        ref = (arg or "").strip()
        self.folder: Path | None = None
        self.weights: Path | None = None
        self.pretrained_tag: str | None = None
        if ref and is_local_reference(ref) and ":" not in ref:
            folder = Path(ref).expanduser().resolve()
            if not (folder / "open_clip_config.json").is_file():
                raise BackboneUnavailable(
                    f"backbone 'open_clip:{ref}': {folder} is not an open_clip model folder (no open_clip_config.json)"
                )
            self.folder, self.model_name = folder, f"local-dir:{folder}"
        elif ":" in ref:
            model, _, weights = ref.partition(":")
            if not model or not weights:
                raise ValueError(f"backbone 'open_clip' is named {FORMS} (got {self.spec!r})")
            self.model_name, self.weights = model, Path(weights).expanduser()
            if not self.weights.is_file():
                raise BackboneUnavailable(f"open_clip weights file {self.weights} does not exist")
        elif "/" in ref:
            model, _, tag = ref.partition("/")
            if not model or not tag:
                raise ValueError(f"backbone 'open_clip' is named {FORMS} (got {self.spec!r})")
            self.model_name, self.pretrained_tag = model, tag
        else:
            raise ValueError(f"backbone 'open_clip' needs a model and its weights: {FORMS} (got {self.spec!r})")
        self._model = None
        self._dim: int | None = None
        self._digest: str | None = None

    # -- identity ------------------------------------------------------------------------------
    def weights_path(self) -> Path:
        """The weights file: the one given, or the pretrained tag's file in open_clip's cache
        (downloaded first unless downloads are off)."""
        if self.weights is None and self.folder is None:
            oc = import_open_clip()
            cfg = oc.pretrained.get_pretrained_cfg(self.model_name, self.pretrained_tag)
            if not cfg:
                raise BackboneUnavailable(
                    f"backbone {self.spec!r}: open_clip knows no pretrained weights "
                    f"{self.pretrained_tag!r} for model {self.model_name!r} (see open_clip.list_pretrained())"
                )
            try:
                target = oc.pretrained.download_pretrained(cfg)
            except Exception as exc:  # noqa: BLE001 - offline (LocalEntryNotFoundError), network, checksum
                state = "downloads are off (HF_HUB_OFFLINE=1)" if hub_offline() else "the download failed"
                raise BackboneUnavailable(
                    f"backbone {self.spec!r}: the weights are not in open_clip's cache and {state} "
                    f'({type(exc).__name__}: {exc}). Download them where there is network access (python -c "import '
                    f"open_clip; print(open_clip.pretrained.download_pretrained(open_clip.pretrained.get_pretrained_cfg("
                    f"'{self.model_name}', '{self.pretrained_tag}')))\" prints the file), copy the file here and give "
                    f"its path: open_clip:{self.model_name}:/path/to/that/file"
                ) from None
            if not target or not Path(target).is_file():
                raise BackboneUnavailable(f"backbone {self.spec!r}: open_clip returned no weights file ({target!r})")
            self.weights = Path(target)
        return self.weights  # type: ignore[return-value]  # set above when it was None

    def model_digest(self) -> str:
        """SHA-256 over the folder's files, or over the weights file (`model_files_digest`)."""
        if self._digest is None:
            files = model_folder_files(self.folder) if self.folder is not None else {"weights": self.weights_path()}
            self._digest = model_files_digest(files)
        return self._digest

    @property
    def version(self) -> str:
        model = "local-dir" if self.folder is not None else self.model_name
        return (
            f"open_clip={package_version('open_clip_torch')};model={model};model_files={self.model_digest()};"
            f"torch={package_version('torch')}"
        )

    @property
    def preprocessing(self) -> str:
        return "open_clip tokenizer" if self.modality == "text" else "open_clip evaluation transform"

    def fingerprint(self) -> dict:
        """The model is its name and files (`version`), not the path or tag it was reached by."""
        fp = super().fingerprint()
        fp["backbone"] = self.name
        return fp

    # -- model ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:
            model = self.load()[0]
            visual = getattr(model, "visual", None)
            out = getattr(visual, "output_dim", None)
            if out is None:
                with torch.inference_mode():
                    tokens = self.load()[2](["a"]).to(self._device)
                    out = int(model.encode_text(tokens).shape[-1])
            self._dim = int(out)
        return self._dim

    def load(self):
        if self._model is None:
            oc = import_open_clip()
            self._device = str(resolve_device(self.device))
            if self.folder is not None:
                model, _, preprocess = oc.create_model_and_transforms(self.model_name)
            else:
                model, _, preprocess = oc.create_model_and_transforms(self.model_name, pretrained=str(self.weights_path()))
            tokenizer = oc.get_tokenizer(self.model_name)
            self._model = (model.eval().to(self._device), preprocess, tokenizer)
        return self._model

    def _encode(self, inputs: list[Input], role: str) -> np.ndarray:
        model, preprocess, tokenizer = self.load()
        with torch.inference_mode():
            if self.modality == "text":
                feats = model.encode_text(tokenizer([str(x) for x in inputs]).to(self._device))
            else:
                batch = torch.stack([preprocess(load_rgb(p)) for p in inputs]).to(self._device)
                feats = model.encode_image(batch)
        return feats.float().cpu().numpy()
