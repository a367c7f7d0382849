"""Content fingerprints of data files (`ftbench.data.fingerprint`): what they cover, and the cache of
file hashes keyed by path, size and modification time."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ftbench.data.fingerprint import HASH_CACHE_NAME, HashCache, describe_data, fingerprint, walk_files
from ftbench.datasets.catalog import CatalogFolder

HOUR_NS = 3600 * 10**9


def _folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "items.jsonl").write_text('{"id": "a", "title": "mug", "image": "images/a.jpg"}\n', encoding="utf-8")
    (root / "images" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("q1\ta\t1\n", encoding="utf-8")
    return root


def _age(root: Path, ns_ago: int = HOUR_NS) -> None:
    """Every file's modification time `ns_ago` in the past (old enough to be cached)."""
    when = os.stat(root).st_mtime_ns - ns_ago
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(when, when))


def _expected_digest(files: dict[str, Path]) -> str:
    """The documented composition: SHA-256 of sorted `name NUL size NUL sha256` lines."""
    combined = hashlib.sha256()
    for name in sorted(files):
        data = Path(files[name]).read_bytes()
        combined.update(f"{name}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return combined.hexdigest()


def test_walk_names_files_by_their_path_in_the_folder_and_skips_hidden_ones(tmp_path):
    root = _folder(tmp_path / "d")
    (root / ".DS_Store").write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.jpg").write_bytes(b"x")
    (root / "images" / "loop").symlink_to(root)  # a link back up the tree is visited once
    files = walk_files(root)
    assert sorted(files) == ["images/a.jpg", "items.jsonl", "qrels/test.tsv"]
    assert fingerprint(files).digest == _expected_digest(files)


def test_same_bytes_under_another_path_give_the_same_fingerprint_and_a_changed_byte_another(tmp_path):
    a = _folder(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    fa, fb = fingerprint(walk_files(a)), fingerprint(walk_files(b))
    assert fa.digest == fb.digest and fa.files == 3 and fa.bytes == fb.bytes
    (b / "qrels" / "test.tsv").write_text("q1\ta\t2\n", encoding="utf-8")  # same size, one byte changed
    assert fingerprint(walk_files(b)).digest != fa.digest
    shutil.rmtree(b)
    shutil.copytree(a, b)
    (b / "images" / "a.jpg").rename(b / "images" / "b.jpg")  # same bytes, another name
    assert fingerprint(walk_files(b)).digest != fa.digest


def test_cached_hashes_are_reused_until_the_size_or_the_mtime_changes(tmp_path):
    root = _folder(tmp_path / "d")
    _age(root)
    cache = HashCache(tmp_path / "cache" / HASH_CACHE_NAME)
    first = fingerprint(walk_files(root), cache)
    assert (first.hashed_files, first.files) == (3, 3)
    again = fingerprint(walk_files(root), cache)
    assert again.hashed_files == 0 and again.digest == first.digest  # every hash from the cache

    qrels = root / "qrels" / "test.tsv"
    before = os.stat(qrels).st_mtime_ns
    qrels.write_text("q1\ta\t2\n", encoding="utf-8")  # same size ...
    os.utime(qrels, ns=(before + 10**9, before + 10**9))  # ... a new mtime (still old enough to cache)
    changed = fingerprint(walk_files(root), cache)
    assert changed.hashed_files == 1 and changed.digest != first.digest
    assert changed.digest == fingerprint(walk_files(root)).digest  # equal to hashing everything afresh

    qrels.write_text("q1\ta\t22\n", encoding="utf-8")  # another size, mtime put back: the size alone tells
    os.utime(qrels, ns=(before + 10**9, before + 10**9))
    resized = fingerprint(walk_files(root), cache)
    assert resized.hashed_files == 1 and resized.digest == fingerprint(walk_files(root)).digest
    cache.close()


def test_a_file_modified_just_now_is_hashed_every_time(tmp_path):
    root = _folder(tmp_path / "d")
    _age(root)
    (root / "qrels" / "test.tsv").write_text("q1\ta\t2\n", encoding="utf-8")  # modified now
    cache = HashCache(tmp_path / HASH_CACHE_NAME)
    assert fingerprint(walk_files(root), cache).hashed_files == 3
    # a rewrite within one tick of a coarse file-system clock would keep its mtime: not cached yet
    assert fingerprint(walk_files(root), cache).hashed_files == 1
    cache.close()


def test_an_unusable_hash_cache_only_costs_time(tmp_path):
    root = _folder(tmp_path / "d")
    (tmp_path / "blocked").mkdir()
    cache = HashCache(tmp_path / "blocked")  # a folder where the SQLite file should be
    assert not cache.usable
    assert fingerprint(walk_files(root), cache).digest == fingerprint(walk_files(root)).digest


def test_the_hash_cache_lies_beside_the_feature_cache_and_use_cache_false_uses_none(tmp_path):
    root = _folder(tmp_path / "d")
    _age(root)
    plugin = CatalogFolder()
    cached = CatalogFolder.Config(data_dir=str(root), cache_dir=str(tmp_path / "features"))
    data = describe_data(plugin, cached)
    assert (tmp_path / "features" / HASH_CACHE_NAME).is_file() and data["hashed_files"] == 3
    assert describe_data(plugin, cached)["hashed_files"] == 0
    uncached = CatalogFolder.Config(data_dir=str(root), cache_dir=str(tmp_path / "other"), use_cache=False)
    assert describe_data(plugin, uncached)["hashed_files"] == 3
    assert not (tmp_path / "other").exists()
    assert describe_data(plugin, uncached)["fingerprint"] == data["fingerprint"]
    assert data["folder"] == str(root.resolve()) and data["location_fields"] == ["cache_dir", "data_dir"]


def test_a_memo_fingerprints_one_data_config_once(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")
    plugin, config = CatalogFolder(), CatalogFolder.Config(data_dir=str(root), use_cache=False)
    memo: dict = {}
    first = describe_data(plugin, config, memo)
    calls = []
    monkeypatch.setattr("ftbench.data.fingerprint.fingerprint", lambda *a, **k: calls.append(a))
    assert describe_data(plugin, config, memo) == first and not calls
