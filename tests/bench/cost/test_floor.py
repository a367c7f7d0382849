"""`ftbench.cost.floor`: a step's FLOPs and the matrix products replayed as its GEMM floor."""

from collections import Counter

import pytest
import torch
from ftbench.cost.floor import GemmRecorder, GemmReplay, profile_step
from ftbench.cost.scaling import CostSpec, format_cost, whole_step
from torch import nn


def _two_layer_step(rows=4, d_in=5, hidden=7, d_out=3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))
    x = torch.randn(rows, d_in)

    def step():
        model.zero_grad()
        model(x).square().sum().backward()

    return step


def test_the_flop_count_of_a_small_model_is_the_hand_count():
    n, d_in, h, d_out = 4, 5, 7, 3
    prof = profile_step(_two_layer_step(n, d_in, h, d_out))
    forward = 2 * n * d_in * h + 2 * n * h * d_out
    # backward: the last layer's input and weight gradients; the first layer's weight gradient only
    # (the input needs none)
    backward = 2 * n * d_out * h + 2 * d_out * n * h + 2 * h * n * d_in
    assert prof.flops == forward + backward == 1064
    assert sum(call.flops for call in prof.gemms) == prof.flops
    assert prof.flops_by_op == {"aten.addmm": forward, "aten.mm": backward}
    # the products, in the order the step ran them
    assert [(c.name, c.shapes) for c in prof.gemms] == [
        ("addmm", ((h,), (n, d_in), (d_in, h))),
        ("addmm", ((d_out,), (n, h), (h, d_out))),
        ("mm", ((n, d_out), (d_out, h))),
        ("mm", ((d_out, n), (n, h))),
        ("mm", ((h, n), (n, d_in))),
    ]


def test_batched_products_are_recorded_and_counted():
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    prof = profile_step(lambda: a @ b)
    assert [(c.name, c.shapes) for c in prof.gemms] == [("bmm", ((3, 4, 5), (3, 5, 6)))]
    assert prof.flops == prof.gemms[0].flops == 2 * 3 * 4 * 5 * 6


def test_the_replay_runs_the_recorded_products_with_their_strides_and_scalars():
    x, w = torch.randn(6, 8), torch.randn(5, 8)
    bias = torch.randn(5)

    def step():
        torch.addmm(bias, x, w.t(), beta=0.5, alpha=2.0)  # a transposed operand, scalars
        torch.mm(x.t(), x)

    recorded = profile_step(step).gemms
    assert recorded[0].strides[2] == (1, 8) and dict(recorded[0].scalars) == {"beta": 0.5, "alpha": 2.0}
    replay = GemmReplay(recorded)
    with GemmRecorder() as again:
        replay.run()
    assert again.calls == recorded


def _profiler_products(step):
    """(op, input shapes) of every matrix product, as torch.profiler saw them: a second witness."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    names = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
    return Counter(
        (e.name.split("::")[1], tuple(tuple(s) for s in e.input_shapes if s)) for e in prof.events() if e.name in names
    )


@pytest.mark.parametrize("objective", ["clip", "factorized"])
def test_the_recorded_products_are_the_ones_a_whole_step_ran(objective):
    spec = CostSpec(objectives=[objective], batch_size=16, dim=32)
    recorded = profile_step(lambda: whole_step(objective, 4, spec, torch.device("cpu"), steps=3)(1))
    seen = _profiler_products(lambda: whole_step(objective, 4, spec, torch.device("cpu"), steps=3)(1))
    mine = Counter((c.name, c.shapes) for c in recorded.gemms)
    assert mine == seen and len(recorded.gemms) > 10
    # the towers' first layers are among them: [rows, 96] (image) and [rows, 64] (text) by [., 512]
    assert any(c.name == "addmm" and c.shapes[1][1] == 96 and c.shapes[2] == (96, 512) for c in recorded.gemms)
    assert any(c.name == "addmm" and c.shapes[1][1] == 64 and c.shapes[2] == (64, 512) for c in recorded.gemms)
    assert recorded.flops == sum(c.flops for c in recorded.gemms)


def test_the_cost_table_shows_the_floor_and_reads_files_without_it():
    row = {
        "objective": "clip",
        "views": 8,
        "status": "ok",
        "objective_ms_median": 3.0,
        "step_ms_median": 20.0,
        "peak_memory_mb": 12.0,
        "step_gflop": 0.75,
        "gemm_calls": 23,
        "floor_ms_median": 8.0,
        "efficiency": 0.4,
    }
    old = {k: v for k, v in row.items() if k not in ("step_gflop", "gemm_calls", "floor_ms_median", "efficiency")}
    text = format_cost({"rows": [row, {**old, "objective": "siglip"}], "exponents": {}})
    lines = text.splitlines()
    assert lines[5].split() == ["clip", "8", "0.750", "23", "8.00", "0.40"] and "floor / step" in lines[3]
    assert not any(line.startswith("siglip") for line in lines[3:])  # a row without a floor has none to show
    assert max(map(len, lines)) <= 80
    assert "floor" not in format_cost({"rows": [old], "exponents": {}})


def test_a_cost_cell_reports_its_flops_floor_and_efficiency():
    import dataclasses

    from ftbench.cost.scaling import _measure_cell

    spec = CostSpec(objectives=["clip"], batch_size=16, dim=32, repeats=2, warmup=1, threads=1)
    row = _measure_cell(("clip", 2, dataclasses.asdict(spec)))
    assert row["status"] == "ok" and row["gemm_calls"] == sum(g["count"] for g in row["gemms"]) > 10
    assert row["step_gflop"] == pytest.approx(sum(g["count"] * _flops(g) for g in row["gemms"]) / 1e9)
    assert row["efficiency"] == pytest.approx(row["floor_ms_median"] / row["step_ms_median"])


def _flops(gemm):
    a, b = gemm["shapes"][-2], gemm["shapes"][-1]
    return 2 * a[0] * a[1] * a[2] * b[2] if len(a) == 3 else 2 * a[0] * a[1] * b[1]
