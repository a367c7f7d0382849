"""Experiment tracking (`--tracker`): a tiny tracked run read back with MLflow's own client, the
names it uses, and the errors for a missing package, an unknown tracker and a URI with a password."""

import json
import sys

import pytest
from ftbench.cli.app import app
from ftbench.run.tracking import MlflowTracker, TrackingError, flatten_params, make_tracker, metric_key
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


def test_metric_key_writes_arrows_and_at_signs_as_words():
    assert metric_key("test", "query->item", "recall@10") == "test/query_to_item/recall_at_10"
    assert metric_key("val/title->image/mean recall@10") == "val/title_to_image/mean recall_at_10"
    assert metric_key("train/loss") == "train/loss"
    assert metric_key("a", "b(c)") == "a/b_c_"


def test_flatten_params_joins_sections_with_dots():
    config = {"objective": "clip", "views": 4, "train_config": {"lr": 0.001, "ks": (1, 10), "none": None}}
    assert flatten_params(config) == {
        "objective": "clip",
        "views": "4",
        "train_config.lr": "0.001",
        "train_config.ks": "[1, 10]",
        "train_config.none": "null",
    }


def test_tracked_run_is_read_back_from_the_local_store(tmp_path):
    pytest.importorskip("mlflow", reason="the optional extra `tracking` (mlflow-skinny) is not installed")
    from mlflow import MlflowClient

    res = runner.invoke(
        app,
        ["run", "--objective", "clip", "--views", "4", "--out", str(tmp_path), *TINY, "--tracker", "mlflow"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    result_file = next(tmp_path.glob("*.json"))
    payload = json.loads(result_file.read_text())
    store = tmp_path / "mlruns" / "mlflow.db"
    assert store.is_file(), "default store: OUT/mlruns/mlflow.db"

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("ftbench")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "clip V=4 seed=0"
    assert f"tracked: mlflow run {run.info.run_id}" in " ".join(payload["notes"])

    params = run.data.params
    assert params["config_hash"] == payload["config_hash"]
    assert params["objective"] == "clip" and params["views"] == "4"
    assert params["train_config.steps"] == "10" and params["train_config.batch_size"] == "32"
    assert params["dataset_config.items"] == "300"
    assert run.data.tags["ftbench.result_file"] == result_file.name

    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in loss) == list(range(1, 11))
    # the windowed curve of the result file (one point per step at 10 steps) is the same losses
    by_step = {m.step: m.value for m in loss}
    for point in payload["training"]["loss_curve"]:
        assert by_step[point["step"]] == pytest.approx(point["loss"], rel=1e-12)

    select = payload["training"]["select_metric"]  # query->item/recall@100
    val = client.get_metric_history(run.info.run_id, metric_key("val", select))
    assert [(m.step, m.value) for m in sorted(val, key=lambda m: m.step)] == [
        (h["step"], pytest.approx(h["val"])) for h in payload["training"]["history"]
    ]
    assert run.data.metrics["val/selected"] == pytest.approx(payload["training"]["selected_val_score"])

    finals = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
    expected = {metric_key("test", task, m): v for task, values in payload["metrics"].items() for m, v in values.items()}
    assert set(finals) == set(expected) and "test/query_to_item/recall_at_10" in finals
    for key, value in expected.items():
        assert finals[key] == pytest.approx(value, rel=1e-12), key

    local = client.download_artifacts(run.info.run_id, f"result/{result_file.name}", str(tmp_path / "back"))
    assert json.loads(open(local).read()) == payload


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    res = runner.invoke(app, ["run", "--objective", "clip", "--out", str(tmp_path), *TINY, "--tracker", "mlflow"])
    assert res.exit_code == 2
    assert "--tracker mlflow needs the optional extra: pip install 'ftbench[tracking]'" in res.output
    assert not list(tmp_path.glob("*.json"))


def test_unknown_tracker_and_uri_without_tracker_are_errors(tmp_path):
    res = runner.invoke(app, ["run", "--out", str(tmp_path), *TINY, "--tracker", "mlfow"])
    assert res.exit_code == 2 and "unknown tracker 'mlfow'" in res.output and "mlflow" in res.output
    with pytest.raises(TrackingError, match="without a tracker"):
        make_tracker("none", "sqlite:///x.db", tmp_path)


def test_password_in_the_uri_is_never_shown(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the optional extra `tracking` (mlflow-skinny) is not installed")
    import mlflow

    uri = "https://alice:s3cret@tracking.invalid/"

    class Unreachable:
        def __init__(self, tracking_uri):
            self.uri = tracking_uri

        def get_experiment_by_name(self, name):
            raise ConnectionError(f"cannot reach {self.uri}\nretries exhausted")

    monkeypatch.setattr(mlflow, "MlflowClient", Unreachable)
    tracker = MlflowTracker(uri, tmp_path)
    assert "s3cret" not in tracker.describe() and "alice:***@" in tracker.describe()
    with pytest.raises(TrackingError) as caught:
        tracker.open()
    assert "s3cret" not in str(caught.value) and "alice:***@tracking.invalid" in str(caught.value)
    assert "cannot reach" in str(caught.value) and "\n" not in str(caught.value)


def test_sweep_hands_its_tracker_to_every_cell_that_runs(tmp_path):
    from ftbench.run.sweep import SweepSpec, prepare_grid, run_sweep

    grid = prepare_grid(SweepSpec(objectives=["clip", "factorized"], views=[2], seeds=[0], sets=["dataset.items=300"]))
    tracker = make_tracker("none", None, tmp_path)
    seen = []

    def execute(prepared, out_dir, progress=None, dataset_cache=None, tracker=None):
        seen.append((prepared.config["objective"], tracker))
        return None, tmp_path / f"{prepared.config['objective']}.json"

    outcome = run_sweep(grid, tmp_path, execute_fn=execute, tracker=tracker)
    assert sorted(seen, key=lambda s: s[0]) == [("clip", tracker), ("factorized", tracker)]
    assert len(outcome.ran) == 2
