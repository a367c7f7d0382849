"""Sweeps: grid and presets, validation before any run, skip-existing / overwrite, failures that do
not stop the sweep, data-set reuse, and shards that together run every cell exactly once."""

import json

import pytest
from ftbench.run import sweep as sweep_module
from ftbench.run.results import RunResult, load_result, result_filename, write_result
from ftbench.run.sweep import (
    PRESETS,
    GridError,
    parse_shard,
    prepare_grid,
    run_sweep,
    shard_grid,
    spec_from_preset,
)
from typer.testing import CliRunner

TINY_SETS = ["dataset.items=300", "dataset.interactions=400", "train.val_gallery_size=200"]
REGISTERED = lambda: ["clip", "factorized"]  # noqa: E731 - other objectives may not be registered yet


def _spec(objectives=("clip", "factorized"), views=(2, 4), seeds=(0, 1, 2), sets=()):
    return spec_from_preset(
        None,
        list(objectives),
        list(views),
        list(seeds),
        None,
        TINY_SETS + list(sets),
        5,
        32,
        "cpu",
        registered_objectives=REGISTERED,
    )


def _fake_execute(calls, fail_on=None):
    """Stands in for experiment.execute: writes a minimal valid result file named as execute names it."""

    def execute(prepared, out_dir, progress=None, dataset_cache=None):
        c = prepared.config
        calls.append((c["objective"], c["views"], c["seed"], id(dataset_cache)))
        if fail_on and (c["objective"], c["views"], c["seed"]) == fail_on:
            raise RuntimeError("loss is NaN at step 3")
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


def test_presets_are_explicit_and_complete():
    quick = spec_from_preset("quick", registered_objectives=REGISTERED)
    assert quick.objectives == ["clip", "factorized"] and quick.views == [1, 2, 4, 8] and quick.seeds == [0, 1, 2]
    assert quick.dataset == "synthetic"
    paper = spec_from_preset("paper-scale", registered_objectives=REGISTERED)
    assert paper.objectives == ["clip", "factorized"] and paper.views == [8] and paper.seeds == [0, 1, 2]
    assert "dataset.items=1000000" in paper.sets and "dataset.interactions=292520" in paper.sets
    assert set(PRESETS) == {"quick", "paper-scale", "regime-map"}
    # explicit options replace the preset's lists; --set is added after the preset's
    mixed = spec_from_preset("paper-scale", ["clip"], None, [5], None, ["train.lr=0.001"], registered_objectives=REGISTERED)
    assert mixed.objectives == ["clip"] and mixed.seeds == [5] and mixed.views == [8]
    assert mixed.sets[-1] == "train.lr=0.001" and "dataset.items=1000000" in mixed.sets


def test_bad_grids_fail_before_any_run():
    with pytest.raises(ValueError, match="no --objective, --views, --seed given"):
        spec_from_preset(None, registered_objectives=REGISTERED)
    with pytest.raises(ValueError, match="(?i)did you mean 'quick'"):
        spec_from_preset("quik", registered_objectives=REGISTERED)
    with pytest.raises(ValueError, match="--views must be at least 1"):
        spec_from_preset(None, ["clip"], [0], [0], registered_objectives=REGISTERED)
    with pytest.raises(GridError, match="(?i)did you mean 'primary_weight'"):
        prepare_grid(_spec(sets=["primary_wieght=0.7"]))
    with pytest.raises(GridError, match=r"factorised views=2 seed=0 and 5 more cell\(s\): unknown objective 'factorised'"):
        prepare_grid(_spec(objectives=("clip", "factorised")))


