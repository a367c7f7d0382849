"""`make gpu-check`: the plan parses, and without CUDA the script refuses cleanly."""

import torch
from ftbench.cost import gpu_check


def test_gpu_check_plan_and_refusal(tmp_path, monkeypatch, capsys):
    plan = gpu_check.steps(tmp_path, "python")
    assert [name for name, _, _ in plan] == [
        "cuda tests",
        "cost vs V on cuda",
        "step ratio on cuda",
        "search bench on cuda",
        "paper-scale run on cuda",
    ]
    cost_cmd = plan[1][1]
    assert [cost_cmd[i + 1] for i, a in enumerate(cost_cmd) if a == "--views"] == ["2", "4", "8", "16", "32"]
    assert all("cuda" in cmd for _, cmd, _ in plan[1:])
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists()
