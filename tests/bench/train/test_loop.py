"""The training loop: it lowers the loss on an easy problem, and checkpoint selection keeps the
state of the best validation step (not the last one)."""

import copy

import numpy as np
import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.datasets.synthetic import SyntheticConfig
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.train.loop import TrainConfig, train


def _setup(items=400):
    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=items, interactions=2 * items, noise=0.2))
    torch.manual_seed(0)
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=32, hidden_dim=64))
    cls = OBJECTIVES.get("clip")
    objective = cls(cls.Config(), ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 32, items, True, True))
    return dataset, towers, objective


def test_training_lowers_the_loss_on_an_easy_problem():
    dataset, towers, objective = _setup()
    losses = []
    config = TrainConfig(steps=60, batch_size=64, lr=3e-3, eval_every=0)
    outcome = train(
        dataset, towers, objective, config, 2, 0, torch.device("cpu"), progress=lambda step, info: losses.append(info["loss"])
    )
    assert len(losses) == 60 and all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, (first, last)
    assert outcome.selected_step == 60  # no validation: the last state is the result


def test_checkpoint_selection_restores_the_best_validation_step():
    dataset, towers, objective = _setup(200)
    scores = iter([0.2, 0.9, 0.4])  # validations at steps 2, 4, 6: step 4 is the best
    snapshots = []

    def validate():
        snapshots.append(copy.deepcopy(towers.state_dict()))
        return "query->item/recall@10", next(scores)

    config = TrainConfig(steps=6, batch_size=32, eval_every=2)
    outcome = train(dataset, towers, objective, config, 2, 0, torch.device("cpu"), validate=validate)
    assert [h["step"] for h in outcome.history] == [2, 4, 6]
    assert outcome.selected_step == 4 and outcome.selected_score == 0.9
    assert outcome.select_metric == "query->item/recall@10"
    best, last = snapshots[1], snapshots[2]
    state = towers.state_dict()
    for name in state:
        torch.testing.assert_close(state[name], best[name])
    assert any(not torch.equal(best[n], last[n]) for n in best)  # the restore is not a no-op
