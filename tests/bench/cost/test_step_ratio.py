"""`ftbench cost --step-ratio`: whole steps of several objectives side by side in one process."""

import json

import pytest
from ftbench.cli.app import app
from ftbench.cost.scaling import CostSpec
from ftbench.cost.step_ratio import run_step_ratio, summarize
from typer.testing import CliRunner


def test_summary_by_hand():
    # two rounds of three steps; the reference's medians are 10 and 20, the other's 30 and 50
    times = {"clip": [[9.0, 10.0, 12.0], [20.0, 19.0, 30.0]], "oat": [[30.0, 31.0, 29.0], [50.0, 49.0, 60.0]]}
    clip, oat = summarize(["clip", "oat"], times)
    assert clip["ratio_median"] == clip["ratio_min"] == clip["ratio_max"] == 1.0
    assert oat["round_ratios"] == [3.0, 2.5]
    assert oat["ratio_median"] == pytest.approx(2.75)
    assert (oat["ratio_min"], oat["ratio_max"]) == (2.5, 3.0)
    assert oat["ratio_q1"] == pytest.approx(2.625) and oat["ratio_q3"] == pytest.approx(2.875)
    assert oat["step_ms_median"] == pytest.approx(40.0)  # median of all six steps: (31 + 49) / 2
    assert clip["step_ms_median"] == pytest.approx(15.5)
    assert "floor_ms_median" not in clip


def test_floor_and_efficiency_by_hand():
    times = {"clip": [[9.0, 10.0, 12.0], [20.0, 19.0, 30.0]]}
    floors = {"clip": [[4.0, 5.0, 6.0], [5.0, 5.0, 5.0]]}
    profiles = {"clip": {"gflop": 0.75, "gemm_calls": 23}}
    (clip,) = summarize(["clip"], times, floors, profiles)
    # per round: floor median / step median = 5 / 10 and 5 / 20
    assert (clip["efficiency_min"], clip["efficiency_max"]) == (0.25, 0.5)
    assert clip["efficiency_median"] == pytest.approx(0.375) and clip["floor_ms_median"] == 5.0
    assert (clip["gflop"], clip["gemm_calls"]) == (0.75, 23)


@pytest.mark.parametrize(
    "names, message",
    [
        (["clip"], "at least two objectives"),
        (["clip", "oat", "clip"], "named twice"),
        (["clip", "nope"], "nope"),
    ],
)
def test_bad_objective_lists_fail_before_any_work(names, message):
    with pytest.raises(Exception, match=message):
        run_step_ratio(CostSpec(objectives=names), views=8, rounds=1)


def test_a_step_over_the_memory_budget_fails_before_any_work():
    # pairwise's estimate grows with V^2: at V = 32, 1.6 GB against clip's 0.13
    with pytest.raises(ValueError, match=r"pairwise at V=32 needs an estimated .* over --budget-gb 1.0"):
        run_step_ratio(CostSpec(objectives=["clip", "pairwise"], memory_budget_gb=1.0), views=32, rounds=1)


def test_a_small_run_times_every_objective_in_every_round(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "cost",
            "--step-ratio",
            "-o",
            "clip,oat-floor",
            "--views",
            "2",
            "--rounds",
            "2",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "step_ratio__V2__B16__cpu.json").read_text())
    assert result["kind"] == "step_ratio" and result["reference"] == "clip" and result["views"] == 2
    assert [len(result["times_ms"][n]) for n in ("clip", "oat-floor")] == [2, 2]
    assert all(len(r) == 2 and min(r) > 0 for n in ("clip", "oat-floor") for r in result["times_ms"][n])
    rows = {row["objective"]: row for row in result["objectives"]}
    assert rows["clip"]["round_ratios"] == [1.0, 1.0]
    assert len(rows["oat-floor"]["round_ratios"]) == 2 and result["threads"] == 1
    # each step's FLOPs and GEMM floor, timed in the same rounds
    assert [len(result["floor_ms"][n]) for n in ("clip", "oat-floor")] == [2, 2]
    for name in ("clip", "oat-floor"):
        profile = result["profiles"][name]
        assert rows[name]["gflop"] == profile["gflop"] == pytest.approx(profile["gemm_gflop"]) and profile["gflop"] > 0
        assert sum(g["count"] for g in profile["gemms"]) == profile["gemm_calls"] == rows[name]["gemm_calls"]
        assert 0 < rows[name]["floor_ms_median"] and rows[name]["efficiency_median"] > 0
    assert "GEMM floor" in res.output and "floor/step" in res.output
    assert max(len(line) for line in res.output.splitlines() if not line.startswith("results:")) <= 80
    assert "oat-floor" in res.output and "x clip" in res.output


def test_step_ratio_takes_one_v():
    res = CliRunner().invoke(app, ["cost", "--step-ratio", "--views", "2,8"])
    assert res.exit_code == 2 and "one V" in res.output


def test_the_report_shows_a_step_ratio_file(tmp_path):
    from ftbench.report.cost_section import step_ratio_lines

    (tmp_path / "cost").mkdir()
    times = {"clip": [[10.0, 12.0], [20.0, 22.0]], "oat": [[33.0, 33.0], [63.0, 63.0]]}
    payload = {
        "kind": "step_ratio",
        "reference": "clip",
        "views": 8,
        "rounds": 2,
        "threads": 2,
        "spec": {"batch_size": 256, "repeats": 2},
        "device": {"device": "cpu"},
        "objectives": summarize(["clip", "oat"], times),
        "times_ms": times,
    }
    (tmp_path / "cost" / "step_ratio__V8__B256__cpu.json").write_text(json.dumps(payload))
    (tmp_path / "cost" / "step_ratio__broken.json").write_text(json.dumps({"kind": "step_ratio"}))
    (tmp_path / "cost" / "solver_bench.json").write_text(json.dumps({"kind": "solver_bench"}))
    lines, bad = step_ratio_lines(tmp_path)
    text = "\n".join(lines)
    # oat: 33 / 11 = 3.0 and 63 / 21 = 3.0 in its two rounds
    assert "| oat | 48.00 | 3.00x | 3.00-3.00 | 3.00-3.00 |" in text
    assert "| clip | 16.00 | 1.00x |" in text and "2 rounds of 2 steps" in text
    assert [(p.name, r) for p, r in bad] == [("step_ratio__broken.json", "step-ratio file lacks 'objectives' or 'reference'")]
