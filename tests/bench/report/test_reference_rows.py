"""`ftbench reference` writes frozen-primary and frozen-mean result files that group with the
trained runs of the same options, and the report shows them as rows marked untrained reference."""

import json

from ftbench.cli.app import app
from ftbench.report.build import build_report
from ftbench.report.load import REFERENCE_MARK, load_results_frame
from typer.testing import CliRunner

SETS = ["--set", "dataset.items=300", "--set", "dataset.interactions=400", "--set", "train.val_gallery_size=200"]


def test_reference_rows_in_the_trained_runs_group(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "run",
            "--objective",
            "clip",
            "--views",
            "4",
            "--steps",
            "5",
            "--batch-size",
            "32",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
            *SETS,
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["reference", "--views", "4", "--out", str(tmp_path), *SETS], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    files = sorted(tmp_path.glob("*frozen*.json"))
    assert [json.loads(f.read_text())["config"]["objective"] for f in files] == ["frozen-mean", "frozen-primary"]
    payload = json.loads(files[0].read_text())
    assert payload["config"]["reference"] and payload["training"]["selected_step"] == 0
    assert 0.0 <= payload["metrics"]["query->item"]["recall@10"] <= 1.0
    frame = load_results_frame(tmp_path)
    assert frame["group"].nunique() == 1  # same data and protocol: one comparison group
    assert set(frame["objective_label"]) == {"clip", f"frozen-primary {REFERENCE_MARK}", f"frozen-mean {REFERENCE_MARK}"}
    text = build_report(tmp_path).path.read_text()
    assert f"| frozen-mean {REFERENCE_MARK} |" in text and f"| frozen-primary {REFERENCE_MARK} |" in text


def test_reference_bad_option_names_it(tmp_path):
    res = CliRunner().invoke(app, ["reference", "--out", str(tmp_path), "--set", "dataset.itemz=3"])
    assert res.exit_code != 0 and "itemz" in res.output
