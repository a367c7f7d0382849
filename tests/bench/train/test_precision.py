"""`--precision bf16` (towers under bfloat16 autocast, objectives in float32) and the GPU path
(`--device cuda`, pinned-memory loading). The CPU path runs here; the CUDA test runs where a GPU is."""

import pytest
import torch
from ftbench.cli.app import app
from ftbench.data.views import SlotLayout
from ftbench.datasets import DATASETS
from ftbench.device import check_precision
from ftbench.model.encode import to_device
from ftbench.model.towers import TowerConfig, Towers
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.run.experiment import RunSpec, prepare
from ftbench.train.loop import Stepper, TrainConfig
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def dataset():
    plugin = DATASETS.get("synthetic")()
    return plugin.build(plugin.Config(items=120, interactions=240, max_views=4, seed=1))


def _first_step(dataset, precision, device=torch.device("cpu"), objective="full_ot"):
    torch.manual_seed(0)
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=32, hidden_dim=64)).to(device)
    cls = OBJECTIVES.get(objective)
    ctx = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 32, dataset.catalog.num_items, True, True)
    obj = cls(cls.Config(), ctx).to(device)
    stepper = Stepper(dataset, towers, obj, TrainConfig(steps=2, batch_size=16), 4, 0, device, precision=precision)
    loss, views = stepper.step(1)
    grads = {n: p.grad for n, p in towers.named_parameters()}
    return float(loss), views, grads


def test_bf16_runs_the_towers_in_bfloat16_and_the_objective_in_float32(dataset):
    loss32, views32, _ = _first_step(dataset, "fp32")
    loss16, views16, grads16 = _first_step(dataset, "bf16")
    assert views16.embeddings.dtype == torch.float32  # what the objective (Sinkhorn here) receives
    assert loss16 != loss32  # the towers did compute in bfloat16 ...
    assert abs(loss16 - loss32) <= 1e-2 * abs(loss32)  # ... within bfloat16 rounding (measured 4e-4)
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads16.values())


def test_precision_is_recorded_in_the_config_only_when_not_fp32():
    fp32, bf16 = prepare(RunSpec(objective="clip")), prepare(RunSpec(objective="clip", precision="bf16"))
    assert "precision" not in fp32.config  # float32 runs keep their hashes and file names
    assert bf16.config["precision"] == "bf16" and bf16.config_hash != fp32.config_hash


def test_unknown_precision_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--precision must be one of fp32, bf16"):
        check_precision("fp16", torch.device("cpu"))
    res = CliRunner().invoke(app, ["run", "--precision", "fp16", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--precision must be one of fp32, bf16" in res.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_step_with_bf16_and_pinned_memory(dataset):
    cpu = torch.ones(3)
    moved = to_device(cpu, torch.device("cuda"))
    assert moved.is_cuda and torch.equal(moved.cpu(), cpu)
    loss_cpu, _, _ = _first_step(dataset, "fp32")
    loss_gpu, views, grads = _first_step(dataset, "fp32", torch.device("cuda"))
    assert views.embeddings.is_cuda and abs(loss_gpu - loss_cpu) <= 1e-4 * abs(loss_cpu)
    if torch.cuda.is_bf16_supported():
        loss16, views16, grads16 = _first_step(dataset, "bf16", torch.device("cuda"))
        assert views16.embeddings.dtype == torch.float32 and abs(loss16 - loss_cpu) <= 2e-2 * abs(loss_cpu)
        assert all(torch.isfinite(g).all() for g in grads16.values())
