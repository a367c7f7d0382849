"""pyproject.toml is the one build file: its package list covers every subpackage folder, and the
version is read from `ftbench.__version__`, the one place it is written (shown by `ftbench
--version` and recorded in result files). `.ci/wheel-check` builds and runs the wheel itself."""

import re
from pathlib import Path

import ftbench
import tomllib
from ftbench.cli.app import app
from ftbench.run.experiment import package_versions
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_folders(package_dir: dict[str, str]) -> set[str]:
    """The import name of every folder holding an __init__.py below the mapped roots."""
    found = set()
    for name, folder in package_dir.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts and not any(p.startswith(".") for p in rel.parts):
                found.add(".".join((name, *rel.parts)))
    return found


def test_the_package_list_names_every_subpackage_folder_and_nothing_else():
    tool = _pyproject()["tool"]["setuptools"]
    assert tool["package-dir"] == {"ftbench": "bench", "ftbench.objectives": "objectives", "ftbench.datasets": "datasets"}
    listed = tool["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    missing = _package_folders(tool["package-dir"]) - set(listed)
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    stale = set(listed) - _package_folders(tool["package-dir"])
    assert not stale, f"{sorted(stale)} in pyproject.toml has no folder with an __init__.py"
    assert not (ROOT / "setup.py").exists()  # one build file


def test_the_version_is_written_once_and_shown_everywhere():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ftbench.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", ftbench.__version__)
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.split() == ["ftbench", ftbench.__version__]
    assert package_versions()["ftbench"] == ftbench.__version__  # the `versions` block of a result file
    # the README names the current minor version
    major_minor = ".".join(ftbench.__version__.split(".")[:2])
    assert f"v{major_minor}" in (ROOT / "README.md").read_text()
