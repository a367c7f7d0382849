"""What a training step does fewer times, and that it computes the same thing (issue 31, item 2):
the queries go through their modality's tower with that modality's views in one call, the gradient
check is one sum unless something is wrong, and AdamW is the fused kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftbench.cost.floor import profile_step
from ftbench.cost.scaling import CostSpec, whole_step
from ftbench.data.batching import build_view_batch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.encode import batch_selection
from ftbench.model.towers import TowerConfig, Towers, build_towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.train.loop import NonFiniteError, TrainConfig, make_optimizer


def _batch(init="mlp", drop_text=False):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=64, interactions=64))
    torch.manual_seed(0)
    config = TowerConfig(embedding_dim=16, hidden_dim=32, init=init)
    towers = build_towers(dataset, config) if init == "residual" else Towers(dataset.catalog.feature_dims, config)
    layout = SlotLayout.from_catalog(dataset.catalog)
    cls = OBJECTIVES.get("factorized")
    objective = cls(cls.Config(), ObjectiveContext(layout, 16, 64, True, True))
    items = np.arange(24)
    selection = batch_selection(dataset, objective, items, 8, training=False)
    if drop_text:  # a batch with no view of the queries' modality
        text = layout.modality_code == layout.modalities.index("text")
        selection.mask[:, text] = False
    raw = build_view_batch(dataset.catalog, layout, items, selection)
    queries = torch.from_numpy(np.ascontiguousarray(dataset.queries.features[:24], dtype=np.float32))
    return towers, raw, dataset.queries.modality, queries


@pytest.mark.parametrize("init", ["mlp", "residual"])
@pytest.mark.parametrize("drop_text", [False, True])
def test_one_tower_call_for_views_and_queries_equals_two(init, drop_text):
    towers, raw, modality, queries = _batch(init, drop_text)
    assert modality == "text"
    views, query = towers.encode_views_and_queries(raw, modality, queries)
    grads_one = torch.autograd.grad((views.square().sum() + query[:, :3].sum()), list(towers.parameters()))
    views_two, query_two = towers.encode_views(raw), towers.encode(modality, queries)
    grads_two = torch.autograd.grad((views_two.square().sum() + query_two[:, :3].sum()), list(towers.parameters()))
    torch.testing.assert_close(views, views_two, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(query, query_two, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads_one, grads_two):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_training_step_runs_each_modality_s_tower_once():
    # clip at V = 2 with queries: image views, then text views and text queries in one call; the
    # first layer of each tower is one addmm in the forward pass
    spec = CostSpec(objectives=["clip"], batch_size=16, dim=32)
    gemms = profile_step(lambda: whole_step("clip", 2, spec, torch.device("cpu"), steps=3)(1)).gemms
    first_layers = [c.shapes[2] for c in gemms if c.name == "addmm" and c.shapes[2][1] == 512]
    assert sorted(first_layers) == [(64, 512), (96, 512)]


def _stepper():
    spec = CostSpec(objectives=["clip"], batch_size=16, dim=32)
    return whole_step("clip", 2, spec, torch.device("cpu"), steps=3).__self__


def test_the_gradient_check_names_a_non_finite_gradient_wherever_it_is():
    stepper = _stepper()
    names = [n for n, _ in stepper.towers.named_parameters(prefix="towers")]
    for index, bad in ((0, float("nan")), (len(names) - 1, float("inf")), (3, float("-inf"))):
        for p in stepper.params:
            p.grad = torch.zeros_like(p)
        dict(stepper.towers.named_parameters(prefix="towers"))[names[index]].grad.view(-1)[-1] = bad
        with pytest.raises(NonFiniteError, match=f"parameter '{names[index]}'"):
            stepper._check_gradients(5, {"contrastive_loss": torch.tensor(1.0)})


def test_finite_gradients_whose_sum_overflows_pass_the_check():
    stepper = _stepper()
    for p in stepper.params:
        p.grad = torch.full_like(p, 3e38)  # every entry finite, their float32 sum is not
    assert not torch.isfinite(torch.stack([p.grad.sum() for p in stepper.params]).sum())
    stepper._check_gradients(5, {"contrastive_loss": torch.tensor(1.0)})  # no error


def test_adamw_is_fused_and_updates_as_the_per_parameter_adamw():
    torch.manual_seed(0)
    towers = Towers({"image": 6, "text": 5}, TowerConfig(embedding_dim=4, hidden_dim=8))
    objective = OBJECTIVES.get("clip")(OBJECTIVES.get("clip").Config(), ObjectiveContext(
        SlotLayout.from_catalog(DATASETS.get("synthetic")().build(SyntheticConfig(items=16, interactions=16)).catalog),
        4, 16, True, True))
    config = TrainConfig(steps=10)
    optimizer, _ = make_optimizer(towers, objective, config)
    assert optimizer.defaults["fused"] is True
    params = [p for g in optimizer.param_groups for p in g["params"]]
    reference_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    groups = [{"params": reference_params[:len(optimizer.param_groups[0]["params"])], "weight_decay": config.weight_decay},
              {"params": reference_params[len(optimizer.param_groups[0]["params"]):], "weight_decay": 0.0}]
    reference = torch.optim.AdamW(groups, lr=config.lr, foreach=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(params, reference_params):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        optimizer.step(), reference.step()
    for p, q in zip(params, reference_params):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_a_kept_synthetic_catalog_hashes_each_slot_once_and_gives_the_row_hashes():
    from ftbench.data.content import feature_content_ids
    from ftbench.datasets.synthetic import SyntheticCatalog

    catalog = SyntheticCatalog(SyntheticConfig(items=300, interactions=300))
    items = np.array([5, 299, 0, 5])
    for slot, view in enumerate(catalog.slots):
        expected = feature_content_ids(catalog.features(items, slot), view.modality)
        np.testing.assert_array_equal(catalog.content_ids(items, slot), expected)
    cached = catalog._kept_content[0]
    catalog.content_ids(items, 0)
    assert catalog._kept_content[0] is cached  # hashed once per slot
    catalog._keep = False  # features generated per batch: hashed as read
    assert catalog.content_ids(items, 0) is None
