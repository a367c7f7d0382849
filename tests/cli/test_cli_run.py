"""End-to-end CLI runs on a tiny data set, and the errors bad input gets."""

import json
import os

import pytest
from ftbench.cli.app import app
from typer.testing import CliRunner

TINY = [
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=400",
    "--set",
    "train.eval_every=5",
    "--set",
    "train.val_gallery_size=200",
    "--steps",
    "10",
    "--batch-size",
    "32",
    "--quiet",
    "--device",
    "cpu",
]

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("objective", ["clip", "factorized"])
def test_run_writes_a_complete_result(tmp_path, objective):
    res = _run("run", "--objective", objective, "--views", "4", "--out", str(tmp_path), *TINY)
    assert res.exit_code == 0, res.output
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    payload = json.loads(files[0].read_text())
    assert payload["schema_version"] == 2
    assert payload["config"]["objective"] == objective and payload["config"]["views"] == 4
    for task in ("query->item", "title->image", "image->title", "aux->item"):
        assert task in payload["metrics"], task
    assert 0.0 <= payload["metrics"]["query->item"]["recall@100"] <= 1.0
    assert "recall@500" not in payload["metrics"]["title->image"]  # 500 >= 30 test items
    assert any(k.startswith("title->image/recall@500") for k in payload["not_applicable"])
    assert payload["counts"]["items"] == 300 and payload["counts"]["realised_views_per_item"] <= 4
    assert payload["timing"]["step_ms_median"] > 0 and payload["timing"]["steps"] == 10
    assert payload["training"]["selected_step"] in (5, 10)
    assert "recall@" in res.output  # the summary table
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("objective", ["clip", "full_ot", "factorized", "oat", "mover"])
def test_one_view_runs_and_says_which_tasks_do_not_apply(tmp_path, objective):
    res = _run("run", "--objective", objective, "--views", "1", "--out", str(tmp_path), *TINY)
    assert res.exit_code == 0, res.output
    payload = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert "query->item" in payload["metrics"]
    # one view per item: no title to pair with the image, nothing left once the view is held out
    for task in ("title->image", "image->title", "image->item", "aux->item"):
        assert task not in payload["metrics"] and "--views 1" in payload["not_applicable"][task]


def test_save_embeddings(tmp_path):
    import numpy as np

    res = _run("run", "--objective", "factorized", "--out", str(tmp_path), "--save-embeddings", *TINY)
    assert res.exit_code == 0, res.output
    folder = next(tmp_path.glob("*.embeddings"))
    items = np.load(folder / "item_embeddings.npy", allow_pickle=False)
    ids = np.load(folder / "item_ids.npy", allow_pickle=False)
    assert items.shape == (300, 256) and len(ids) == 300
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    queries = np.load(folder / "query_embeddings.npy", allow_pickle=False)
    assert queries.shape[0] == len(np.load(folder / "query_ids.npy", allow_pickle=False))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objective", "factorised"], "did you mean 'factorized'"),
        (["--objective", "CLIP"], "unknown objective 'CLIP'. Did you mean 'clip'?"),
        (["--dataset", "Synthetic"], "unknown data set 'Synthetic'. Did you mean 'synthetic'?"),
        (["--dataset", "synthetc"], "did you mean 'synthetic'"),
        (["--views", "0"], "--views must be at least 1"),
        (["--set", "primary_wieght=0.7"], "did you mean 'primary_weight'"),
        (["--set", "primary_weight=abc"], "expected a number"),
        (["--set", "nonsense"], "expected key=value"),
        (["--device", "tpu"], "--device must be one of"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, args, message):
    res = runner.invoke(app, ["run", "--out", str(tmp_path), *args])
    assert res.exit_code == 2
    assert message.lower() in res.output.lower()
    assert "Traceback" not in res.output
    assert not list(tmp_path.glob("*.json"))


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["run", "--out", str(blocker / "sub")])
    assert res.exit_code == 2 and "not a writable folder" in res.output


def test_a_failed_run_leaves_no_out_folder(tmp_path):
    data = tmp_path / "catalog"
    data.mkdir()  # a catalog folder without its items.jsonl
    out = tmp_path / "new" / "out"
    res = runner.invoke(app, ["run", "--out", str(out), "--dataset", "catalog", "--data-dir", str(data), *TINY[-5:]])
    assert res.exit_code == 2 and "has no items.jsonl, items.parquet or items.csv" in " ".join(res.output.split()), res.output
    assert [p.name for p in tmp_path.iterdir()] == ["catalog"]  # neither out nor the parent it would have needed


def test_the_writability_check_leaves_nothing_behind(tmp_path):
    from ftbench.cli.common import UsageError, check_writable

    check_writable(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_writable(tmp_path / "kept")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"--out '.*file/sub/dir' is not a writable folder \(Not a directory\)"):
        check_writable(tmp_path / "file" / "sub" / "dir")


@pytest.mark.parametrize(
    "command, default", [("run", "runs"), ("sweep", "runs"), ("reference", "runs"), ("tune", "runs/tune"), ("cost", "runs/cost")]
)
def test_commands_write_under_the_git_ignored_runs_by_default(command, default):
    """The committed results/ changes only when a command is told to write there."""
    from pathlib import Path

    import typer.main

    click_command = typer.main.get_command(app).commands[command]
    (out,) = [p for p in click_command.params if p.name == "out"]
    assert Path(out.default) == Path(default)
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()
    assert "/runs/" in ignored or "runs/" in ignored


def test_listing_commands_and_version():
    res = _run("objectives")
    assert res.exit_code == 0 and "clip" in res.output and "factorized" in res.output
    res = _run("datasets")
    assert res.exit_code == 0 and "synthetic" in res.output
    res = _run("objectives", "--verbose", "factorized")
    assert res.exit_code == 0 and "aux_samples" in res.output and "primary_weight" in res.output
    res = _run("--version")
    assert res.exit_code == 0 and "ftbench" in res.output
    for cmd in ("run", "objectives", "datasets"):
        assert _run(cmd, "--help").exit_code == 0
