"""The Python API (`ftbench.api`): `import ftbench` stays light, `ftbench.run` is both a callable
and the run subpackage in a fresh interpreter, and the calls return what the CLI writes."""

import json
import subprocess
import sys
from pathlib import Path

import ftbench
import pandas as pd
import pytest
from ftbench.api import override_strings
from ftbench.report.export import export_frame

ROOT = Path(__file__).resolve().parents[2]
TINY = {"dataset.items": 300, "dataset.interactions": 400, "train.eval_every": 5, "train.val_gallery_size": 200}


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_is_light_and_every_import_form_of_the_subpackages_works():
    out = _fresh(
        "import sys, ftbench\n"
        "print('heavy', sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))\n"
        "r = ftbench.run(objective='clip', views=2, steps=2, batch_size=16, device='cpu',"
        " overrides={'dataset.items': 120, 'dataset.interactions': 100, 'train.select_metric': 'last'})\n"
        "print('metrics', len(r.metrics), r.config['objective'])\n"
        "from ftbench.run.experiment import prepare\n"
        "import ftbench.run.experiment\n"
        "import ftbench.run.sweep as sw\n"
        "from ftbench.run import results\n"
        "print('same', ftbench.run.experiment.prepare is prepare, callable(ftbench.run), sw.__name__, results.__name__)\n"
        "from ftbench.objectives import OBJECTIVES\n"
        "print('plugins', sorted(ftbench.objectives()) == sorted(OBJECTIVES), 'synthetic' in ftbench.datasets())\n"
    )
    assert "heavy []" in out
    assert "metrics" in out and " clip" in out
    assert "same True True ftbench.run.sweep ftbench.run.results" in out
    assert "plugins True True" in out


def test_run_returns_the_metrics_config_and_result_file(tmp_path):
    out = ftbench.run(
        objective="clip", views=2, steps=10, batch_size=32, device="cpu", overrides={**TINY, "primary_weight": 0.7}, out=tmp_path
    )
    payload = json.loads(out.path.read_text())
    assert out.path.parent == tmp_path and payload["config_hash"] == out.config_hash
    assert out.config["objective_config"]["primary_weight"] == 0.7 and out.config["train_config"]["steps"] == 10
    assert list(out.metrics.columns) == ["task", "metric", "value"]
    expected = {(t, m): v for t, values in payload["metrics"].items() for m, v in values.items()}
    assert {(r.task, r.metric): r.value for r in out.metrics.itertuples()} == expected
    assert out.model_dir is None


def test_bad_arguments_name_the_field():
    with pytest.raises(KeyError, match="primary_wieght"):
        ftbench.run(objective="clip", overrides={"primary_wieght": 0.7})
    with pytest.raises(KeyError, match="Did you mean 'clip'"):
        ftbench.run(objective="clpi")
    with pytest.raises(ValueError, match="save_embeddings=True needs out="):
        ftbench.run(objective="clip", save_embeddings=True)
    with pytest.raises(ValueError, match="not a config field name"):
        override_strings({"a=b": 1})


def test_override_strings_round_trip_python_values():
    from ftbench.run.experiment import parse_sets

    values = {
        "train.lr": 1e-3,
        "eval.ks": (1, 10),
        "dataset.modalities": "image+text",
        "learn_gates": False,
        "dataset.data_dir": Path("/tmp/x"),
    }
    parsed = {(f"{s}." if s else "") + k: v for s, k, v in parse_sets(override_strings(values))}
    assert parsed == {**values, "dataset.data_dir": "/tmp/x"}


def test_load_results_is_the_export_table(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fixture_results_for_api", ROOT / "tests/fixtures/results/generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "results")
    with pytest.warns(UserWarning, match="skipped unreadable result file"):
        frame = ftbench.load_results(tmp_path / "results")
    pd.testing.assert_frame_equal(frame, export_frame(tmp_path / "results")[0])
    assert frame["file"].nunique() == 23
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ftbench.load_results(tmp_path / "nothing")


def test_sweep_runs_the_grid_once(tmp_path):
    kwargs = dict(
        objectives=["clip"],
        views=[1, 2],
        seeds=[0],
        steps=4,
        batch_size=32,
        device="cpu",
        overrides={**TINY, "train.select_metric": "last"},
        out=tmp_path,
    )
    first = ftbench.sweep(**kwargs)
    assert len(first.ran) == 2 and not first.skipped and not first.failed
    assert set(first.results["views"]) == {1, 2} and set(first.results["file"]) == {str(p) for p in first.ran}
    again = ftbench.sweep(**kwargs)
    assert not again.ran and sorted(again.skipped) == sorted(first.ran)
    pd.testing.assert_frame_equal(
        again.results.sort_values(["file", "task", "metric"]).reset_index(drop=True),
        first.results.sort_values(["file", "task", "metric"]).reset_index(drop=True),
    )
