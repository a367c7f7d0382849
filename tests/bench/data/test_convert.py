"""`ftbench data convert` writes the catalog layout whole or not at all: into a hidden folder
beside the destination, renamed into place when complete. An interrupted convert leaves no
destination folder (which the next convert would refuse and `run` would misread) and no leftover.
The round trips of the layout itself are in tests/datasets/test_catalog.py."""

from __future__ import annotations

import os

import ftbench.data.convert as convert_module
import pytest
from ftbench.data.convert import convert_dataset
from ftbench.datasets.catalog import CatalogFolder
from typer.testing import CliRunner

SMALL = {"items": 60, "interactions": 80}


def _interrupt_after(monkeypatch, file_name: str, exc: BaseException) -> None:
    """Make the writer raise `exc` right after it wrote `file_name` (a convert stopped mid-way)."""
    write_lines = convert_module._write_lines

    def writes_then_stops(path, lines):
        write_lines(path, lines)
        if path.name == file_name:
            raise exc

    monkeypatch.setattr(convert_module, "_write_lines", writes_then_stops)


def _read_back(folder):
    return CatalogFolder().build(
        CatalogFolder.Config(data_dir=str(folder), text_backbone="hash", image_backbone="hash", use_cache=False)
    )


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "disk-full"])
def test_an_interrupted_convert_leaves_nothing_and_the_next_one_succeeds(tmp_path, monkeypatch, exc):
    out = tmp_path / "new" / "syn"  # its parent is created for the convert, and removed with it
    with monkeypatch.context() as patch:
        _interrupt_after(patch, "items.jsonl", exc)
        with pytest.raises(type(exc)):
            convert_dataset("synthetic", SMALL, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []

    summary = convert_dataset("synthetic", SMALL, out)
    assert summary["out"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["syn"]  # no hidden staging folder beside it
    assert _read_back(out).catalog.num_items == 60


def test_an_empty_destination_folder_is_replaced_whole(tmp_path, monkeypatch):
    out = tmp_path / "syn"
    out.mkdir()
    with monkeypatch.context() as patch:
        _interrupt_after(patch, "queries.jsonl", KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            convert_dataset("synthetic", SMALL, out)
    assert out.is_dir() and list(out.iterdir()) == []  # the user's empty folder, untouched
    convert_dataset("synthetic", SMALL, out)
    assert (out / "catalog.json").is_file() and (out / "qrels" / "test.tsv").is_file()
    # not mkdtemp's 0700: the layout honours the umask like every file ftbench writes
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~umask


def test_what_a_killed_convert_left_is_removed_by_the_next(tmp_path):
    left = tmp_path / ".syn.k1ll3d"  # the staging folder of a convert killed with SIGKILL
    (left / "qrels").mkdir(parents=True)
    (left / "items.jsonl").write_text('{"id": "half"}\n')
    other = tmp_path / ".other.x"  # another destination's: not ours to remove
    other.mkdir()
    convert_dataset("synthetic", SMALL, tmp_path / "syn")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x", "syn"]


def test_ctrl_c_during_data_convert_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    from ftbench.cli.app import app

    _interrupt_after(monkeypatch, "items.jsonl", KeyboardInterrupt())
    out = tmp_path / "syn"
    res = CliRunner().invoke(
        app, ["data", "convert", "synthetic", "--out", str(out), "--set", "items=60", "--set", "interactions=80"]
    )
    assert res.exit_code == 130, res.output
    assert f"interrupted: nothing was written to {out}" in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []
