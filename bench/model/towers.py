"""Shared encoders: one trainable tower per modality on frozen backbone features.

Every objective in a comparison trains the same towers; the objective is the only variable.
Queries are encoded by the tower of their modality (text for searches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batching import ViewBatch
from ..config import option


@dataclass
class TowerConfig:
    embedding_dim: int = option(256, "output dimension d of every tower (L2-normalised)", "protocol")
    hidden_dim: int = option(512, "hidden width of the 2-layer MLP tower", "our reading")
    dropout: float = option(0.0, "dropout after the hidden layer", "our reading")

    def validate(self) -> None:
        if self.embedding_dim < 1 or self.hidden_dim < 1:
            raise ValueError("tower dimensions must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("tower dropout must be in [0, 1)")


class Tower(nn.Module):
    """Linear -> LayerNorm -> GELU -> (dropout) -> Linear -> L2 normalise."""

    def __init__(self, input_dim: int, config: TowerConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, config.hidden_dim),
            nn.LayerNorm(config.hidden_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.embedding_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(features), dim=-1)


class Towers(nn.Module):
    """One Tower per modality; encodes ViewBatches into [B, W, d] and queries into [Q, d]."""

    def __init__(self, feature_dims: dict[str, int], config: TowerConfig) -> None:
        super().__init__()
        self.config = config
        # built in sorted order: a catalog's dict of dimensions may come from a set, whose order
        # changes with the process's string-hash seed; the seeded initialisation (and the parameter
        # order DDP checks across processes) must not
        self.towers = nn.ModuleDict({m: Tower(feature_dims[m], config) for m in sorted(feature_dims)})

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
