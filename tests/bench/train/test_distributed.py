"""Multi-process training (ftbench.train.distributed) equals one process on the same global batch.

Two gloo processes on 127.0.0.1 and one single-process reference run the same script
(distributed_worker.py) concurrently: every objective, 3 real training steps on a global batch of
15 items (8 + 7 per process). Tolerances, float32:

* step 1 (identical parameters): loss and every tower / objective gradient element within
  atol = rtol = 1e-5 (measured: loss bit-identical, gradients <= 5e-7 - only the order of the
  gradient sums differs);
* steps 2-3 (after AdamW updates, which carry those rounding differences forward; OAT's d x d
  Sinkhorn at eps = 0.01 with cost scale 100 amplifies them most): atol = rtol = 1e-4
  (measured <= 3e-5);
* the two processes stay bit-identical to each other (losses, gradients, parameters);
* every process builds the same towers before DDP broadcasts rank 0's (`factorized_residual`:
  tower.init='residual', skip projections fitted in each process).

Also: `torchrun --standalone --nproc_per_node 2 -m ftbench run` end to end writes one result that
records the world size and the global batch.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ftbench.train.distributed import DistributedContext, from_environment, process_device

WORKER = Path(__file__).with_name("distributed_worker.py")
CASES = ["clip", "full_ot", "factorized", "oat", "oat_id", "mover", "factorized_residual"]
STEP1_TOL = dict(atol=1e-5, rtol=1e-5)
LATER_TOL = dict(atol=1e-4, rtol=1e-4)
LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    port = str(_free_port())
    envs = [_clean_env()]  # the single-process reference
    for rank in range(2):
        envs.append(
            {
                **_clean_env(),
                "WORLD_SIZE": "2",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            }
        )
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for env in envs
    ]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for name, p, log in zip(("single", "rank0", "rank1"), procs, logs):
        assert p.returncode == 0, f"{name} worker failed:\n{log[-4000:]}"
    load = lambda name: torch.load(out / f"{name}.pt", weights_only=False)  # noqa: E731
    return load("single"), load("rank0"), load("rank1")


def _assert_close(actual, expected, tol, what):
    torch.testing.assert_close(actual, expected, **tol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("case", CASES)
def test_each_process_sees_the_single_process_global_batch(runs, case):
    single, rank0, rank1 = runs
    assert rank0["world_size"] == 2 and single["world_size"] == 1
    sizes = [len(items) for items in single[case]["items"]]
    assert all(2 <= n <= 15 for n in sizes) and any(n % 2 for n in sizes)  # some steps split unevenly
    for step, items in enumerate(single[case]["items"]):
        for rank in (rank0, rank1):
            assert torch.equal(rank[case]["items"][step], items)  # same items, same order
            assert torch.equal(rank[case]["mask"][step], single[case]["mask"][step])  # same views, same layout


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_equal_single_process(runs, case):
    single, rank0, _ = runs
    ref, got = single[case], rank0[case]
    for step in range(len(ref["loss"])):
        tol = STEP1_TOL if step == 0 else LATER_TOL
        _assert_close(torch.tensor(got["loss"][step]), torch.tensor(ref["loss"][step]), tol, f"{case} step {step + 1} loss")
        assert set(got["grads"][step]) == set(ref["grads"][step])  # the same parameters received gradients
        assert any(k.startswith("towers.") for k in ref["grads"][step])
        assert any(k.startswith("objective.") for k in ref["grads"][step])  # logit scale, OAT residuals, ...
        for name, grad in ref["grads"][step].items():
            # a residual tower's last MLP layer starts at zero: the layers before it get no gradient at step 1
            before_zero_layer = step == 0 and case.endswith("_residual") and ".net." in name and ".net.4." not in name
            assert grad.abs().sum() > 0 or name.startswith("objective.") or before_zero_layer, f"{case}: zero gradient for {name}"
            _assert_close(got["grads"][step][name], grad, tol, f"{case} step {step + 1} grad {name}")
    for name, value in ref["params"].items():
        _assert_close(got["params"][name], value, LATER_TOL, f"{case} parameter {name} after 3 steps")


@pytest.mark.parametrize("case", CASES)
def test_processes_stay_bit_identical(runs, case):
    _, rank0, rank1 = runs
    a, b = rank0[case], rank1[case]
    assert a["loss"] == b["loss"]
    for step in range(len(a["grads"])):
        assert all(torch.equal(a["grads"][step][k], b["grads"][step][k]) for k in a["grads"][step])
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])


@pytest.mark.parametrize("case", CASES)
def test_every_process_builds_the_same_towers(runs, case):
    """Each process builds (for tower.init='residual': fits) its towers itself, before DDP
    broadcasts rank 0's: the starts must already be identical, and equal the single process's."""
    single, rank0, rank1 = runs
    for name, value in single[case]["initial"].items():
        assert torch.equal(rank0[case]["initial"][name], value) and torch.equal(rank1[case]["initial"][name], value), name


def test_torchrun_run_writes_one_result_recording_world_size_and_global_batch(tmp_path):
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ftbench",
        "run",
        "--objective",
        "factorized",
        "--views",
        "4",
        "--out",
        str(tmp_path),
        "--set",
        "dataset.items=200",
        "--set",
        "dataset.interactions=300",
        "--set",
        "train.eval_every=0",
        "--set",
        "train.val_gallery_size=100",
        "--steps",
        "3",
        "--batch-size",
        "17",
        "--device",
        "cpu",
        "--quiet",
    ]
    proc = subprocess.run(args, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, files  # rank 0 alone writes
    payload = json.loads(files[0].read_text())
    training = payload["training"]
    assert training["world_size"] == 2 and training["backend"] == "gloo"
    assert training["global_batch_size"] == 17 and training["per_process_batch_size"] == [9, 8]
    assert payload["config"]["train_config"]["batch_size"] == 17
    assert "query->item" in payload["metrics"] and payload["timing"]["steps"] == 3
    assert proc.stdout.count("result:") == 1  # one report, from rank 0


def test_shards_are_contiguous_and_cover_the_batch():
    for world in (1, 2, 3, 8):
        for batch in range(world, 40):
            slices = [DistributedContext(world_size=world, rank=r).shard(batch) for r in range(world)]
            assert slices[0].start == 0 and slices[-1].stop == batch
            assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
            sizes = [s.stop - s.start for s in slices]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="--batch-size"):
        DistributedContext(world_size=4, rank=0).shard(3)


def test_environment_is_read_as_torchrun_sets_it():
    assert not from_environment({}).enabled
    assert not from_environment({"WORLD_SIZE": "1"}).enabled
    ctx = from_environment({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"})
    assert (ctx.world_size, ctx.rank, ctx.local_rank, ctx.is_main) == (4, 2, 0, False)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK is not set"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, r"RANK=2 is outside 0\.\.WORLD_SIZE-1"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR and MASTER_PORT not set"),
    ],
)
def test_bad_environment_gets_a_clear_error(env, message):
    with pytest.raises(ValueError, match=message):
        from_environment(env)


def test_each_process_takes_its_local_gpu():
    ctx = DistributedContext(world_size=2, rank=1, local_rank=1)
    assert process_device(torch.device("cpu"), ctx) == torch.device("cpu")
    with pytest.raises(ValueError, match="pass --device cuda"):
        process_device(torch.device("cuda", 1), ctx)
