"""The command line follows common habits and says what it is doing: -v/--verbose is a flag, list
options take comma lists, shell completion is offered, flags show no `<bool>`, long work shows
progress and ends with a summary, Ctrl-C says what was kept, a bad --out is one line."""

import re

import pytest
from ftbench.cli.app import app
from ftbench.cli.common import UsageError, split_list
from typer.testing import CliRunner

runner = CliRunner()
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
    "4",
    "--batch-size",
    "32",
    "--device",
    "cpu",
]


def _plain(text):
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


@pytest.mark.parametrize("command", ["run", "sweep", "cost", "tune", "reference", "report", "rerun", "objectives"])
def test_help_shows_no_bool_placeholder(command):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "160"})
    assert res.exit_code == 0
    assert "<bool>" not in res.output
    if command in ("run", "sweep", "cost", "tune", "reference"):
        views_row = next(line for line in res.output.splitlines() if "--views" in line)
        assert " -v " not in views_row  # -v is never --views (it is --verbose where there is one)


def _help_text(*command):
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    return " ".join(res.output.replace("│", " ").split())  # panel borders out: a wrapped cell reads on


@pytest.mark.parametrize(
    "command, shown",
    [
        ("run", "pip install 'ftbench[tracking]'"),
        ("sweep", "pip install 'ftbench[tracking]'"),
        ("tune", "pip install 'ftbench[tracking]'"),
        ("run", "(bare or in [objective], [dataset], [train], [tower], [eval] tables)"),
    ],
)
def test_help_shows_brackets_as_written(command, shown):
    """Rich markup ate them: `pip install 'ftbench'`, "bare or in , , , , tables"."""
    assert shown in _help_text(command)


def test_every_bracket_of_every_help_text_is_shown():
    import typer.main

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    checked = 0
    for path, command in commands(typer.main.get_command(app)):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        # what a help text says, unescaped; tag-like brackets are the ones rich would take as markup
        brackets = {b for text in texts for b in re.findall(r"\[[a-z#/@][^\[\]]*\]", text.replace("\\[", "["))}
        shown = _help_text(*path)
        for bracket in brackets:
            assert " ".join(bracket.split()) in shown, (path, bracket)
            checked += 1
    assert checked >= 5  # the [tracking] of run, sweep, tune and the --config tables at least


def test_shell_completion_is_offered():
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "160"})
    assert "--install-completion" in res.output and "--show-completion" in res.output


def test_verbose_is_a_flag_and_name_an_argument():
    short = runner.invoke(app, ["objectives"]).output
    named = runner.invoke(app, ["objectives", "clip"]).output
    flag = runner.invoke(app, ["objectives", "--verbose", "clip"]).output
    every = runner.invoke(app, ["objectives", "-v"]).output
    assert "config fields" not in short
    assert named == flag and "config fields" in named
    from ftbench.objectives import OBJECTIVES

    assert every.count("config fields") == len(OBJECTIVES.names())


def test_split_list_takes_comma_lists_and_repeats():
    assert split_list(["1,2", "4", " 8 "], "--views", int) == [1, 2, 4, 8]
    assert split_list(["clip,factorized", "oat"], "--objective") == ["clip", "factorized", "oat"]
    with pytest.raises(UsageError, match="--views 'x': expected an integer"):
        split_list(["1,x"], "--views", int)


