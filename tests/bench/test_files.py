"""`ftbench.files`: the one module that writes files, usable by every stage."""

import ast
import os
import stat
from pathlib import Path

import ftbench.files as files
import ftbench.run.results as results
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_results_re_exports_the_same_writers():
    """Code that imports the writers from `ftbench.run.results` gets the very same functions."""
    for name in (
        "atomic_write",
        "atomic_write_bytes",
        "atomic_write_text",
        "current_umask",
        "make_folders",
        "remove_created_folders",
        "remove_interrupted_writes",
    ):
        assert getattr(results, name) is getattr(files, name), name


def _package_imports(path: Path) -> set[str]:
    """Every `from ..x import` / `import ftbench.x` target of a module, at any depth (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_features_and_files_do_not_import_run():
    """The feature cache writes through `ftbench.files`; it no longer pulls in the run stage, and
    `ftbench.files` itself imports nothing from the package."""
    for path in sorted((BENCH / "features").rglob("*.py")):
        depth = len(path.relative_to(BENCH).parts) - 1  # dots that reach bench/ from this module
        run = {"." * (depth + 1) + "run", "ftbench.run"}
        bad = {t for t in _package_imports(path) if any(t == r or t.startswith(r + ".") for r in run)}
        assert not bad, f"{path.relative_to(BENCH)} imports {sorted(bad)}"
    own = {t for t in _package_imports(BENCH / "files.py") if t.startswith(".") or t.startswith("ftbench")}
    assert not own, own


def test_atomic_write_text_round_trip_leaves_no_temp_file(tmp_path):
    target = tmp_path / "deep" / "out.txt"
    files.atomic_write_text(target, "first")
    files.atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_a_staging_folder_takes_the_umask_and_is_removed_when_the_block_fails(tmp_path):
    from ftbench.files import staging_folder

    old = os.umask(0o027)
    try:
        with staging_folder(tmp_path / "out") as staging:
            assert staging.parent == tmp_path and staging.name.startswith(".out.")
            assert stat.S_IMODE(staging.stat().st_mode) == 0o750
            (staging / "f").write_text("x")
            os.replace(staging, tmp_path / "out")
        assert (tmp_path / "out" / "f").read_text() == "x"
        with pytest.raises(RuntimeError):
            with staging_folder(tmp_path / "other") as staging:
                (staging / "half").write_text("x")
                raise RuntimeError("interrupted")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    finally:
        os.umask(old)
