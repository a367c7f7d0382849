"""`ftbench.launch`: run from the repository root, `python -m ftbench` must not let a bare
`import datasets` (transformers does one for sentence-transformers) find ftbench's data-set folder."""

import os
import sys
from pathlib import Path

from ftbench import launch

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_repositorys_datasets_folder_leaves_sys_path(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    (other / "datasets").mkdir(parents=True)
    (other / "datasets" / "__init__.py").write_text("# somebody else's datasets package\n")
    monkeypatch.chdir(REPOSITORY)
    monkeypatch.setattr(sys, "path", ["", str(REPOSITORY), str(other), str(tmp_path / "missing")])
    launch._unshadow_datasets()
    # the working directory ('' here) and the repository root hold ftbench's folder: dropped
    assert sys.path == [str(other), str(tmp_path / "missing")]


def test_the_guard_text_is_the_folders():
    # `_unshadow_datasets` recognises the folder by its guard: the two must not drift apart
    assert launch._GUARD in (REPOSITORY / "datasets" / "__init__.py").read_text(encoding="utf-8")[:4096]
    assert os.path.isfile(REPOSITORY / "datasets" / "__init__.py")
