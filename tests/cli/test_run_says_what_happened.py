"""`ftbench run` says what happened to the data: loader skips, training pairs left out and why,
items the catalog split moved, what the objective amounts to on this data, and the feature cache
used (in the output and in the result file: the folder actually used, encoded and cached counts)."""

from __future__ import annotations

import json
from pathlib import Path

from ftbench.cli.app import app
from typer.testing import CliRunner

runner = CliRunner()


def _catalog(folder: Path) -> None:
    """Text items with a given split; the train query names two test items; an unknown item in qrels."""
    (folder / "qrels").mkdir(parents=True)
    items = [
        {
            "id": f"i{k}",
            "title": f"item {k} colour {k % 3}",
            "description": f"made of tin {k}",
            "split": "test" if k >= 16 else "train",
        }
        for k in range(20)
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"id": f"q{k}", "text": f"colour {k % 3}"}) + "\n" for k in range(6))
    )
    (folder / "qrels" / "train.tsv").write_text(
        "".join(f"q{k}\ti{j}\t1\n" for k in range(4) for j in range(k, 16, 4)) + "q0\ti16\t1\nq1\ti17\t1\n"
    )
    (folder / "qrels" / "dev.tsv").write_text("q4\ti3\t1\n")
    (folder / "qrels" / "test.tsv").write_text("q5\ti18\t1\nq5\ti19\t1\nq5\tnowhere\t1\n")


def _run(folder: Path, cache: Path, out: Path):
    result = runner.invoke(
        app,
        [
            "run",
            "-o",
            "factorized",
            "--views",
            "2",
            "-d",
            "catalog",
            "--data-dir",
            str(folder),
            "--set",
            "dataset.text_backbone=hash",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    (path,) = out.glob("*.json")
    return text, json.loads(path.read_text())


def test_run_prints_and_records_what_happened(tmp_path):
    _catalog(tmp_path / "cat")
    text, result = _run(tmp_path / "cat", tmp_path / "cache", tmp_path / "runs")
    assert "skipped by the loader: qrels_unknown_item=1" in text
    assert (
        "training pairs: 16 used; not used: 2 of train queries name a val/test item (kept out of training so that "
        "the cross-view val/test items stay unseen)"
    ) in text
    assert "factorized reduces to clip on this data: at --views 2" in text
    counts = result["counts"]
    assert counts["training_pairs_dropped"] == {"query_not_train": 0, "item_not_train": 2}
    assert counts["training_pairs_used"] == 16 and counts["training_pairs_dropped_not_train"] == 2
    assert result["training"]["reduces_to"] == "clip"
    cache = result["provenance"]["feature_cache"]
    assert result["config"]["dataset_config"]["cache_dir"] == ""  # the location stays out of the identity
    assert cache["folder"] == str((tmp_path / "cache").resolve()) and cache["enabled"] is True
    assert cache["encoded"] > 0 and cache["from_cache"] == 0
    assert f"features: {cache['encoded']} encoded, 0 read from the cache ({cache['folder']})" in text
    text, again = _run(tmp_path / "cat", tmp_path / "cache", tmp_path / "runs2")
    assert again["provenance"]["feature_cache"]["encoded"] == 0
    assert again["provenance"]["feature_cache"]["from_cache"] > 0 and "features: 0 encoded" in text
