"""Every result records where it came from (git commit, dirty flag, command line) and can be run
again: `ftbench run --config FILE` takes the keys of --set from a TOML file, and `ftbench rerun
RESULT.json` reproduces a run from its recorded config, with the same metrics on CPU."""

import json
import subprocess

import pytest
from ftbench.cli.app import app
from ftbench.run.provenance import SOURCE_ROOT, command_line, git_state, sets_from_config_file
from typer.testing import CliRunner

runner = CliRunner()
TINY_TOML = """
[dataset]
items = 300
interactions = 400
[train]
eval_every = 5
val_gallery_size = 200
steps = 10
batch_size = 32
"""


def _run(*args, monkeypatch=None):
    if monkeypatch is not None:  # what the shell would have passed: the recorded command line
        monkeypatch.setattr("sys.argv", ["/venv/bin/ftbench", *args])
    return runner.invoke(app, list(args), catch_exceptions=False)


def _only_json(folder):
    files = list(folder.glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_config_file_rerun_and_provenance(tmp_path, monkeypatch):
    config = tmp_path / "run.toml"
    config.write_text(TINY_TOML + "[objective]\nprimary_weight = 0.6\n")
    res = _run(
        "run",
        "--objective",
        "factorized",
        "--views",
        "2",
        "--config",
        str(config),
        "--seed",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path / "a"),
        monkeypatch=monkeypatch,
    )
    assert res.exit_code == 0, res.output
    original = json.loads(_only_json(tmp_path / "a").read_text())
    assert original["config"]["train_config"]["steps"] == 10 and original["config"]["dataset_config"]["items"] == 300
    assert original["config"]["objective_config"]["primary_weight"] == 0.6
    assert original["schema_version"] == 2  # provenance is an addition (v2 is the mrr@500 rename)

    prov = original["provenance"]
    assert prov["command"].startswith("ftbench run --objective factorized") and f"--config {config}" in prov["command"]
    assert prov["run_options"]["device"] == "cpu"
    git = git_state()
    assert prov["commit"] == git["commit"] and prov["dirty"] == git["dirty"]

    res = _run(
        "rerun",
        str(_only_json(tmp_path / "a")),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path / "b"),
        monkeypatch=monkeypatch,
    )
    assert res.exit_code == 0, res.output
    assert "metrics equal to the recorded ones" in " ".join(res.output.split())
    again = json.loads(_only_json(tmp_path / "b").read_text())
    assert again["config_hash"] == original["config_hash"]
    assert again["metrics"] == original["metrics"]
    assert again["provenance"]["command"].startswith("ftbench rerun ")

    # a tampered record is noticed: the rerun exits 1 and names the metric
    tampered = dict(
        original,
        metrics={
            **original["metrics"],
            "query->item": {
                **original["metrics"]["query->item"],
                "recall@10": original["metrics"]["query->item"]["recall@10"] + 0.5,
            },
        },
    )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "tampered.json").write_text(json.dumps(tampered))
    res = _run("rerun", str(tmp_path / "c" / "tampered.json"), "--device", "cpu", "--quiet", "--out", str(tmp_path / "d"))
    assert res.exit_code == 1 and "query->item/recall@10" in res.output


def test_rerun_refuses_bad_input(tmp_path):
    res = runner.invoke(app, ["rerun", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "no such file" in res.output
    (tmp_path / "x.json").write_text("{}")
    res = runner.invoke(app, ["rerun", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "config" in res.output
    res = runner.invoke(app, ["rerun", str(tmp_path / "x.json"), "--out", str(tmp_path)])
    assert res.exit_code == 2


def test_config_file_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trian]\nsteps = 3\n")
    res = runner.invoke(app, ["run", "--config", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "[trian]" in res.output and "bad.toml" in res.output
    bad.write_text("steps = = 3")
    res = runner.invoke(app, ["run", "--config", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not valid TOML" in res.output
    res = runner.invoke(app, ["run", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no such file" in res.output
    good = tmp_path / "good.toml"
    good.write_text("primary_weight = 0.7\n[train]\nsteps = 3\n[dataset]\nseed = 2\n")
    assert sets_from_config_file(good) == ["primary_weight=0.7", "train.steps=3", "dataset.seed=2"]


def test_bare_seed_is_refused_in_favour_of_the_run_seed(tmp_path):
    res = runner.invoke(app, ["run", "--set", "seed=3", "--out", str(tmp_path)])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "--seed" in text and "dataset.seed" in text
    assert not list(tmp_path.glob("*.json"))


def test_git_state_outside_a_checkout(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and "git" in state["git_note"]


def test_git_state_sees_uncommitted_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    try:
        git("init", "-q")
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "f.txt").write_text("b")
    assert git_state(tmp_path)["dirty"] is True


def test_command_line_is_shell_quoted():
    assert command_line(["/x/bin/ftbench", "run", "--set", "eval.ks=(1, 10)"]) == "ftbench run --set 'eval.ks=(1, 10)'"
    assert SOURCE_ROOT.joinpath("bench").is_dir() or SOURCE_ROOT.exists()


def test_command_line_never_records_a_storage_password():
    argv = [
        "/x/bin/ftbench",
        "sweep",
        "--storage",
        "postgresql://ftbench:s3cret@db.local:5432/bench",
        "--storage-options",
        "sqlite:///x?password=hunter2&x=1",
    ]
    recorded = command_line(argv)
    assert "s3cret" not in recorded and "hunter2" not in recorded
    assert "postgresql://ftbench:***@db.local:5432/bench" in recorded
