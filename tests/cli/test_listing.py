"""`ftbench objectives --verbose NAME` prints the objective's equations (its docstring, or its
file's where the class has none) and `ftbench datasets --verbose NAME` its description; both list
the config fields with where each default comes from."""

import inspect
import re
import sys

import pytest
from ftbench.cli.app import app
from ftbench.config import _LEGACY_SOURCES, describe
from ftbench.datasets import DATASETS
from ftbench.objectives import OBJECTIVES
from typer.testing import CliRunner

runner = CliRunner()


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _documentation(entry) -> str:
    return inspect.getdoc(entry) if entry.__doc__ else inspect.cleandoc(sys.modules[entry.__module__].__doc__)


@pytest.mark.parametrize("kind, registry", [("objectives", OBJECTIVES), ("datasets", DATASETS)])
def test_verbose_prints_the_documentation_and_every_config_field(kind, registry):
    for name in registry:
        entry = registry.get(name)
        res = runner.invoke(app, [kind, "--verbose", name], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        shown = _words(res.output)
        # the whole documentation (for an objective: its equations), whatever rich's line wrapping
        assert _words(_documentation(entry)) in shown, name
        if kind == "objectives":
            assert f"docs/method.md#{name}" in res.output, name
        for field in entry.Config.__dataclass_fields__:
            assert field in res.output, (name, field)
        # every default says where it comes from (docs/method.md), never under a former tag
        sources = {row["source"] for row in describe(entry.Config)}
        assert all(sources) and not sources & set(_LEGACY_SOURCES), (name, sources)


def test_a_plain_listing_names_every_plugin_and_an_unknown_name_suggests():
    res = runner.invoke(app, ["objectives"], catch_exceptions=False)
    starts = [line.split()[0] for line in res.output.splitlines() if line.split() and line.split()[0] in OBJECTIVES]
    assert starts == list(OBJECTIVES)  # one line each, in registry order
    res = runner.invoke(app, ["datasets", "--verbose", "synthetik"])
    assert res.exit_code == 2 and "Did you mean 'synthetic'" in res.output


def test_a_plugin_listing_shows_what_each_field_accepts():
    res = runner.invoke(app, ["objectives", "mover"], env={"COLUMNS": "240"})
    assert res.exit_code == 0, res.output
    # a cell the table wraps continues on lines whose first column is empty: join them, so the check
    # does not depend on the console width another test left behind
    rows: dict[str, str] = {}
    name = None
    for line in res.output.splitlines():
        if line.count("│") < 6:
            continue
        cells = [c.strip() for c in line.split("│")]
        if cells[1]:
            name = cells[1]
            rows[name] = cells[3]
        elif name is not None and cells[3]:
            rows[name] = f"{rows[name]} {cells[3]}".strip()
    assert rows["primary_weight"] == "in (0, 1]" and rows["ot_iterations"] == "at least 1"
    assert rows["groups"] == "views | sides" and rows["signed"] == ""
