"""The learning-rate schedule, step by step: the rate each optimiser step of the training loop
uses, read from the optimiser as it steps, against linear warm-up then cosine decay written out
here.

With base rate lr, T steps and W = round(warmup_fraction * T) warm-up steps, step t = 0..T-1 uses

    lr * (t + 1) / W                                  for t < W  (reaching lr at the last warm-up step)
    lr * (1 + cos(pi * (t - W) / (T - W))) / 2        for t >= W (lr at t = W, towards 0 at t = T)

for every parameter group (towers, objective, with and without weight decay).
"""

from __future__ import annotations

import math

import pytest
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.train.loop import Stepper, TrainConfig

DATASET = DATASETS.get("synthetic")().build(SyntheticConfig(items=120, interactions=240, seed=3))


def _expected(t: int, steps: int, warmup: int, lr: float) -> float:
    if t < warmup:
        return lr * (t + 1) / warmup
    return lr * 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / (steps - warmup)))


def _rates_used(steps: int, warmup_fraction: float, lr: float) -> list[list[float]]:
    """The rate of every parameter group at each optimiser step of `steps` training steps."""
    torch.manual_seed(0)
    towers = Towers(DATASET.catalog.feature_dims, TowerConfig(embedding_dim=8, hidden_dim=16))
    cls = OBJECTIVES.get("clip")
    layout = SlotLayout.from_catalog(DATASET.catalog)
    objective = cls(cls.Config(), ObjectiveContext(layout, 8, DATASET.catalog.num_items, True, True))
    config = TrainConfig(steps=steps, batch_size=16, lr=lr, warmup_fraction=warmup_fraction, eval_every=0)
    stepper = Stepper(DATASET, towers, objective, config, 2, 0, torch.device("cpu"))
    rates = []
    stepper.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: rates.append([group["lr"] for group in optimizer.param_groups])
    )
    for step in range(1, steps + 1):
        stepper.step(step)
    return rates


@pytest.mark.parametrize("steps, warmup_fraction, warmup", [(12, 0.25, 3), (8, 0.0, 0)])
def test_each_step_uses_the_warm_up_then_cosine_rate(steps, warmup_fraction, warmup):
    lr = 0.01
    rates = _rates_used(steps, warmup_fraction, lr)
    assert len(rates) == steps and len(rates[0]) >= 2  # decay and no-decay groups
    for t, groups in enumerate(rates):
        for rate in groups:
            assert rate == pytest.approx(_expected(t, steps, warmup, lr), rel=1e-12, abs=1e-15), (t, rate)
    if warmup:  # by hand: a third, two thirds, all of lr, then lr again at the first cosine step
        assert [g[0] for g in rates[:4]] == pytest.approx([lr / 3, 2 * lr / 3, lr, lr], rel=1e-12)
        assert rates[-1][0] == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 8 / 9)), rel=1e-12)
    else:  # no warm-up: the first step at the full rate
        assert rates[0][0] == pytest.approx(lr, rel=1e-12)
    assert all(b[0] < a[0] for a, b in zip(rates[warmup:], rates[warmup + 1 :]))  # strictly decaying
