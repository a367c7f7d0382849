"""A trained model to take away: `ftbench run --save-model DIR` writes it, `load_model(DIR)` reads it.

Layout (a folder, written to a temporary folder and renamed, so it is complete or absent):

- `model.safetensors`: every tensor of the trained towers (`towers.<name>`) and of the objective
  (`objective.<name>`): its serving parameters and buffers, e.g. the logit scale, oat's residuals,
  gates, LayerNorm and averaged plans. safetensors holds tensors only: nothing is unpickled.
- `model.json`: what rebuilds the modules around those tensors (objective name and config, tower
  config, `--views`, the slot layout and feature dimensions the towers read) and what the inputs
  must be: the backbone of each modality (spec and fingerprint) and the catalog's item ids hash.

A loaded model embeds the items and queries of any data set with the same slot layout, feature
dimensions and backbones through the evaluation's own encoding path (`ftbench.eval.evaluator`),
so the embeddings equal the run's `--save-embeddings` bit for bit on the same device.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..config import apply_overrides, to_jsonable
from ..data.catalog import ViewSlot
from ..data.views import SlotLayout
from ..datasets import DATASETS
from ..device import resolve_device
from ..eval.evaluator import EvalConfig, Evaluator
from ..files import staging_folder
from ..objectives import OBJECTIVES
from ..objectives.base import Objective, ObjectiveContext
from ..run.named_dataset import build_named_dataset
from .towers import TowerConfig, Towers

MODEL_FORMAT = "ftbench-model"
MODEL_FORMAT_VERSION = 1
TENSORS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


def item_ids_digest(catalog) -> str:
    """SHA-256 of the catalog's item ids in catalog order (what the item indices an objective's
    per-item parameters are rows of refer to)."""
    ids = np.asarray(catalog.item_ids())
    text = "\n".join(map(str, ids.tolist()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_backbones(dataset_config: Any, dataset) -> dict[str, dict[str, str | None]]:
    """{modality: {"spec", "fingerprint"}} of every modality the towers read (catalog and queries).

    The spec is the data set config's `<modality>_backbone` field, the fingerprint the one the
    loader recorded (`backbone_fingerprints` or `<modality>_backbone_fingerprint`); both None for
    features a generator made (the synthetic data sets)."""
    info = dataset.config or {}
    prints = dict(info.get("backbone_fingerprints") or {})
    modalities = set(dataset.catalog.feature_dims)
    if dataset.queries is not None:
        modalities.add(dataset.queries.modality)
    out = {}
    for m in sorted(modalities):
        spec = getattr(dataset_config, f"{m}_backbone", None)
        out[m] = {
            "spec": None if spec is None else str(spec),
            "fingerprint": prints.get(m, info.get(f"{m}_backbone_fingerprint")),
        }
    return out


def _layout_description(catalog) -> dict[str, Any]:
    return {
        "modalities": list(catalog.modalities),
        "slots": [{"name": s.name, "modality": s.modality, "role": s.role} for s in catalog.slots],
    }


def check_model_folder(folder: Path | str) -> Path:
    """`folder` as a place to write a model: new, empty, or a saved model (replaced); else ValueError."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ValueError(f"--save-model {str(target)!r} is a file, expected a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise ValueError(f"--save-model {str(target)!r} holds files that are not a saved model; pick an empty or new folder")
    return target


