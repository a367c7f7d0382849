"""Equal-budget tuning (`ftbench tune`) and claimed sweeps on a shared storage: exact trial budgets
with one and several worker processes (SQLite, journal file, PostgreSQL), a worker killed with
SIGKILL mid-trial, reruns that do nothing, and storage passwords kept out of every output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

optuna = pytest.importorskip("optuna")
from ftbench.cli import app  # noqa: E402
from ftbench.config import Search, option  # noqa: E402
from ftbench.run.claims import CellClaims, database_url, open_storage, reap_stale, redact_url  # noqa: E402
from ftbench.run.results import load_result  # noqa: E402
from ftbench.run.tune import SURPLUS_ATTR, tuned_fields  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

TINY = [
    "--views",
    "4",
    "--steps",
    "20",
    "--batch-size",
    "32",
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=400",
    "--set",
    "train.val_gallery_size=200",
    "--set",
    "train.eval_every=10",
    "--set",
    "train.select_metric='query->item/recall@10'",
    "--device",
    "cpu",
]
POSTGRES_ENV = "FTBENCH_TEST_POSTGRES_URL"


def _tune_args(out: Path, objectives=("clip", "factorized"), trials=3, extra=()):
    args = ["tune", "--trials", str(trials), "--out", str(out), "--seeds", "0", "--quiet", *TINY, *extra]
    for o in objectives:
        args += ["--objective", o]
    return args


def _studies(storage) -> dict[str, list]:
    return {
        s.study_name: storage.get_all_trials(s._study_id)
        for s in storage.get_all_studies()
        if not s.study_name.endswith("-reruns")
    }


def _counts(trials) -> dict[str, int]:
    out = {"finished": 0, "failed": 0, "surplus": 0, "running": 0}
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            out["finished"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.user_attrs.get(SURPLUS_ATTR):
            out["surplus"] += 1
        else:
            out["failed"] += 1
    return out


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


def _worker(args: list[str], log: Path) -> subprocess.Popen:
    # `-P`: keep the repository root off sys.path (its datasets/ folder would hide Hugging Face's)
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "ftbench", *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env()
    )


# ------------------------------------------------------------------------------------------------
# search spaces
# ------------------------------------------------------------------------------------------------
def test_search_spaces_are_declared_beside_fields_and_valid():
    space = tuned_fields("factorized")
    assert {
        "train.lr",
        "train.weight_decay",
        "objective.init_logit_scale",
        "objective.primary_weight",
        "objective.aux_samples",
    } <= set(space)
    assert space["train.lr"].scale == "log" and space["train.lr"].low == 1e-4 and space["train.lr"].high == 1e-2
    assert "objective.primary_weight" not in tuned_fields("clip")  # clip never reads it
    assert "objective.eps" in tuned_fields("full_ot") and "objective.ot_weight" in tuned_fields("mover")
    assert "objective.wasserstein_weight" in tuned_fields("oat")
    for name in ("clip", "factorized", "full_ot", "oat", "mover", "pairwise", "siglip"):
        for key, s in tuned_fields(name).items():
            assert s.why, f"{name} {key}: the range must say why"
    with pytest.raises(ValueError, match="outside its search range"):
        option(0.5, "x", search=Search(1.0, 2.0))
    with pytest.raises(ValueError, match="log-scale"):
        Search(0.0, 1.0, "log")


def test_objectives_verbose_shows_the_search_space():
    result = CliRunner().invoke(app, ["objectives", "--verbose", "full_ot"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "search space" in result.output and "train.lr" in result.output
    assert "[0.01, 0.5] log" in result.output  # eps
    assert "[0.0001, 0.01] log" in result.output


def test_redact_url_hides_passwords_only():
    assert redact_url("postgresql://bob:hunter2@db:5432/ftb") == "postgresql://bob:***@db:5432/ftb"
    assert redact_url("postgresql://db/ftb?user=bob&password=hunter2") == "postgresql://db/ftb?user=bob&password=***"
    assert redact_url("sqlite:////tmp/x.sqlite3") == "sqlite:////tmp/x.sqlite3"
    assert "hunter2" not in redact_url("error at postgresql+psycopg2://u:hunter2@h/d: refused")


def test_bad_storage_url_is_one_clear_error_without_password(tmp_path):
    result = CliRunner().invoke(app, _tune_args(tmp_path, ("clip",), 1, ["--storage", "mysql-ish://u:pw9xq@nowhere/db"]))
    assert result.exit_code == 2
    assert "--storage" in result.output and "pw9xq" not in result.output


def test_objective_and_seed_lists_may_be_comma_separated(tmp_path):
    # docs/results/tuning.md's `ftbench tune -o clip,siglip,...`: each entry is checked on its own
    result = CliRunner().invoke(app, ["tune", "-o", "clip,nope", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2
    assert "unknown objective 'nope'" in result.output and "clip,nope" not in result.output
    result = CliRunner().invoke(app, ["tune", "-o", "clip", "--seeds", "0,x", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and "--seeds 'x': expected an integer" in result.output


# ------------------------------------------------------------------------------------------------
# one process
# ------------------------------------------------------------------------------------------------
def test_tiny_end_to_end_tune_and_rerun_does_nothing(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, _tune_args(tmp_path), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    storage = open_storage(None, tmp_path)
    studies = _studies(storage)
    assert len(studies) == 2
    for name, trials in studies.items():
        assert _counts(trials)["finished"] == 3, name
        for t in trials:  # every trial searched the declared space
            assert set(t.params) == set(tuned_fields(name.split("-")[1]))
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 4  # default + tuned, seed 0, per objective
    tuned = [load_result(f) for f in files if load_result(f).tuning]
    assert len(tuned) == 2
    for r in tuned:
        block = r.tuning
        assert block["trials"] == 3 and block["completed"] + block["pruned"] == 3
        assert block["budget"]["steps"] == 20 and block["best_params"]
        for key, value in block["best_params"].items():
            section, field = key.split(".", 1)
            assert r.config[f"{section}_config"][field] == pytest.approx(value)
        assert r.metrics  # evaluated on test once
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    again = runner.invoke(app, _tune_args(tmp_path), env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert {n: len(t) for n, t in _studies(open_storage(None, tmp_path)).items()} == {n: len(t) for n, t in studies.items()}
    assert {f: f.stat().st_mtime_ns for f in tmp_path.glob("*.json")} == mtimes
    assert "4 skipped" in again.output
    report = runner.invoke(app, ["report", str(tmp_path)])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "Default vs tuned" in text and "Ranking on query->item " in text
    assert "train.lr=" in text


# ------------------------------------------------------------------------------------------------
# several workers
# ------------------------------------------------------------------------------------------------
def _two_workers_finish_exactly(tmp_path, storage_url, trials=3):
    args = _tune_args(
        tmp_path / "out", ("clip", "siglip"), trials, ["--storage", storage_url, "--study", f"t{uuid.uuid4().hex[:8]}"]
    )
    workers = [_worker(args, tmp_path / f"worker{i}.log") for i in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, (tmp_path / "worker0.log").read_text() + (tmp_path / "worker1.log").read_text()
    storage = open_storage(storage_url)
    prefix = args[args.index("--study") + 1]
    mine = {n: t for n, t in _studies(storage).items() if n.startswith(prefix)}
    assert len(mine) == 2
    for name, trials_ in mine.items():
        counts = _counts(trials_)
        assert counts["finished"] == trials and counts["failed"] == 0 and counts["running"] == 0, (name, counts)
    # each rerun ran once over both workers: one result file per (objective, role, seed)
    assert len(list((tmp_path / "out").glob("*.json"))) == 4
    return tmp_path / "out", [tmp_path / "worker0.log", tmp_path / "worker1.log"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_worker_processes_share_one_budget(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}" if kind == "sqlite" else f"journal:{tmp_path / 'shared.log'}"
    _two_workers_finish_exactly(tmp_path, url, trials=4)


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"no PostgreSQL server: set {POSTGRES_ENV}=postgresql://USER:PASSWORD@127.0.0.1:PORT/DB "
            "(.ci/run starts one on loopback and sets it)"
        )
    try:
        import sqlalchemy

        sqlalchemy.create_engine(database_url(url)).connect().close()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {redact_url(url)} ({POSTGRES_ENV}) is not reachable: {type(exc).__name__}")
    return url


@pytest.mark.slow
def test_two_workers_on_a_real_postgresql_server_and_no_password_anywhere(tmp_path):
    url = _postgres_url()
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    out, logs = _two_workers_finish_exactly(tmp_path, url)
    runner = CliRunner()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    if password:
        for path in list(out.rglob("*.json")) + list(out.rglob("*.md")) + logs:
            assert password not in path.read_text(), path
        tuned = [load_result(f) for f in out.glob("*.json") if load_result(f).tuning]
        assert tuned and all("***" in r.tuning["storage"] for r in tuned)


@pytest.mark.slow
def test_worker_killed_mid_trial_leaves_a_failed_trial_and_a_rerun_completes(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
    slow = ["--storage", url, "--stale-after", "2", "--no-defaults", "--steps", "150"]
    args = _tune_args(tmp_path / "out", ("clip",), 2, slow)
    victim = _worker(args, tmp_path / "victim.log")
    storage = open_storage(url)
    deadline = time.monotonic() + 300
    running = []
    while time.monotonic() < deadline and not running:
        time.sleep(0.05)
        try:
            running = [t for trials in _studies(storage).values() for t in trials if t.state == TrialState.RUNNING]
        except Exception:  # noqa: BLE001 - the tables may not exist yet
            running = []
        assert victim.poll() is None, (tmp_path / "victim.log").read_text()
    assert running, "the worker never started a trial"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    (study_name,) = _studies(storage)
    study_id = storage.get_study_id_from_name(study_name)
    before = _counts(storage.get_all_trials(study_id))
    assert before["running"] == 1 and before["finished"] == 0  # killed mid-trial
    # the study stays usable: it loads, and the dead trial is reaped once its heartbeat is stale
    time.sleep(2.5)
    assert reap_stale(storage, study_id, 2.0) == [running[0].number]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    after = _counts(storage.get_all_trials(study_id))
    assert after == {"finished": 2, "failed": 1, "surplus": 0, "running": 0}
    failed = [t for t in storage.get_all_trials(study_id) if t.state == TrialState.FAIL]
    assert "no heartbeat" in failed[0].user_attrs["ftbench_failed_reason"]


# ------------------------------------------------------------------------------------------------
# claims of sweep cells
# ------------------------------------------------------------------------------------------------
def test_cell_claims_each_cell_once_and_dead_claims_expire(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'claims.sqlite3'}")
    a = CellClaims(storage, "grid", stale_after=1.0)
    b = CellClaims(storage, "grid", stale_after=1.0)
    first = a.claim("cell-1")
    assert first is not None
    assert b.claim("cell-1") is None  # held by a (its claim is fresh)
    assert b.claim("cell-2") is not None
    a.release(first, ok=True)
    assert b.done("cell-1") and b.claim("cell-1") is None  # done: never again
    dead = a.claim("cell-3")  # a "dies": no heartbeat from now on
    assert dead is not None and b.claim("cell-3") is None
    time.sleep(1.3)
    again = b.claim("cell-3")  # stale: claimable again
    assert again is not None and again != dead
    states = {t._trial_id: t.state for t in storage.get_all_trials(a.study_id)}
    assert states[dead] == TrialState.FAIL


@pytest.mark.slow
def test_two_concurrent_sweeps_on_one_storage_run_each_cell_once(tmp_path):
    out = tmp_path / "out"
    url = f"sqlite:///{tmp_path / 'sweep.sqlite3'}"
    args = [
        "sweep",
        "--objective",
        "clip",
        "--objective",
        "siglip",
        "--views",
        "2",
        "--views",
        "4",
        "--seed",
        "0",
        "--seed",
        "1",
        "--steps",
        "3",
        "--batch-size",
        "32",
        "--set",
        "dataset.items=300",
        "--set",
        "dataset.interactions=400",
        "--set",
        "train.val_gallery_size=200",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--storage",
        url,
        "--quiet",
    ]
    workers = [_worker(args, tmp_path / f"sweep{i}.log") for i in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, (tmp_path / "sweep0.log").read_text()
    assert len(list(out.glob("*.json"))) == 8
    ran = 0
    for i in range(2):
        text = (tmp_path / f"sweep{i}.log").read_text()
        ran += int(text.split("sweep done: ", 1)[1].split(" ran", 1)[0])
    assert ran == 8  # not 16: each cell once over the two workers
