"""What a training step does fewer times, and that it computes the same thing (issue 31, item 2):
the gradient check is one sum unless something is wrong, and a kept synthetic catalog hashes each
slot's content once. (One tower call for views and queries and fused AdamW were measured ~10%
faster but change results by float round-off; they are not used: docs/perf.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ftbench.cost.scaling import CostSpec, whole_step
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.train.loop import NonFiniteError


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
