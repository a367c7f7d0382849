"""The package list of the `ftbench` distribution, found rather than written out.

pyproject.toml maps three folders onto one import name (`ftbench` = bench/, `ftbench.objectives` =
objectives/, `ftbench.datasets` = datasets/). setuptools' own `packages.find` cannot rename a folder
to a dotted prefix, so this file walks the folders: every directory holding an `__init__.py` is a
subpackage, and a wheel never silently leaves one out (a missing `ftbench.cli` made the installed
command crash at start).
"""

from pathlib import Path

from setuptools import setup

ROOTS = {"ftbench": "bench", "ftbench.objectives": "objectives", "ftbench.datasets": "datasets"}
HERE = Path(__file__).parent


def subpackages(name: str, folder: str) -> list[str]:
    base = HERE / folder
    found = []
    for init in sorted(base.rglob("__init__.py")):
        rel = init.parent.relative_to(base)
        if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
            continue
        dotted = ".".join((name, *rel.parts))
        found.append(dotted)
    return found


setup(packages=sorted({p for name, folder in ROOTS.items() for p in subpackages(name, folder)}))
