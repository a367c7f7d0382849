"""MkDocs hook: lay out the `ftbench` package for mkdocstrings.

The distribution maps three folders onto one package (`ftbench` = bench/, `ftbench.objectives`
= objectives/, `ftbench.datasets` = datasets/; see pyproject.toml), which griffe cannot find by
folder name. At start-up, before the plugins read their configs, this builds build/docs-api/ftbench/ out of symbolic links
to those folders' entries, the path `mkdocs.yml` gives the Python handler, so the API pages are
read from the source (statically: nothing is imported).
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "build" / "docs-api"
# subpackage name -> its folder; every other entry of bench/ is linked as it is
SUBPACKAGES = {"objectives": ROOT / "objectives", "datasets": ROOT / "datasets"}


def stage_package(stage: Path = STAGE) -> Path:
    """(Re)build `stage`/ftbench and return `stage`."""
    package = stage / "ftbench"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "bench").iterdir()):
        if entry.name == "__pycache__" or entry.name in SUBPACKAGES:
            continue
        (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for name, folder in SUBPACKAGES.items():
        (package / name).symlink_to(folder, target_is_directory=True)
    return stage


def on_startup(command, dirty):
    # before any plugin's on_config: mkdocstrings keeps only the handler paths that exist then
    stage_package()
