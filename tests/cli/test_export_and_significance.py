"""End to end: two objectives with --save-run on the same seed -> the report's per-query tests,
and `ftbench export` -> one row per run x task x metric with the config columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from ftbench.cli.app import app
from typer.testing import CliRunner

TINY = [
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=500",
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


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    for objective in ("clip", "factorized"):
        res = runner.invoke(
            app, ["run", "--objective", objective, "--views", "4", "--out", str(out), "--save-run", *TINY], catch_exceptions=False
        )
        assert res.exit_code == 0, res.output
    return out


def test_report_shows_the_per_query_tests(results):
    res = runner.invoke(app, ["report", str(results)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = (results / "report" / "REPORT.md").read_text()
    assert "## Per-query significance against clip" in text
    row = next(line for line in text.splitlines() if line.startswith("| factorized") and "| recall@10 |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    clip_file = next(f for f in results.glob("*.json") if "__clip__" in f.name)
    assert int(cells[4]) == json.loads(clip_file.read_text())["metrics"]["query->item"]["queries"]  # every test query
    assert 0 < float(cells[6]) <= 1 and 0 < float(cells[7]) <= 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_one_row_per_run_task_metric(results, tmp_path, fmt):
    target = tmp_path / f"all.{fmt}"
    res = runner.invoke(app, ["export", str(results), "--format", fmt, "--out", str(target)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(target) if fmt == "csv" else pd.read_parquet(target)
    files = sorted(results.glob("*.json"))
    expected = sum(len(v) for f in files for v in json.loads(f.read_text())["metrics"].values())
    assert len(frame) == expected and frame["run_id"].nunique() == 2
    assert {"objective", "seed", "views", "task", "metric", "value", "train_config.lr", "dataset_config.items"} <= set(
        frame.columns
    )
    one = frame[(frame["objective"] == "clip") & (frame["task"] == "query->item") & (frame["metric"] == "mrr@500")]
    clip_file = next(f for f in files if "__clip__" in f.name)
    assert one["value"].item() == pytest.approx(json.loads(clip_file.read_text())["metrics"]["query->item"]["mrr@500"])


def test_export_refuses_an_unknown_format(results):
    res = runner.invoke(app, ["export", str(results), "--format", "xlsx"])
    assert res.exit_code != 0 and "--format must be one of csv, parquet" in res.output


@pytest.mark.parametrize("where", ["file-in-the-way", "proc"])
def test_an_unwritable_export_target_is_one_line_naming_the_option(tmp_path, where):
    """Was a bare `[Errno 2] No such file or directory: '/proc/x.csv'`."""
    import shutil
    import sys
    from pathlib import Path

    if where == "proc" and not (sys.platform.startswith("linux") and Path("/proc/self").is_dir()):
        pytest.skip("/proc (where no file can be created) is Linux's")
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "results"
    shutil.copy(next(fixtures.glob("synthetic__clip__*.json")), tmp_path)
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "x.csv" if where == "file-in-the-way" else Path("/proc/x.csv")
    res = runner.invoke(app, ["export", str(tmp_path), "--out", str(target)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"error: --out '{target}': cannot write the export (" in text
    assert "give --out a file in a writable folder" in text and "[Errno" not in text and "Traceback" not in text
