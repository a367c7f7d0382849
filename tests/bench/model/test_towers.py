"""Towers and the encode path: shapes, unit norms, zeros at padding, the `--views` cap, and an
initialisation that does not depend on the order of the modality dictionary."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ftbench.config import apply_overrides
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.dataset import MultiViewDataset
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.encode import capped_availability, encode_batch
from ftbench.model.towers import (
    TowerConfig,
    Towers,
    build_towers,
    modality_rotation,
    skip_projection,
    train_view_features,
)
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.train.loop import TrainConfig, train


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


# -- tower.init='residual': a skip path that keeps the backbone's geometry at step 0 -----------------

RESIDUAL = TowerConfig(embedding_dim=16, hidden_dim=32, init="residual")


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _features_of_train_items(dataset, modality):
    return torch.from_numpy(train_view_features(dataset, modality))


def test_residual_towers_keep_every_cosine_between_train_features_when_d_in_fits():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=64, interactions=64))
    config = dataclasses.replace(RESIDUAL, embedding_dim=128)  # wider than image (96) and text (64)
    torch.manual_seed(0)
    towers = build_towers(dataset, config)
    for modality in dataset.catalog.feature_dims:
        x = _features_of_train_items(dataset, modality)
        out = towers.encode(modality, x)
        cosines = F.normalize(x, dim=-1) @ F.normalize(x, dim=-1).T
        torch.testing.assert_close(out @ out.T, cosines, atol=1e-5, rtol=0)


def test_residual_towers_keep_the_inner_products_of_the_top_principal_axes_when_d_in_is_wider():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=64, interactions=64))
    torch.manual_seed(0)
    towers = build_towers(dataset, RESIDUAL)  # d = 16 < 64 (text), 96 (image)
    for modality in dataset.catalog.feature_dims:
        x = _unit(train_view_features(dataset, modality).astype(np.float64))
        # the best rank-16 approximation of the train features' Gram matrix (Eckart-Young)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        truncated = (u[:, :16] * s[:16] ** 2) @ u[:, :16].T
        tower = towers.towers[modality]
        with torch.no_grad():
            skip = F.linear(F.normalize(torch.from_numpy(x).float(), dim=-1), tower.skip)
            assert torch.count_nonzero(tower.net(torch.from_numpy(x).float())) == 0  # residual branch starts at zero
        # up to the gain sqrt(d) of the skip path (the rotation keeps inner products)
        np.testing.assert_allclose((skip @ skip.T).numpy() / 16, truncated, atol=1e-4)
        out = towers.encode(modality, torch.from_numpy(x).float())
        torch.testing.assert_close(out, F.normalize(skip, dim=-1))


def test_each_modality_is_rotated_its_own_way_so_leading_axes_do_not_coincide():
    towers = Towers({"image": 6, "text": 6}, TowerConfig(embedding_dim=64, hidden_dim=8, init="residual"))
    image, text = (towers.towers[m].skip.detach().double() / 8 for m in ("image", "text"))
    torch.testing.assert_close(image.T @ image, torch.eye(6, dtype=torch.float64))  # orthonormal columns
    # without the rotations both would be [I; 0] and image axis k would equal text axis k
    assert (image.T @ text).abs().max() < 0.6
    rotation = modality_rotation("image", 64)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(64), atol=1e-12)
    np.testing.assert_array_equal(rotation, modality_rotation("image", 64))  # fixed, not drawn from the run's seed
    assert not np.allclose(rotation, modality_rotation("text", 64))


def test_residual_towers_are_exact_when_the_train_features_span_no_more_than_d_dimensions():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(40, 6)))[0]  # a 6-dimensional subspace of R^40
    x = rng.normal(size=(30, 6)) @ basis.T
    p = torch.from_numpy(skip_projection(40, 8, x))
    torch.testing.assert_close(p @ p.T, torch.eye(8), atol=1e-5, rtol=0)
    xs = F.normalize(torch.from_numpy(x).float(), dim=-1)
    torch.testing.assert_close((xs @ p.T) @ (xs @ p.T).T, xs @ xs.T, atol=1e-5, rtol=0)


def _split_dataset(train_scale=1.0, other_scale=1.0, seed=0):
    """24 items (12 train, 6 val, 6 test) with 3 image views of 20 dimensions; the train features
    lie in a 5-dimensional subspace, the others anywhere."""
    rng = np.random.default_rng(seed)
    n, split = 24, np.repeat([0, 1, 2], [12, 6, 6])
    basis = np.linalg.qr(np.random.default_rng(1).normal(size=(20, 5)))[0]
    slots = [
        ViewSlot("photo", "image", "primary"),
        ViewSlot("shelf 1", "image", "auxiliary"),
        ViewSlot("shelf 2", "image", "auxiliary"),
    ]
    features = []
    for _ in slots:
        f = rng.normal(size=(n, 20)) * other_scale
        f[split == 0] = train_scale * rng.normal(size=(12, 5)) @ basis.T
        features.append(f.astype(np.float32))
    catalog = ArrayCatalog(slots, features, np.ones((n, 3), bool), np.arange(n))
    return MultiViewDataset("split-check", catalog, split), basis


def test_the_skip_projection_is_fitted_on_train_items_only():
    first, basis = _split_dataset(other_scale=1.0)
    second, _ = _split_dataset(other_scale=50.0, seed=0)  # the same train features, other val/test features
    config = TowerConfig(embedding_dim=5, hidden_dim=8, init="residual")
    a, b = build_towers(first, config), build_towers(second, config)
    torch.testing.assert_close(a.towers["image"].skip, b.towers["image"].skip, rtol=0, atol=0)
    # its rows span the train features' subspace, not the val/test features' directions
    p = a.towers["image"].skip.detach().double().numpy()
    np.testing.assert_allclose(p @ basis @ basis.T, p, atol=1e-6)

    read = []
    catalog = first.catalog
    original = catalog.features
    catalog.features = lambda items, slot: read.append(np.asarray(items)) or original(items, slot)
    build_towers(first, config)
    assert read and all(set(items.tolist()) <= set(first.items("train").tolist()) for items in read)


def test_the_skip_projection_is_deterministic_and_independent_of_the_seed():
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=64, interactions=64))
    torch.manual_seed(0)
    a = build_towers(dataset, RESIDUAL)
    torch.manual_seed(1)
    b = build_towers(dataset, RESIDUAL)
    for modality in dataset.catalog.feature_dims:
        torch.testing.assert_close(a.towers[modality].skip, b.towers[modality].skip, rtol=0, atol=0)
    # the evenly spaced subsample is deterministic too
    x = train_view_features(dataset, "text", limit=50)
    assert 0 < len(x) <= 50
    np.testing.assert_array_equal(x, train_view_features(dataset, "text", limit=50))


def test_under_one_seed_the_residual_branch_draws_the_mlp_tower_s_first_layer():
    dims = {"text": 6, "image": 5}
    torch.manual_seed(3)
    mlp = Towers(dims, TowerConfig(embedding_dim=8, hidden_dim=8))
    torch.manual_seed(3)
    residual = Towers(dims, TowerConfig(embedding_dim=8, hidden_dim=8, init="residual"))
    for m in dims:
        torch.testing.assert_close(mlp.towers[m].net[0].weight, residual.towers[m].net[0].weight)
        assert torch.count_nonzero(residual.towers[m].net[-1].weight) == 0


def test_bad_tower_init_and_missing_projection_fail_with_a_clear_message():
    with pytest.raises(ValueError, match=r"tower option 'init'.*'mlp', 'residual'.*'pca'"):
        apply_overrides(TowerConfig(), {"init": "pca"}, "tower")
    with pytest.raises(ValueError, match=r"text features \(64 dimensions\) are wider than tower.embedding_dim=16.*build_towers"):
        Towers({"text": 64}, RESIDUAL)
    with pytest.raises(ValueError, match="only 'residual' towers have a skip path"):
        Towers({"text": 4}, TowerConfig(embedding_dim=8), {"text": torch.eye(8, 4)})
    with pytest.raises(ValueError, match=r"skip projection has shape \(4, 4\), expected \(16, 4\)"):
        Towers({"text": 4}, RESIDUAL, {"text": torch.eye(4)})


@pytest.mark.parametrize("name", sorted(OBJECTIVES.names()))
def test_every_objective_trains_a_step_with_residual_towers(name):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=128, interactions=256, seed=2))
    torch.manual_seed(0)
    towers = build_towers(dataset, RESIDUAL)
    cls = OBJECTIVES.get(name)
    objective = cls(cls.Config(), ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 16, 128, True, True))
    before = {k: v.clone() for k, v in towers.state_dict().items()}
    losses = []
    train(
        dataset,
        towers,
        objective,
        TrainConfig(steps=2, batch_size=32, eval_every=0),
        8,
        0,
        torch.device("cpu"),
        progress=lambda step, info: losses.append(info["loss"]),
    )
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = towers.state_dict()
    for modality in dataset.catalog.feature_dims:
        # the skip path and the residual branch's (zero-started) last layer both moved
        for key in (f"towers.{modality}.skip", f"towers.{modality}.net.4.weight"):
            assert not torch.equal(before[key], after[key]), (name, key)


def test_tower_init_is_recorded_only_when_not_mlp_and_old_results_rerun_with_mlp():
    from ftbench.run.experiment import RunSpec, prepare
    from ftbench.run.provenance import spec_from_result

    mlp = prepare(RunSpec(objective="clip"))
    residual = prepare(RunSpec(objective="clip", sets=["tower.init=residual"]))
    assert "init" not in mlp.config["tower_config"]  # runs with today's towers keep their hashes and file names
    assert residual.config["tower_config"]["init"] == "residual" and residual.config_hash != mlp.config_hash
    for prepared in (mlp, residual):  # a result file's config runs again as itself
        again = prepare(spec_from_result({"config": prepared.config}))
        assert again.config_hash == prepared.config_hash
        assert again.configs["tower"].init == prepared.configs["tower"].init
