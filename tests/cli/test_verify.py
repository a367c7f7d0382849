"""`ftbench verify`: a seeded sample of a folder's result files runs again and every metric must
equal the recorded one to the last digit; a tampered metric fails naming it; JSON files that are
not run results are skipped with a message; a legacy metric name is compared under its current
name, and said so."""

import json
import shutil

import pytest
from ftbench.cli.app import app
from ftbench.run.verify import compare_metrics, sample_folder
from typer.testing import CliRunner

runner = CliRunner()

TINY = [
    "--steps",
    "10",
    "--batch-size",
    "32",
    "--set",
    "dataset.items=2000",
    "--set",
    "dataset.interactions=1000",
    "--set",
    "train.eval_every=5",
    "--set",
    "train.val_gallery_size=300",
]


def _invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """A folder with two tiny synthetic runs, a cost-like file and a design-like profile."""
    folder = tmp_path_factory.mktemp("results") / "tiny"
    for objective in ("clip", "factorized"):
        res = _invoke("run", "--objective", objective, "--views", "2", *TINY, "--device", "cpu", "--quiet", "--out", str(folder))
        assert res.exit_code == 0, res.output
    (folder / "cost__B256__cpu.json").write_text(json.dumps({"rows": [{"views": 2, "ms": 1.0}]}))
    (folder / "profiles").mkdir()
    (folder / "profiles" / "cell_00.json").write_text(json.dumps([0.1, 0.2]))
    return folder


def _copy_folder(src, dst, keep=None):
    shutil.copytree(src, dst)
    if keep is not None:
        for path in dst.glob("synthetic__*.json"):
            if keep not in path.name:
                path.unlink()
    return dst


def test_a_sample_reproduces_and_non_run_files_are_skipped(tiny_results, tmp_path):
    before = sorted(p.name for p in tiny_results.rglob("*"))
    record = tmp_path / "record.json"
    res = _invoke("verify", "--sample", "2", "--seed", "3", str(tiny_results), "--record", str(record))
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "2 run files, rerunning 2" in out
    assert "skipped 2 JSON files that are not run results: cost__B256__cpu.json, profiles/cell_00.json" in out
    assert "all 2 reruns reproduce every metric exactly" in out
    # the reruns went to a temporary folder, never into the folder checked
    assert sorted(p.name for p in tiny_results.rglob("*")) == before
    written = json.loads(record.read_text())
    assert written["passed"] and [f["status"] for f in written["files"]] == ["equal", "equal"]
    assert all(f["metrics_compared"] > 20 and f["max_abs_diff"] == 0.0 for f in written["files"])
    assert {s["file"].rsplit("/", 1)[-1] for s in written["folders"][0]["skipped"]} == {"cost__B256__cpu.json", "cell_00.json"}


def test_a_tampered_metric_fails_naming_it(tiny_results, tmp_path):
    folder = _copy_folder(tiny_results, tmp_path / "tampered", keep="clip")
    (original,) = folder.glob("synthetic__clip__*.json")
    payload = json.loads(original.read_text())
    payload["metrics"]["query->item"]["ndcg@10"] = payload["metrics"]["query->item"]["ndcg@10"] + 2**-40
    original.write_text(json.dumps(payload))
    res = _invoke("verify", "--sample", "1", str(folder))
    out = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert "differs: query->item/ndcg@10" in out and "1 of 1 reruns do not reproduce" in out


def test_the_draw_is_seeded_and_bounded_by_the_folder(tiny_results):
    first = sample_folder(tiny_results, 1, seed=0).chosen
    assert sample_folder(tiny_results, 1, seed=0).chosen == first
    assert {p.name for s in range(8) for p in sample_folder(tiny_results, 1, seed=s).chosen} == {
        p.name for p in tiny_results.glob("synthetic__*.json")
    }  # both files come up over a few seeds
    assert len(sample_folder(tiny_results, 5).chosen) == 2  # never more than the folder holds


def test_refuses_a_missing_folder_and_a_sample_below_one(tmp_path):
    res = _invoke("verify", str(tmp_path / "missing"))
    assert res.exit_code == 2 and "no such folder" in res.output
    res = _invoke("verify", "--sample", "0", str(tmp_path))
    assert res.exit_code == 2 and "the sample must be at least 1 file" in res.output
    res = _invoke("verify", "--sample-for", "paper-scale", str(tmp_path))
    assert res.exit_code == 2 and "expected NAME=N" in res.output


def test_a_legacy_metric_name_is_compared_under_its_current_name_and_said_so(tiny_results):
    (path,) = tiny_results.glob("synthetic__clip__*.json")
    current = json.loads(path.read_text())
    legacy = json.loads(path.read_text())
    legacy["schema_version"] = 1
    legacy["metrics"]["query->item"] = {("mrr" if k == "mrr@500" else k): v for k, v in legacy["metrics"]["query->item"].items()}
    legacy["counts"]["evaluation"]["query->item"]["mrr_cutoff"] = 500
    outcome = compare_metrics(legacy, current["metrics"])
    assert outcome.differences == [] and outcome.aliases == [("query->item", "mrr", "mrr@500")]
    # the value is compared too: a legacy value that differs is named with both names
    legacy["metrics"]["query->item"]["mrr"] += 1e-12
    outcome = compare_metrics(legacy, current["metrics"])
    assert len(outcome.differences) == 1 and outcome.differences[0].startswith("query->item/mrr@500 (recorded as mrr)")
    # a name on one side only is a difference, not a silent pass
    del current["metrics"]["query->item"]["hit@10"]
    assert any(d.startswith("query->item/hit@10") for d in compare_metrics(legacy, current["metrics"]).differences)
