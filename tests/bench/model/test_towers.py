"""Towers and the encode path: shapes, unit norms, zeros at padding, the `--views` cap, and an
initialisation that does not depend on the order of the modality dictionary."""

import numpy as np
import torch

from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.encode import capped_availability, encode_batch
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext


def _setup(max_views=8):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=64, interactions=64))
    torch.manual_seed(0)
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    layout = SlotLayout.from_catalog(dataset.catalog)
    cls = OBJECTIVES.get("factorized")
    objective = cls(cls.Config(), ObjectiveContext(layout, 16, 64, True, True))
    return dataset, towers, layout, objective


def test_tower_outputs_have_the_embedding_dimension_and_unit_norm():
    dataset, towers, _, _ = _setup()
    for modality, dim in dataset.catalog.feature_dims.items():
        out = towers.encode(modality, torch.randn(7, dim))
        assert out.shape == (7, 16)
        torch.testing.assert_close(out.norm(dim=-1), torch.ones(7))


def test_encoded_views_are_unit_norm_where_present_zero_at_padding_and_capped():
    dataset, towers, layout, objective = _setup()
    items = np.arange(20)
    for max_views in (1, 2, 8):
        views = encode_batch(dataset, layout, towers, objective, items, max_views, torch.device("cpu"), training=False)
        b, w, d = views.embeddings.shape
        assert (b, d) == (20, 16) and views.mask.shape == (b, w)
        norms = views.embeddings.norm(dim=-1)
        torch.testing.assert_close(norms[views.mask], torch.ones(int(views.mask.sum())))
        assert torch.all(norms[~views.mask] == 0)
        assert int(views.mask.sum(1).max()) <= max_views
    capped = capped_availability(dataset.catalog, items, 2)
    assert capped.dtype == torch.bool and capped.shape == (20, len(layout.names))
    assert int(capped.sum(1).max()) <= 2 and bool((capped.sum(1) >= 1).all())


def test_initialisation_does_not_depend_on_the_modality_order():
    dims = {"text": 6, "image": 5}
    torch.manual_seed(3)
    a = Towers(dims, TowerConfig(embedding_dim=4, hidden_dim=8))
    torch.manual_seed(3)
    b = Towers(dict(reversed(list(dims.items()))), TowerConfig(embedding_dim=4, hidden_dim=8))
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb
        torch.testing.assert_close(pa, pb)
