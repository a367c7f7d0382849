"""A result's identity holds its data's content, not its folder: a changed qrels file is another
identity (another file, nothing overwritten), a sweep runs such a cell again and says so, the same
data under two paths is one identity and one report group, and results written before fingerprints
still load in groups of their own. Synthetic runs keep the hashes (and file names) they had."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from ftbench.cli.app import app
from ftbench.cli.sweep import run_sweep_with_progress
from ftbench.config import config_hash
from ftbench.report.load import data_identity_text, group_key, load_results_frame, results_frame
from ftbench.run.experiment import RunSpec, prepare
from ftbench.run.identity import run_identity
from ftbench.run.results import RunResult, load_result, result_filename, write_result
from ftbench.run.sweep import prepare_grid, run_sweep, spec_from_preset
from rich.console import Console
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[3]
CHEAP_DATA = ["dataset.text_backbone=hash", "dataset.use_cache=False"]
WORDS = ["red", "blue", "oak", "steel", "wool", "glass", "round", "tall", "small", "soft"]


def write_catalog(folder: Path, test_queries: int = 6) -> None:
    """30 text items, 12 + `test_queries` text queries, one relevant item each (BEIR qrels)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    items = [
        {
            "id": f"i{k}",
            "title": f"{WORDS[k % 10]} {WORDS[(k * 3) % 10]} thing {k}",
            "description": f"a {WORDS[(k * 7) % 10]} item number {k}",
        }
        for k in range(30)
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    queries = [{"id": f"q{k}", "text": f"{WORDS[k % 10]} {WORDS[(k * 3) % 10]}"} for k in range(18)]
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    for split, ks in (("train", range(0, 8)), ("dev", range(8, 12)), ("test", range(12, 12 + test_queries))):
        (folder / "qrels" / f"{split}.tsv").write_text("".join(f"q{k}\ti{k}\t1\n" for k in ks), encoding="utf-8")


def _prepare(folder: Path, objective: str = "clip", **kw):
    return prepare(RunSpec(objective, "catalog", views=2, sets=[f"dataset.data_dir={folder}", *CHEAP_DATA], **kw))


def test_synthetic_identity_is_its_config_hash_as_before():
    prepared = prepare(RunSpec("clip", "synthetic", sets=["dataset.items=300", "dataset.interactions=400"]))
    assert prepared.data == {} and prepared.config_hash == config_hash(prepared.config)
    assert run_identity(prepared.config, {}) == config_hash(prepared.config)


def test_the_same_data_under_two_paths_is_one_identity_and_changed_qrels_another(tmp_path):
    write_catalog(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "copy" / "b")
    a, b = _prepare(tmp_path / "a"), _prepare(tmp_path / "copy" / "b")
    assert a.config["dataset_config"]["data_dir"] != b.config["dataset_config"]["data_dir"]  # recorded, not hashed
    assert a.config_hash == b.config_hash and a.data["fingerprint"] == b.data["fingerprint"]
    assert a.data["folder"] != b.data["folder"] and a.data["files"] == 5
    write_catalog(tmp_path / "copy" / "b", test_queries=2)
    changed = _prepare(tmp_path / "copy" / "b")
    assert changed.config_hash != a.config_hash
    assert result_filename(changed.config, changed.config_hash) != result_filename(a.config, a.config_hash)


def test_run_on_changed_qrels_writes_another_file_keeps_the_first_and_says_so(tmp_path):
    data, out = tmp_path / "cat", tmp_path / "out"
    write_catalog(data)
    args = [
        "run",
        "--dataset",
        "catalog",
        "--data-dir",
        str(data),
        "-o",
        "clip",
        "--views",
        "2",
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--set",
        "train.eval_every=0",
        "--quiet",
        "--device",
        "cpu",
        *[a for s in CHEAP_DATA for a in ("--set", s)],
    ]
    runner = CliRunner()
    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    [first_file] = out.glob("*.json")
    first_result = load_result(first_file)
    assert first_result.metrics["query->item"] and first_result.counts["query_split"]["test"] == 6
    assert first_result.data["fingerprint"] and first_result.data["folder"] == str(data.resolve())

    write_catalog(data, test_queries=2)  # the user cuts the test qrels
    second = runner.invoke(app, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert len(list(out.glob("*.json"))) == 2
    assert load_result(first_file).run_id == first_result.run_id  # not overwritten
    second_file = next(p for p in out.glob("*.json") if p != first_file)
    assert load_result(second_file).counts["query_split"]["test"] == 2
    said = " ".join(second.output.split())
    assert f"the data changed: {first_file.name} holds this config's result on other data" in said
    assert f"this run writes {second_file.name}" in said


def _fake_execute(ran):
    """Stands in for experiment.execute: a valid result file named and filled as execute does."""

    def execute(prepared, out_dir, progress=None, dataset_cache=None):
        ran.append(prepared.config_hash)
        c = prepared.config
        result = RunResult(
            run_id=f"r{len(ran)}",
            config=c,
            config_hash=prepared.config_hash,
            versions={},
            device={},
            counts={},
            metrics={"query->item": {"recall@10": 0.5}},
            not_applicable={},
            timing={},
            training={},
            data=dict(prepared.data),
        )
        path = Path(out_dir) / result_filename(c, prepared.config_hash)
        write_result(result, path)
        return result, path

    return execute


def test_sweep_runs_a_cell_whose_data_changed_says_so_and_skips_it_when_the_data_is_back(tmp_path, monkeypatch):
    data, out = tmp_path / "cat", tmp_path / "out"
    write_catalog(data)
    spec = spec_from_preset(None, ["clip"], [2], [0], "catalog", [f"dataset.data_dir={data}", *CHEAP_DATA], 3, 8, "cpu")
    ran: list[str] = []
    monkeypatch.setattr("ftbench.run.experiment.execute", _fake_execute(ran))

    def sweep() -> tuple[object, str]:
        text = io.StringIO()
        outcome = run_sweep_with_progress(spec, out, quiet=True, console=Console(file=text, width=400))
        return outcome, text.getvalue()

    outcome, said = sweep()
    assert len(outcome.ran) == 1 and not outcome.data_changed and "data changed" not in said
    [original] = out.glob("*.json")

    write_catalog(data, test_queries=2)
    outcome, said = sweep()
    assert len(outcome.ran) == 1 and not outcome.skipped
    assert outcome.data_changed == [("clip V=2 seed=0", [original])]
    lines = [line for line in said.splitlines() if line.startswith("the data changed")]
    assert len(lines) == 1 and "1 cell(s) (clip V=2 seed=0) have a result in" in lines[0]
    assert "sweep done: 1 ran (1 because the data changed), 0 skipped" in said
    assert len(list(out.glob("*.json"))) == 2 and load_result(original).run_id == "r1"

    write_catalog(data)  # the data is back: its result exists, and it is that data's result
    outcome, said = sweep()
    assert not outcome.ran and outcome.skipped == [original] and len(ran) == 2


def test_run_sweep_records_the_changed_cells(tmp_path):
    data, out = tmp_path / "cat", tmp_path / "out"
    write_catalog(data)
    spec = spec_from_preset(
        None, ["clip", "factorized"], [2], [0], "catalog", [f"dataset.data_dir={data}", *CHEAP_DATA], 3, 8, "cpu"
    )
    ran: list[str] = []
    run_sweep(prepare_grid(spec), out, execute_fn=_fake_execute(ran))
    (data / "qrels" / "dev.tsv").write_text("q8\ti8\t1\n", encoding="utf-8")
    outcome = run_sweep(prepare_grid(spec), out, execute_fn=_fake_execute(ran))
    assert sorted(cell for cell, _ in outcome.data_changed) == ["clip V=2 seed=0", "factorized V=2 seed=0"]
    assert len(ran) == 4


def _result(config: dict, data: dict, run_id: str) -> RunResult:
    return RunResult(
        run_id=run_id,
        config=config,
        config_hash=run_identity(config, data),
        versions={},
        device={},
        counts={},
        metrics={"query->item": {"recall@10": 0.5}},
        not_applicable={},
        timing={},
        training={},
        data=data,
    )


def test_the_report_groups_by_fingerprint_and_keeps_old_results_in_their_own_groups(tmp_path):
    write_catalog(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    here, there = _prepare(tmp_path / "a"), _prepare(tmp_path / "b", objective="factorized")
    write_catalog(tmp_path / "b", test_queries=2)
    other = _prepare(tmp_path / "b", seed=1)
    old_config = {**here.config, "seed": 2}  # written before fingerprints: no data block
    runs = [
        (Path(f"{i}.json"), r)
        for i, r in enumerate(
            [
                _result(here.config, here.data, "here"),
                _result(there.config, there.data, "there"),
                _result(other.config, other.data, "other"),
                _result(old_config, {}, "old"),
            ]
        )
    ]
    frame = results_frame(runs).set_index("run_id")
    assert frame.loc["here", "group"] == frame.loc["there", "group"]  # same data, two folders
    assert frame.loc["other", "group"] != frame.loc["here", "group"]  # other data
    # an old result keeps the group it always had: data set, its config (the path included), train, tower, eval
    legacy = config_hash(
        {
            "dataset": "catalog",
            **{s: old_config.get(s) for s in ("dataset_config", "train_config", "tower_config", "eval_config")},
        }
    )[:8]
    assert frame.loc["old", "group"] == legacy == group_key(old_config)
    assert frame.loc["old", "group"] not in {frame.loc["here", "group"], frame.loc["other", "group"]}
    assert "dataset.data_dir" not in frame.loc["here", "group_changes"]  # a location is not a config change
    assert "dataset.data_dir" in frame.loc["old", "group_changes"]
    together = frame[frame["group"] == frame.loc["here", "group"]]
    assert data_identity_text(together) == (
        f"Data: content fingerprint `{here.data['fingerprint'][:12]}`, read from "
        f"`{(tmp_path / 'a').resolve()}`, `{(tmp_path / 'b').resolve()}`."
    )
    assert "written before data fingerprints" in data_identity_text(frame[frame["group"] == legacy])


def test_results_written_before_fingerprints_still_load_in_the_groups_they_had():
    """Two grocery results as committed before data fingerprints (tests/fixtures/legacy_grocery)."""
    folder = REPO / "tests" / "fixtures" / "legacy_grocery"
    frame = load_results_frame(folder)
    assert len(frame) == len(list(folder.glob("*.json"))) == 2 and frame["data_fingerprint"].isna().all()
    for path in folder.glob("*.json"):
        result = load_result(path)
        assert result.data == {}
        legacy = config_hash(
            {
                "dataset": result.config["dataset"],
                **{s: result.config.get(s) for s in ("dataset_config", "train_config", "tower_config", "eval_config")},
            }
        )[:8]
        assert group_key(result.config, result.data) == legacy


def test_committed_grocery_results_are_one_group_per_query_setting_whatever_the_folder():
    for name in ("grocery-mini", "grocery-mini-photo-queries"):
        frame = load_results_frame(REPO / "results" / name)
        assert frame["data_fingerprint"].notna().all() and frame["data_fingerprint"].nunique() == 1, name
        trained = frame[~frame["reference"]] if "reference" in frame else frame
        assert trained["group"].nunique() == 1, (name, trained["group"].unique())