def save_model(
    folder: Path | str, prepared, dataset, towers: nn.Module, objective: Objective, selected_step: int | None = None
) -> Path:
    """Write the trained `towers` and `objective` of run `prepared` on `dataset` to `folder`
    (replaced if present, atomically). Returns the folder."""
    target = check_model_folder(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    catalog = dataset.catalog
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("towers", towers), ("objective", objective)):
        for name, value in module.state_dict().items():
            # safetensors refuses shared or non-contiguous storage: one contiguous CPU copy each
            tensors[f"{prefix}.{name}"] = value.detach().to("cpu").contiguous().clone()
    configs = prepared.configs

    context = objective.context
    description = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "ftbench_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "objective": prepared.spec.objective,
        "views": prepared.spec.views,
        "seed": prepared.spec.seed,
        "dataset": prepared.spec.dataset,
        "config_hash": prepared.config_hash,
        "selected_step": selected_step,
        "objective_config": to_jsonable(configs["objective"]),
        "tower_config": to_jsonable(configs["tower"]),  # with `init`, which the run's config leaves out for mlp
        "eval_config": to_jsonable(configs["eval"]),
        "dataset_config": to_jsonable(configs["dataset"]),
        "context": {
            "embedding_dim": context.embedding_dim,
            "num_items": context.num_items,
            "has_queries": context.has_queries,
            "has_interactions": context.has_interactions,
        },
        "layout": _layout_description(catalog),
        "feature_dims": {m: int(d) for m, d in sorted(catalog.feature_dims.items())},
        "query_modality": None if dataset.queries is None else dataset.queries.modality,
        "backbones": describe_backbones(configs["dataset"], dataset),
        "catalog_item_ids_sha256": item_ids_digest(catalog),
        "tensors": {
            "towers": sorted(k[len("towers.") :] for k in tensors if k.startswith("towers.")),
            "objective": sorted(k[len("objective.") :] for k in tensors if k.startswith("objective.")),
        },
    }
    with staging_folder(target) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": MODEL_FORMAT, "objective": prepared.spec.objective})
        (tmp / CONFIG_FILE).write_text(json.dumps(description, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


class SavedModel:
    """Trained towers and objective read back from a `--save-model` folder (`load_model`).

    Attributes
    ----------
    description : dict
        The folder's model.json (objective, configs, layout, backbones).
    towers, objective : torch.nn.Module
        The rebuilt modules in eval mode, on `device`.
    views : int
        The run's `--views`: at most this many views per item are fused.
    """

    def __init__(
        self, folder: Path, description: dict[str, Any], towers: nn.Module, objective: nn.Module, device: torch.device
    ) -> None:
        self.folder = folder
        self.description = description
        self.towers = towers
        self.objective = objective
        self.device = device
        self.views = int(description["views"])

    @property
    def objective_name(self) -> str:
        return self.description["objective"]

    def __repr__(self) -> str:
        d = self.description
        return (
            f"SavedModel({d['objective']!r}, views={d['views']}, dataset={d['dataset']!r}, "
            f"dim={d['context']['embedding_dim']}, folder={str(self.folder)!r})"
        )

    # -- data -------------------------------------------------------------------------------
    def build_dataset(
        self, dataset: str | None = None, data_dir: Path | str | None = None, overrides: Mapping[str, Any] | None = None
    ):
        """Build a data set to embed.

        Parameters
        ----------
        dataset : str, optional
            A data set plugin name (`ftbench datasets`); default: the one the model was trained on.
        data_dir : path, optional
            Its data folder (`dataset.data_dir`).
        overrides : mapping, optional
            Data set config fields (`{"items": 5000}` or `{"dataset.items": 5000}`).

        Returns
        -------
        MultiViewDataset
            For the training data set, its config starts from the run's (same generator settings,
            same folder unless `data_dir` is given); any other starts from the plugin's defaults.
        """
        name = dataset or self.description["dataset"]
        plugin_cls = DATASETS.get(name)
        config = plugin_cls.Config()
        if name == self.description["dataset"]:
            config = apply_overrides(config, self.description["dataset_config"], "dataset")
        changes = {}
        for key, value in (overrides or {}).items():
            section, _, field_name = key.rpartition(".")
            if section not in ("", "dataset"):
                raise KeyError(f"override {key!r}: only data set fields (dataset.<field>) can be set when embedding")
            changes[field_name] = value
        if data_dir is not None:
            changes["data_dir"] = str(data_dir)
        config = apply_overrides(config, changes, "dataset")
        return build_named_dataset(name, plugin_cls(), config)

    def check_dataset(self, dataset) -> None:
        """Raise ValueError unless `dataset` has the slot layout, feature dimensions and backbones
        the towers were trained on (and, for an objective with per-item parameters, the same items)."""
        d = self.description
        catalog = dataset.catalog
        where = f"data set {dataset.name!r}"
        if _layout_description(catalog) != d["layout"]:
            theirs = [f"{s['name']}:{s['modality']}" for s in _layout_description(catalog)["slots"]]
            ours = [f"{s['name']}:{s['modality']}" for s in d["layout"]["slots"]]
            raise ValueError(
                f"{where}: view slots {theirs} differ from the model's {ours} (the towers and the "
                "objective read slots by position)"
            )
        dims = {m: int(v) for m, v in catalog.feature_dims.items()}
        if dims != d["feature_dims"]:
            raise ValueError(f"{where}: feature dimensions {dims} differ from the model's {d['feature_dims']}")
        saved = d["backbones"]
        config = dataset.config or {}
        prints = dict(config.get("backbone_fingerprints") or {})
        for m, b in saved.items():
            got = prints.get(m, config.get(f"{m}_backbone_fingerprint"))
            if b["fingerprint"] is not None and got is not None and got != b["fingerprint"]:
                raise ValueError(
                    f"{where}: its {m} features come from backbone {got!r}, the model was trained on "
                    f"{b['fingerprint']!r} ({b['spec']}); encode the data with that backbone"
                )
            if (b["fingerprint"] is None) != (got is None) and m in dims:
                raise ValueError(
                    f"{where}: its {m} features come from "
                    f"{'a backbone' if got else 'a generator'}, the model's from "
                    f"{'backbone ' + repr(b['spec']) if b['fingerprint'] else 'a generator'}"
                )
        if (
            any(isinstance(module, nn.Embedding) for module in self.objective.modules())
            and item_ids_digest(catalog) != d["catalog_item_ids_sha256"]
        ):
            raise ValueError(
                f"{where}: objective {d['objective']!r} has per-item parameters (an ID embedding) "
                "learnt on the training catalog's items; it embeds that catalog only"
            )

    def _evaluator(self, dataset):
        self.check_dataset(dataset)
        config = apply_overrides(EvalConfig(), self.description["eval_config"], "eval")
        return Evaluator(dataset, self.towers, self.objective, self.views, self.device, config)

    # -- embeddings -------------------------------------------------------------------------
    def embed_items(self, dataset, items: np.ndarray | None = None) -> np.ndarray:
        """Served item embeddings, float32 [n, d], unit norm.

        Parameters
        ----------
        dataset : MultiViewDataset
            From `build_dataset` or a plugin; checked against the model (`check_dataset`).
        items : array of int, optional
            Catalog indices; default every item in catalog order.
        """
        evaluator = self._evaluator(dataset)
        index = np.arange(dataset.catalog.num_items) if items is None else np.asarray(items, dtype=np.int64)
        return evaluator.embed_items(index).cpu().numpy().astype(np.float32)

    def embed_queries(self, dataset, queries: np.ndarray | str = "test") -> np.ndarray:
        """Query embeddings, float32 [q, d].

        Parameters
        ----------
        dataset : MultiViewDataset
            A data set with queries.
        queries : {"test", "val", "train", "all"} or array of int
            A query split, every query, or rows of the data set's QuerySet.
        """
        if dataset.queries is None:
            raise ValueError(f"data set {dataset.name!r} has no queries to embed")
        evaluator = self._evaluator(dataset)
        return evaluator.embed_queries(query_rows(dataset, queries)).cpu().numpy().astype(np.float32)


def query_rows(dataset, queries: np.ndarray | str) -> np.ndarray:
    """QuerySet rows of a split name ("all": every query) or the given rows."""
    if isinstance(queries, str):
        if queries == "all":
            return np.arange(len(dataset.queries.ids))
        if queries not in ("train", "val", "test"):
            raise ValueError(f"queries must be train, val, test or all, got {queries!r}")
        return dataset.queries.indices(queries)
    return np.asarray(queries, dtype=np.int64)


def load_model(folder: Path | str, device: str = "cpu") -> SavedModel:
    """Read a `--save-model` folder: rebuild the towers and the objective and load their tensors."""
    folder = Path(folder)
    config_path, tensors_path = folder / CONFIG_FILE, folder / TENSORS_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r}: no such folder")
    for path in (config_path, tensors_path):
        if not path.is_file():
            raise FileNotFoundError(f"model folder {str(folder)!r}: {path.name} missing (written by ftbench run --save-model)")
    try:
        description = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config_path}: not JSON ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != MODEL_FORMAT:
        raise ValueError(f"{config_path}: not an ftbench model description (format {MODEL_FORMAT!r} expected)")
    if description.get("format_version") != MODEL_FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format_version {description.get('format_version')!r}; this ftbench reads "
            f"version {MODEL_FORMAT_VERSION}"
        )
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{tensors_path}: not a readable safetensors file ({exc})") from None

    tower_config = apply_overrides(TowerConfig(), description["tower_config"], "tower")
    dims = {m: int(v) for m, v in description["feature_dims"].items()}
    projections = None
    if tower_config.init == "residual":
        # the skip paths' starts are overwritten by the saved tensors: no train features to fit
        projections = {m: torch.zeros(tower_config.embedding_dim, d) for m, d in dims.items()}
    towers = Towers(dims, tower_config, projections)
    # the layout the objective was built for, from its description (SlotLayout reads these attributes)
    layout = SlotLayout.from_catalog(
        SimpleNamespace(  # type: ignore[arg-type]  # stands in for the catalog: the attributes from_catalog reads
            modalities=list(description["layout"]["modalities"]), slots=[ViewSlot(**s) for s in description["layout"]["slots"]]
        )
    )
    objective_cls = OBJECTIVES.get(description["objective"])
    objective_config = apply_overrides(objective_cls.Config(), description["objective_config"], "objective")
    context = ObjectiveContext(layout=layout, **description["context"])
    objective = objective_cls(objective_config, context)
    for prefix, module in (("towers", towers), ("objective", objective)):
        state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{tensors_path}: the {prefix} tensors do not fit a {description['objective']!r} model "
                f"of this config ({str(exc).splitlines()[0]})"
            ) from None
    target = resolve_device(device)
    towers.to(target).eval()
    objective.to(target).eval()
    return SavedModel(folder, description, towers, objective, target)