def test_sweep_takes_comma_lists_and_ends_with_a_results_table(tmp_path):
    res = runner.invoke(
        app,
        ["sweep", "--objective", "clip,factorized", "--views", "1,2", "--seed", "0", "--out", str(tmp_path), *TINY],
        env={"COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert len(list(tmp_path.glob("*.json"))) == 4
    text = _plain(res.output)
    assert "4 runs (2 objectives x 2 views x 1 seeds)" in text
    assert "sweep results" in text and "recall@10" in text
    table_rows = [line for line in res.output.splitlines() if re.search(r"(clip|factorized)\s*│\s*[12]\s*│\s*0\s*│", line)]
    assert len(table_rows) == 4, res.output
    bad = runner.invoke(app, ["sweep", "--views", "1,two", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "expected an integer" in bad.output


def test_run_announces_encoding_and_the_evaluate_bar_completes(tmp_path, monkeypatch):
    """The run's progress display: each feature-encoding pass is a row saying how many inputs
    miss the cache, and the evaluate row ends at 1/1."""
    from ftbench.features import cache as cache_module
    from ftbench.run import experiment

    seen = {}

    class Spy:
        def __init__(self, progress):
            self.progress = progress

    real_execute = experiment.execute

    def execute(prepared, out, progress=None, **kw):
        events = []
        result = real_execute(prepared, out, progress=lambda *a: (events.append(a), progress(*a)), **kw)
        seen["events"] = events
        reporter = cache_module._reporter.get()
        seen["reporter"] = reporter
        # a pass of the cache during the run shows up as a row of the same display
        from ftbench.features.backbones import HashFeatures

        cache_module.FeatureCache(tmp_path / "cache").encode(HashFeatures("text"), ["a", "b"], label="titles")
        return result

    monkeypatch.setattr(experiment, "execute", execute)
    res = runner.invoke(
        app,
        ["run", "--objective", "clip", "--views", "1", "--out", str(tmp_path / "r"), *TINY],
        env={"COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert seen["reporter"] is not None  # the CLI installed a reporter for feature encoding
    evaluate = [e for e in seen["events"] if e[0] == "evaluate"]
    assert evaluate[-1][1:3] == (1, 1)
    tasks = {t.description: t for t in seen["reporter"].progress.tasks}
    assert tasks["encoding 2 inputs not in the cache: titles"].completed == 2
    assert tasks["evaluate"].completed == tasks["evaluate"].total == 1


def test_ctrl_c_in_a_run_says_nothing_was_written(tmp_path, monkeypatch):
    from ftbench.run import experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "execute", interrupted)
    res = runner.invoke(app, ["run", "--objective", "clip", "--views", "1", "--out", str(tmp_path), *TINY])
    assert res.exit_code == 130
    text = _plain(res.output)
    assert "interrupted: no result was written" in text and "same command" in text


def test_ctrl_c_in_a_sweep_says_what_was_kept_and_that_a_rerun_continues(tmp_path, monkeypatch):
    from ftbench.run import experiment

    real = experiment.execute
    calls = []

    def second_interrupted(prepared, out, **kw):
        calls.append(prepared)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(prepared, out, **kw)

    monkeypatch.setattr(experiment, "execute", second_interrupted)
    args = ["sweep", "--objective", "clip", "--views", "1,2", "--seed", "0", "--out", str(tmp_path), *TINY]
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 130
    text = _plain(res.output)
    assert "interrupted after 1 of 2 cells: 1 result file(s) kept" in text
    assert "the same command continues" in text
    monkeypatch.setattr(experiment, "execute", real)
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "1 ran, 1 skipped" in _plain(res.output)


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--objective", "clip", "--views", "1", *TINY],
        ["sweep", "--objective", "clip", "--views", "1", "--seed", "0", *TINY],
        ["cost", "--objective", "clip", "--views", "1"],
        ["cost", "--solver-bench"],
        ["report"],
    ],
)
def test_a_bad_out_is_one_line(tmp_path, command):
    (tmp_path / "a_file").write_text("x")
    args = list(command)
    if command == ["report"]:
        (tmp_path / "results").mkdir()
        args += [str(tmp_path / "results")]
    res = runner.invoke(app, args + ["--out", str(tmp_path / "a_file")])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "a_file" in lines[0], res.output


def test_cost_warns_of_a_busy_machine_and_a_large_spread():
    from ftbench.cost.warnings import busy_warning, cost_warnings, spread_warnings

    assert busy_warning({"load_1min": 0.3, "cpus": 2}) is None
    assert "load average 3.5 on 2 cores" in busy_warning({"load_1min": 3.5, "cpus": 2})
    assert busy_warning({"load_1min": None, "cpus": 2}) is None
    rows = [
        {
            "objective": "clip",
            "views": 1,
            "status": "ok",
            "objective_ms_median": 4.0,
            "objective_ms_iqr": 0.1,
            "step_ms_median": 416.0,
            "step_ms_iqr": 300.0,
        },
        {
            "objective": "clip",
            "views": 4,
            "status": "ok",
            "objective_ms_median": 5.0,
            "objective_ms_iqr": 0.2,
            "step_ms_median": 55.0,
            "step_ms_iqr": 2.0,
        },
        {"objective": "oat", "views": 4, "status": "skipped", "reason": "memory"},
    ]
    lines = spread_warnings(rows)
    assert lines == ["clip V=1 whole step: spread 72% of the median (IQR 300.00 ms, median 416.00 ms) > 25%"]
    every = cost_warnings({"machine_load": {"load_1min": 9.0, "cpus": 2}, "rows": rows})
    assert every[0].startswith("the machine was busy") and every[1].startswith("1 cell(s)")
    assert cost_warnings({"machine_load": {"load_1min": 0.0, "cpus": 2}, "rows": rows[1:]}) == []
