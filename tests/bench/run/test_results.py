"""Result files: atomic writes, schema checks with messages naming the file."""

import json
import os

import pytest
from ftbench.run.results import RunResult, atomic_write_text, load_result, write_result


def _result():
    return RunResult(
        run_id="x",
        config={"objective": "clip", "dataset": "synthetic", "views": 8, "seed": 0},
        config_hash="abc",
        versions={},
        device={"device": "cpu"},
        counts={},
        metrics={"query->item": {"recall@10": 0.5}},
        not_applicable={},
        timing={},
        training={},
    )


def test_roundtrip(tmp_path):
    path = write_result(_result(), tmp_path / "r.json")
    assert load_result(path) == _result()


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    atomic_write_text(path, "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_bad_files_name_the_file_and_problem(tmp_path):
    bad = tmp_path / "truncated.json"
    bad.write_text('{"run_id": "x", "config": {')
    with pytest.raises(ValueError, match="truncated.json.*JSON error"):
        load_result(bad)
    other = tmp_path / "v99.json"
    payload = json.loads(_result().to_json())
    payload["schema_version"] = 99
    other.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="v99.json.*schema_version 99"):
        load_result(other)
    nan = tmp_path / "nan.json"
    with pytest.raises(ValueError):
        r = _result()
        r.metrics["query->item"]["recall@10"] = float("nan")
        write_result(r, nan)  # NaN is refused, never written as if valid
    assert not nan.exists()
