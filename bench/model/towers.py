"""Shared encoders: one trainable tower per modality on frozen backbone features.

Every objective in a comparison trains the same towers; the objective is the only variable.
Queries are encoded by the tower of their modality (text for searches; image for the photo
queries of grocery-store), so a query and the views it is scored against share one tower.

Two starts (`tower.init`):

- ``mlp``: the 2-layer MLP from a random initialisation; the backbone's geometry is gone at step 0.
- ``residual``: normalise(P x/||x|| + MLP(x)), the same MLP as a residual branch whose last layer
  starts at zero, beside a linear skip path P [d, d_in] fitted on the train items' features
  (`skip_projection`): an orthonormal embedding when d_in <= d (every cosine between backbone
  features kept exactly), else the top-d principal axes of the train items' unit-normalised
  features (uncentred: the axes that keep most of their inner products), then a fixed rotation
  per modality and a gain sqrt(d) (`ResidualTower`). At step 0 the tower's output is the
  backbone's cosine geometry up to that projection, which training then moves (both P and the
  MLP are trained).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_options, option
from ..data.batching import ViewBatch

if TYPE_CHECKING:
    from ..data.dataset import MultiViewDataset

TOWER_INITS = ("mlp", "residual")

#: at most this many train feature vectors per modality go into the principal axes (evenly
#: spaced train items): d_in x d_in second moments of ~1k-dimensional features are settled well
#: before that, and the fit stays a few seconds on a paper-scale catalog
FIT_MAX_VECTORS = 20_000


@dataclass
class TowerConfig:
    embedding_dim: int = option(256, "output dimension d of every tower (L2-normalised)", "protocol", ge=1)
    hidden_dim: int = option(512, "hidden width of the 2-layer MLP tower", "our reading", ge=1)
    dropout: float = option(0.0, "dropout after the hidden layer", "our reading", ge=0, lt=1)
    init: str = option(
        "mlp",
        "'mlp': the MLP from a random start; 'residual': a linear skip path fitted on the train items' "
        "features (orthonormal embedding, or the top principal axes when d_in > d) keeps the backbone's cosine "
        "geometry at step 0, plus the MLP as a residual branch whose last layer starts at zero",
        "our reading",
        choices=TOWER_INITS,
    )

    def validate(self) -> None:
        check_options(self, "tower")


def _mlp(input_dim: int, config: TowerConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(input_dim, config.hidden_dim),
        nn.LayerNorm(config.hidden_dim),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden_dim, config.embedding_dim),
    )


class Tower(nn.Module):
    """Linear -> LayerNorm -> GELU -> (dropout) -> Linear -> L2 normalise."""

    def __init__(self, input_dim: int, config: TowerConfig) -> None:
        super().__init__()
        self.net = _mlp(input_dim, config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(features), dim=-1)


def modality_rotation(modality: str, dim: int) -> np.ndarray:
    """A fixed random rotation [dim, dim] per modality (Haar, seeded by the modality's name).

    The backbones' spaces are unrelated, yet their leading axes (the first rows of `skip_projection`:
    [I; 0], or the principal axes, the first being the features' mean direction) would all land on
    the same output coordinates: at step 0 every title would look like every image along them,
    and a fused item embedding mixes its modalities through that false agreement (measured in
    docs/method.md#towers). Rotating each modality its own way keeps every within-modality
    inner product and leaves cross-modal ones at chance, as the random MLP does."""
    rng = np.random.default_rng([zlib.crc32(modality.encode()), dim])
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))[None, :]  # the sign convention that makes q unique (Haar)


class ResidualTower(nn.Module):
    """normalise(P x/||x|| + MLP(x)): a trainable linear skip path P [d, d_in] and the MLP of
    `Tower` as a residual branch whose last layer starts at zero.

    P starts as sqrt(d) * R_m @ `projection` (`modality_rotation` R_m). The factor sqrt(d) puts the
    skip output on the scale of a LayerNorm'd vector (unit root-mean-square coordinates), where
    the residual branch's coordinates grow by about the learning rate per step under AdamW
    whatever the scale: at norm 1 that branch soon outweighs the skip path (measured in
    docs/method.md#towers). The MLP is drawn first and P is set without a random draw, so under one seed
    the MLP's first layer is the one `Tower` draws: the two starts differ only where they mean to."""

    def __init__(self, input_dim: int, config: TowerConfig, projection: torch.Tensor, modality: str) -> None:
        super().__init__()
        d = config.embedding_dim
        if tuple(projection.shape) != (d, input_dim):
            raise ValueError(
                f"skip projection has shape {tuple(projection.shape)}, expected "
                f"{(d, input_dim)} (tower.embedding_dim x feature dimension)"
            )
        self.net = _mlp(input_dim, config)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)  # `_mlp` ends in its output layer
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        rotation = torch.from_numpy(modality_rotation(modality, d))
        start = np.sqrt(d) * (rotation @ projection.detach().to(torch.float64))
        self.skip = nn.Parameter(start.to(torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # the skip path sees unit-normalised features: the geometry kept is the backbone's cosine
        # geometry (what the frozen references score), and its output norm does not depend on
        # the backbone's feature scale
        skip = F.linear(F.normalize(features, dim=-1), self.skip.to(features.dtype))
        return F.normalize(skip + self.net(features), dim=-1)


def skip_projection(input_dim: int, output_dim: int, features: np.ndarray | None = None) -> np.ndarray:
    """The skip path's start P [output_dim, input_dim] (float32).

    input_dim <= output_dim: [I; 0], an orthonormal embedding (P^T P = I), every inner product
    kept; `features` are not needed. input_dim > output_dim: the rows are the top `output_dim`
    eigenvectors of X^T X over the unit-normalised rows of `features` [n, input_dim] (principal
    axes without centring: centring would drop the mean direction, which carries much of the
    cosine between backbone features), so P^T P is the projection that keeps most of their inner
    products. Computed in float64 with each axis's sign fixed (largest component positive), so
    the same features give the same P in every process."""
    if input_dim <= output_dim:
        return np.eye(output_dim, input_dim, dtype=np.float32)
    if features is None or len(features) == 0:
        raise ValueError(f"a skip projection from {input_dim} to {output_dim} dimensions needs train features to fit")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != input_dim:
        raise ValueError(f"skip projection: features have shape {x.shape}, expected (n, {input_dim})")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    _, vectors = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
    top = vectors[:, ::-1][:, :output_dim].T.copy()
    lead = np.abs(top).argmax(axis=1)
    top *= np.sign(top[np.arange(output_dim), lead])[:, None]
    return top.astype(np.float32)


def train_view_features(dataset: MultiViewDataset, modality: str, limit: int = FIT_MAX_VECTORS) -> np.ndarray:
    """Backbone features [n, d_in] of the train items' available views of `modality` (every slot
    of that modality, not only those within --views: the fit is of the backbone's space), from at
    most `limit` // (slots of the modality) evenly spaced train items. Validation and test items
    are never read."""
    catalog = dataset.catalog
    items = dataset.items("train")
    slots = [s for s, slot in enumerate(catalog.slots) if slot.modality == modality]
    if not slots:
        raise ValueError(f"tower.init='residual': the catalog has no {modality!r} view slot to fit the {modality} tower on")
    keep = max(1, limit // len(slots))
    if len(items) > keep:
        items = items[np.unique(np.linspace(0, len(items) - 1, keep).round().astype(np.int64))]
    available = catalog.availability(items)
    parts = [catalog.features(items[available[:, s]], s) for s in slots if available[:, s].any()]
    if not parts:
        raise ValueError(
            f"tower.init='residual': no train item has a {modality!r} view to fit the {modality} tower's skip projection on"
        )
    out = np.concatenate(parts)
    return out[:limit]


def build_towers(dataset: MultiViewDataset, config: TowerConfig) -> Towers:
    """The run's towers; with `init='residual'` each modality's skip path is fitted on the train
    items' features (`train_view_features`) when its features are wider than the embedding, else
    it is the orthonormal embedding (no data needed). Deterministic in the data: every process of
    a multi-process run fits the same P (and DistributedDataParallel starts every process from
    rank 0's parameters in any case)."""
    dims = dataset.catalog.feature_dims
    projections = None
    if config.init == "residual":
        projections = {}
        for modality in sorted(dims):
            features = train_view_features(dataset, modality) if dims[modality] > config.embedding_dim else None
            projections[modality] = torch.from_numpy(skip_projection(dims[modality], config.embedding_dim, features))
    return Towers(dims, config, projections)


class Towers(nn.Module):
    """One Tower per modality; encodes ViewBatches into [B, W, d] and queries into [Q, d].

    `projections` (modality -> P [d, d_in]): the skip paths' start under `init='residual'`; a
    modality without one (features no wider than d) gets the orthonormal embedding. Fitting them
    on a data set's train items is `build_towers`."""

    def __init__(
        self, feature_dims: dict[str, int], config: TowerConfig, projections: dict[str, torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        if projections is not None and config.init != "residual":
            raise ValueError(f"skip projections given for tower.init={config.init!r}; only 'residual' towers have a skip path")

        def tower(modality: str) -> nn.Module:
            if config.init == "mlp":
                return Tower(feature_dims[modality], config)
            projection = (projections or {}).get(modality)
            if projection is None:
                if feature_dims[modality] > config.embedding_dim:
                    raise ValueError(
                        f"tower.init='residual': the {modality} features ({feature_dims[modality]} dimensions) are wider "
                        f"than tower.embedding_dim={config.embedding_dim}, so its skip path must be fitted on train "
                        f"features (build the towers with build_towers)"
                    )
                projection = torch.from_numpy(skip_projection(feature_dims[modality], config.embedding_dim))
            return ResidualTower(feature_dims[modality], config, projection, modality)

        # built in sorted order: a catalog's dict of dimensions may come from a set, whose order
        # changes with the process's string-hash seed; the seeded initialisation (and the parameter
        # order DDP checks across processes) must not
        self.towers = nn.ModuleDict({m: tower(m) for m in sorted(feature_dims)})

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def encode_views(self, batch: ViewBatch) -> torch.Tensor:
        """Embeddings [B, W, d] of the batch's views (zeros at padding positions)."""
        b, w = batch.shape
        param = next(self.parameters())
        # only the positions no modality fills are zeroed (writing zeros over the whole [B*W, d]
        # buffer first cost ~4% of encoding a catalog)
        out = torch.empty(b * w, self.embedding_dim, device=param.device, dtype=param.dtype)
        unfilled = torch.ones(b * w, dtype=torch.bool, device=param.device)
        for positions, _ in batch.features.values():
            unfilled[positions.to(param.device)] = False
        out.index_fill_(0, torch.nonzero(unfilled).squeeze(1), 0.0)
        for modality, (positions, values) in batch.features.items():
            encoded = self.towers[modality](values.to(device=param.device, dtype=param.dtype))
            # under bf16 autocast the towers compute in bfloat16; the batch stays in the weights' dtype
            # in place: one [B*W, d] buffer, not a fresh copy per modality (autograd tracks it)
            out.index_copy_(0, positions.to(param.device), encoded.to(out.dtype))
        return out.view(b, w, self.embedding_dim)

    def encode(self, modality: str, features: torch.Tensor) -> torch.Tensor:
        param = next(self.parameters())
        return self.towers[modality](features.to(device=param.device, dtype=param.dtype))
