"""A sweep split over machines: `--shard i/n` on n machines, each writing its own folder, then the
folders copied into one. Every run is done exactly once and the merged folder is complete: a sweep
of the whole grid over it finds every result and runs nothing."""

import shutil

from ftbench.run.results import RunResult, result_filename, write_result
from ftbench.run.sweep import prepare_grid, run_sweep, shard_grid, spec_from_preset


def _grid():
    spec = spec_from_preset(
        None,
        ["clip", "factorized"],
        [1, 2, 4],
        [0, 1, 2],
        None,
        ["dataset.items=300", "dataset.interactions=400"],
        5,
        32,
        "cpu",
        registered_objectives=lambda: ["clip", "factorized"],
    )
    return prepare_grid(spec)


def _recording_execute(calls):
    """Stands in for experiment.execute: records the run, writes a valid result file named as
    execute names it."""

    def execute(prepared, out_dir, progress=None, dataset_cache=None):
        c = prepared.config
        calls.append((c["objective"], c["views"], c["seed"]))
        result = RunResult(
            run_id="r",
            config=c,
            config_hash=prepared.config_hash,
            versions={},
            device={},
            counts={},
            metrics={"query->item": {"recall@10": 0.5}},
            not_applicable={},
            timing={},
            training={},
        )
        path = out_dir / result_filename(c, prepared.config_hash)
        write_result(result, path)
        return result, path

    return execute


def test_shards_on_separate_machines_merge_by_copying(tmp_path):
    n = 4
    calls = []
    for i in range(1, n + 1):  # machine i: its own grid object (fresh prepare) and its own folder
        machine = tmp_path / f"machine{i}"
        outcome = run_sweep(shard_grid(_grid(), (i, n)), machine, execute_fn=_recording_execute(calls))
        assert outcome.ok and not outcome.skipped
    assert len(calls) == len(set(calls)) == 18  # 2 objectives x 3 views x 3 seeds, each run once

    merged = tmp_path / "merged"
    merged.mkdir()
    for i in range(1, n + 1):
        for path in (tmp_path / f"machine{i}").glob("*.json"):
            assert not (merged / path.name).exists()  # no two machines wrote the same file
            shutil.copy(path, merged / path.name)
    assert len(list(merged.glob("*.json"))) == 18

    calls.clear()
    again = run_sweep(shard_grid(_grid(), None), merged, execute_fn=_recording_execute(calls))
    assert not calls and len(again.skipped) == 18  # the merged folder holds the whole grid
