"""The tower-start summary: paired residual - mlp differences by seed, references as their own
rows, separate groups for runs that differ in more than objective, seed and tower.init, the
checkpoint steps, and clear errors for a missing folder or a duplicated run."""

from pathlib import Path

import pytest
from ftbench.report.intervals import t_interval
from ftbench.report.tower_init import load_setting, main, summary
from ftbench.run.results import RunResult, write_result


def _write(
    folder: Path,
    objective: str,
    seed: int,
    init: str | None,
    r1: float,
    steps: int = 100,
    selected: int | None = None,
    reference: bool = False,
) -> None:
    tower = {"embedding_dim": 256, "hidden_dim": 512, "dropout": 0.0}
    if init is not None:
        tower["init"] = init
    config = {
        "objective": objective,
        "dataset": "grocery-store",
        "views": 8,
        "seed": seed,
        "dataset_config": {"train_photo_queries": False},
        "train_config": {"steps": steps, "batch_size": 256, "lr": 0.002, "select_metric": "auto"},
        "tower_config": tower,
        "eval_config": {"ks": [1, 10]},
    }
    training = {"reference": "untrained"} if reference else {"selected_step": selected or steps}
    result = RunResult(
        run_id="x",
        config=config,
        config_hash="h",
        versions={},
        device={},
        counts={},
        metrics={"photo->product": {"recall@1": r1, "mrr@500": r1}},
        not_applicable={},
        timing={},
        training=training,
        provenance={"commit": ("a" if init is None else "b") * 40},
    )
    write_result(result, folder / f"{objective}-{init}-{seed}-{steps}.json")


def test_paired_differences_references_groups_and_steps(tmp_path):
    folder = tmp_path / "grocery-mini"
    folder.mkdir()
    mlp, residual = [0.40, 0.50, 0.45], [0.52, 0.55, 0.50]
    for seed in range(3):
        _write(folder, "clip", seed, None, mlp[seed])  # recorded before tower.init existed: mlp
        _write(folder, "clip", seed, "residual", residual[seed], selected=50 if seed == 1 else None)
    _write(folder, "clip", 0, "mlp", 0.7, steps=200)  # a longer budget: a group of its own
    _write(folder, "frozen-mean", 0, None, 0.87, reference=True)
    groups, references = load_setting(folder)
    assert len(groups) == 2 and len(references) == 1
    text = summary(tmp_path)
    diff = t_interval([r - m for r, m in zip(residual, mlp)])
    row = next(line for line in text.splitlines() if line.startswith("| `clip` | photo->product recall@1") and "0,1,2" in line)
    assert f"+{diff.mean:.3f} ± {diff.half_width:.3f}" in row
    assert f"{t_interval(mlp).mean:.3f} ± {t_interval(mlp).half_width:.3f}" in row
    assert "| `frozen-mean` (untrained) | photo->product recall@1 | 0.870 |" in text
    assert "- `clip`: [100, 100, 100] / [100, 50, 100]\n" in text  # not all at the last step
    assert "differs: train.steps=200" in text and "- `clip`: [200] / []" in text
    assert "Source commits: mlp aaaaaaa; residual bbbbbbb" in text  # files reused from another commit show


def test_missing_folder_and_duplicate_runs_are_clear_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err
    folder = tmp_path / "s"
    folder.mkdir()
    _write(folder, "clip", 0, None, 0.4)
    _write(folder, "clip", 0, "mlp", 0.5)  # the same cell: tower.init=mlp is the default
    with pytest.raises(ValueError, match=r"are the same run \(clip, tower.init=mlp, seed 0\)"):
        load_setting(folder)