@pytest.mark.parametrize("text, expected", [(None, None), ("1/1", (1, 1)), ("2/3", (2, 3))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3"])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_shards_partition_the_grid_whatever_the_option_order():
    grid = prepare_grid(_spec())
    hashes = {p.config_hash for p in grid}
    assert len(grid) == len(hashes) == 12
    reordered = prepare_grid(_spec(objectives=("factorized", "clip"), views=(4, 2), seeds=(2, 0, 1)))
    for n in (1, 2, 3, 5, 12, 13):
        shards = [[p.config_hash for p in shard_grid(grid, (i, n))] for i in range(1, n + 1)]
        flat = [h for shard in shards for h in shard]
        assert sorted(flat) == sorted(hashes)  # every cell exactly once
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
        again = [[p.config_hash for p in shard_grid(reordered, (i, n))] for i in range(1, n + 1)]
        assert again == shards  # another machine, other option order: same shards


def test_skip_existing_overwrite_and_damaged_files(tmp_path):
    grid = prepare_grid(_spec(views=(2,), seeds=(0, 1)))
    calls = []
    first = run_sweep(grid, tmp_path, execute_fn=_fake_execute(calls))
    assert len(first.ran) == 4 and not first.skipped and first.ok
    assert len(list(tmp_path.glob("*.json"))) == 4

    calls.clear()
    second = run_sweep(grid, tmp_path, execute_fn=_fake_execute(calls))
    assert not calls and len(second.skipped) == 4

    damaged = first.ran[0]
    damaged.write_text('{"run_id": ')  # a truncated file is not a result: run again
    calls.clear()
    third = run_sweep(grid, tmp_path, execute_fn=_fake_execute(calls))
    assert len(calls) == 1 and third.ran == [damaged] and load_result(damaged).config_hash

    calls.clear()
    fourth = run_sweep(grid, tmp_path, overwrite=True, execute_fn=_fake_execute(calls))
    assert len(calls) == 4 and len(fourth.ran) == 4


def test_failing_run_is_reported_and_the_sweep_goes_on(tmp_path):
    grid = prepare_grid(_spec(views=(2,), seeds=(0, 1)))
    calls, events = [], []
    outcome = run_sweep(
        grid,
        tmp_path,
        execute_fn=_fake_execute(calls, fail_on=("clip", 2, 0)),
        on_done=lambda i, n, p, status, detail: events.append(status),
    )
    assert not outcome.ok and outcome.failed == [("clip V=2 seed=0", "RuntimeError: loss is NaN at step 3")]
    assert len(outcome.ran) == 3 and len(calls) == 4 and events.count("failed") == 1
    # one data-set cache for the whole sweep (one data-set config)
    assert len({c[3] for c in calls}) == 1


def test_sharded_sweeps_run_each_cell_once(tmp_path):
    grid = prepare_grid(_spec())
    calls = []
    for i in (1, 2, 3):
        run_sweep(shard_grid(grid, (i, 3)), tmp_path, execute_fn=_fake_execute(calls))
    cells = [c[:3] for c in calls]
    assert len(cells) == len(set(cells)) == 12
    assert len(list(tmp_path.glob("*.json"))) == 12


runner = CliRunner()
TINY_CLI = [
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=400",
    "--set",
    "train.val_gallery_size=200",
    "--steps",
    "5",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
]


def test_cli_sweep_end_to_end(tmp_path):
    from ftbench.cli.app import app

    args = ["sweep", "-o", "clip", "-o", "factorized", "--views", "2", "--seed", "0", "--out", str(tmp_path), *TINY_CLI]
    res = runner.invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    files = sorted(tmp_path.glob("*.json"))
    assert [json.loads(f.read_text())["config"]["objective"] for f in files] == ["clip", "factorized"]
    res = runner.invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0 and "0 ran, 2 skipped" in " ".join(res.output.split())


def test_cli_sweep_errors_and_failures(tmp_path, monkeypatch):
    from ftbench.cli.app import app
    from ftbench.run import experiment

    res = runner.invoke(app, ["sweep", "-o", "clip", "--views", "2", "--seed", "0", "--set", "nonsense", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "expected key=value" in res.output and not list(tmp_path.glob("*.json"))
    res = runner.invoke(app, ["sweep", "--preset", "quick", "--shard", "3/2", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--shard" in res.output

    calls = []
    monkeypatch.setattr(experiment, "execute", _fake_execute(calls, fail_on=("clip", 2, 1)))
    res = runner.invoke(
        app,
        ["sweep", "-o", "clip", "--views", "2", "--seed", "0", "--seed", "1", "--out", str(tmp_path), *TINY_CLI],
        catch_exceptions=False,
    )
    output = " ".join(res.output.split())
    assert res.exit_code == 1 and "1 ran, 0 skipped (result exists), 1 failed" in output
    assert "failed: clip V=2 seed=1: RuntimeError: loss is NaN" in output
    assert sweep_module.PRESETS["quick"]["views"] == [1, 2, 4, 8]
