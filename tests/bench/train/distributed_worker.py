"""One process of the distributed-equivalence test (tests/bench/train/test_distributed.py).

Launched as a script, either as one of N processes of a gloo group (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT set, as torchrun sets them) or alone (no WORLD_SIZE: the single-process
reference). Both paths run the same code: for every objective, seeded towers and objective, then
`STEPS` real training steps (`ftbench.train.loop.Stepper`: sampling, view selection, sharded encoding,
gather, objective, backward, DDP, AdamW) on a tiny synthetic catalog. Writes, per objective, each
step's loss, the gradients of every tower and objective parameter, the gathered batch's item order
and mask, and the final parameters to OUT/rank<RANK>.pt (OUT/single.pt alone).

Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.model.towers import TowerConfig, build_towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.train.distributed import setup
from ftbench.train.loop import Stepper, TrainConfig

STEPS = 3
GLOBAL_BATCH = 15  # odd on purpose: the two processes hold 8 and 7 items
VIEWS = 4
# case name -> (objective, config overrides); oat_id covers a learnable ID-embedding parameter
CASES = {
    "clip": ("clip", {}),
    "full_ot": ("full_ot", {"tolerance": 0.0, "iterations": 50}),
    "factorized": ("factorized", {"aux_samples": 1}),
    "oat": ("oat", {}),
    "oat_id": ("oat", {"anchor": "id"}),
    "mover": ("mover", {}),
    "factorized_residual": ("factorized", {"aux_samples": 1}),
}
# cases whose towers start from the backbone's geometry (tower.init='residual'): each process fits
# the skip projections on its own (embedding 16 < feature widths 64, 96: principal axes)
RESIDUAL_CASES = {"factorized_residual"}


def build_dataset():
    plugin = DATASETS.get("synthetic")()
    config = plugin.Config(items=120, interactions=240, max_views=6, seed=3)
    return plugin.build(config)


def run_case(name: str, dataset, context) -> dict:
    objective_name, overrides = CASES[name]
    torch.manual_seed(0)
    init = "residual" if name in RESIDUAL_CASES else "mlp"
    towers = build_towers(dataset, TowerConfig(embedding_dim=16, hidden_dim=32, init=init))
    # before DistributedDataParallel, which would overwrite every process's start with rank 0's
    initial = {n: p.detach().clone() for n, p in towers.named_parameters()}
    cls = OBJECTIVES.get(objective_name)
    objective_context = ObjectiveContext(
        layout=SlotLayout.from_catalog(dataset.catalog),
        embedding_dim=16,
        num_items=dataset.catalog.num_items,
        has_queries=True,
        has_interactions=True,
    )
    objective = cls(cls.Config(**overrides), objective_context)
    config = TrainConfig(steps=STEPS, batch_size=GLOBAL_BATCH, warmup_fraction=0.0)
    stepper = Stepper(dataset, towers, objective, config, VIEWS, seed=0, device=torch.device("cpu"), distributed=context)
    named = [("towers." + n, p) for n, p in towers.named_parameters()]
    named += [("objective." + n, p) for n, p in objective.named_parameters()]
    record: dict = {"loss": [], "grads": [], "items": [], "mask": []}
    for step in range(1, STEPS + 1):
        loss, views = stepper.step(step)
        record["loss"].append(float(loss))
        record["grads"].append({n: p.grad.detach().clone() for n, p in named if p.grad is not None})
        record["items"].append(views.item_index.clone())
        record["mask"].append(views.mask.clone())
    record["params"] = {n: p.detach().clone() for n, p in named}
    record["initial"] = initial
    return record


def main(out: Path) -> None:
    torch.set_num_threads(1)
    context, _ = setup(torch.device("cpu"))
    dataset = build_dataset()
    results = {name: run_case(name, dataset, context) for name in CASES}
    results["world_size"] = context.world_size
    torch.save(results, out / (f"rank{context.rank}.pt" if context.enabled else "single.pt"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
