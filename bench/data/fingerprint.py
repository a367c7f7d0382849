"""Content fingerprints of data read from disk: what a result's identity holds instead of a path.

A data set read from files (`catalog`, `grocery-store`, `esci`, `wands`, `amazon-reviews-2023`)
names the files whose bytes decide it (`DatasetPlugin.data_files`), each under a name that does not
depend on where the data lies (its path relative to the data folder, or its role). The fingerprint
is the SHA-256 of the sorted lines ``name, size, SHA-256 of the bytes``: the same data under two
paths gives the same fingerprint, one changed byte, a renamed image or an added qrels line another.
A generated data set (`synthetic`) names no files; its config is its identity, as before.

Each file is read once: its SHA-256 is kept in a small SQLite table keyed by the absolute path and
reused while the file's size and modification time (ns) are unchanged; a file modified in the two
seconds before hashing began is not kept (a rewrite within one tick of a coarse file-system clock
would keep its time). The table, ``file-hashes.sqlite3``, lies beside the features in the feature
cache folder (the data set's `cache_dir`, else ``$FTBENCH_CACHE_DIR``, else
``~/.cache/ftbench/features``); ``use_cache=False`` reads every file every time. SQLite lets
concurrent runs share it; a table that cannot be opened or written is passed over (every file is
then read).

Hidden files and folders (a leading dot) are never part of a fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..features.cache_dir import default_cache_dir

HASH_CACHE_NAME = "file-hashes.sqlite3"
#: a file modified this recently is hashed but not cached (see the module docstring)
RECENT_NS = 2_000_000_000
#: image files, by suffix (lower case): what the catalog layout and the Grocery Store hold as images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


@dataclass
class DataFiles:
    """The files whose bytes decide a data set.

    `files`: name -> path; the name is what the fingerprint records (a path relative to the data
    folder, or a role such as ``examples``), never the absolute path. `folder`: where the data was
    read (provenance, recorded, not hashed). `location_fields`: the config fields that say where the
    files are (`data_dir`, `cache_dir`, ...): provenance, left out of the result's identity, which
    holds the fingerprint instead."""

    files: Mapping[str, str | Path]
    folder: Path
    location_fields: tuple[str, ...]


def walk_files(root: str | Path, keep: Callable[[str], bool] | None = None, recursive: bool = True) -> dict[str, str]:
    """Regular files under `root` (symbolic links followed, each folder once) as
    {path relative to root, '/'-separated: absolute path}; hidden files and folders are left out,
    and so is any file whose relative name `keep` refuses. Paths are strings: a million `Path`
    objects would cost more than the walk."""
    out: dict[str, str] = {}
    seen_dirs: set[tuple[int, int]] = set()

    def visit(folder: str, prefix: str) -> None:
        try:
            info = os.stat(folder)
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen_dirs:  # a link back up the tree
            return
        seen_dirs.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                name = prefix + entry.name
                if entry.is_dir():
                    if recursive:
                        visit(entry.path, name + "/")
                elif entry.is_file() and (keep is None or keep(name)):
                    out[name] = entry.path

    visit(os.path.abspath(root), "")
    return out


def suffix_filter(suffixes: Iterable[str]) -> Callable[[str], bool]:
    """`keep` for `walk_files`: names ending in one of `suffixes` (case-insensitive)."""
    wanted = tuple(s.lower() for s in suffixes)
    return lambda name: name.lower().endswith(wanted)


@dataclass
class Fingerprint:
    """A data set's content fingerprint and what computing it cost."""

    digest: str  # SHA-256 hex of the sorted (name, size, file SHA-256) lines
    files: int
    bytes: int
    hashed_files: int = 0  # read this time (the others came from the hash cache)
    hashed_bytes: int = 0
    seconds: float = 0.0


class HashCache:
    """SHA-256 of files by (absolute path, size, mtime in ns), in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"
            )
            self._db.commit()
        except (sqlite3.Error, OSError):
            self.close()  # unusable (read-only folder, damaged file): every file is read instead

    @property
    def usable(self) -> bool:
        return self._db is not None

    def known(self, paths: list[str]) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, sha256) of the cached entries among `paths`."""
        if self._db is None or not paths:
            return {}
        wanted = set(paths)
        low, high = min(paths), max(paths)  # their common prefix is everyone's
        cut = next((k for k, (a, b) in enumerate(zip(low, high)) if a != b), min(len(low), len(high)))
        prefix = low if low == high else os.path.dirname(low[: cut + 1])
        try:
            # one range scan under the common folder ('0' follows '/' in byte order)
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, sha256 FROM hashes WHERE path = ? OR (path >= ? AND path < ?)",
                (prefix, prefix.rstrip("/") + "/", prefix.rstrip("/") + "0"),
            ).fetchall()
        except sqlite3.Error:
            return {}
        return {p: (s, m, h) for p, s, m, h in rows if p in wanted}

    def store(self, rows: list[tuple[str, int, int, str]]) -> None:
        if self._db is None or not rows:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error:
            pass  # a cache that cannot be written costs time next run, never a wrong hash

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint(files: Mapping[str, str | Path], cache: HashCache | None = None) -> Fingerprint:
    """The fingerprint of `files` (name -> path); each file's hash from `cache` when its size and
    mtime are those recorded, else read (and recorded). A file that cannot be read is an OSError
    naming it."""
    t0 = time.perf_counter()
    start_ns = time.time_ns()
    stats = {}
    for name, path in files.items():
        try:
            stats[name] = os.stat(path)
        except OSError as exc:
            raise FileNotFoundError(f"data file {path} ({name}) cannot be read: {exc.strerror}") from None
    absolute = {
        name: path if isinstance(path, str) and os.path.isabs(path) else os.path.abspath(path) for name, path in files.items()
    }
    known = cache.known(list(absolute.values())) if cache is not None else {}
    digests: dict[str, str] = {}
    fresh: list[tuple[str, int, int, str]] = []
    hashed_files = hashed_bytes = total = 0
    for name in sorted(files):
        st, where = stats[name], absolute[name]
        total += st.st_size
        entry = known.get(where)
        if entry is not None and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            digests[name] = entry[2]
            continue
        try:
            digests[name] = file_sha256(files[name])
        except OSError as exc:
            raise OSError(f"data file {files[name]} ({name}) cannot be read: {exc.strerror or exc}") from None
        hashed_files += 1
        hashed_bytes += st.st_size
        if st.st_mtime_ns < start_ns - RECENT_NS:
            fresh.append((where, st.st_size, st.st_mtime_ns, digests[name]))
    if cache is not None:
        cache.store(fresh)
    combined = hashlib.sha256()
    for name in sorted(digests):
        combined.update(f"{name}\0{stats[name].st_size}\0{digests[name]}\n".encode("utf-8", "surrogateescape"))
    return Fingerprint(combined.hexdigest(), len(digests), total, hashed_files, hashed_bytes, time.perf_counter() - t0)


def hash_cache_for(config) -> HashCache | None:
    """The hash cache beside the feature cache a data-set config uses (None: `use_cache` is off)."""
    if not getattr(config, "use_cache", True):
        return None
    cache_dir = getattr(config, "cache_dir", "")
    if cache_dir:
        root = Path(cache_dir).expanduser()
    else:
        root = default_cache_dir()
    return HashCache(root / HASH_CACHE_NAME)


def describe_data(plugin, config, memo: dict | None = None) -> dict:
    """The `data` block of a run: {} for a data set decided by its config alone (nothing to hash),
    else its fingerprint, file count and bytes, the folder read (provenance) and the config fields
    that are locations (left out of the identity). `memo` (one sweep's cells, one tuning study)
    fingerprints each data-set config once."""
    files = plugin.data_files(config)
    if files is None:
        return {}
    key = (type(plugin).__qualname__, repr(config))
    if memo is not None and key in memo:
        return dict(memo[key])
    cache = hash_cache_for(config)
    try:
        fp = fingerprint(files.files, cache)
    finally:
        if cache is not None:
            cache.close()
    data = {
        "fingerprint": fp.digest,
        "files": fp.files,
        "bytes": fp.bytes,
        "folder": str(files.folder),
        "location_fields": sorted(files.location_fields),
        "hashed_files": fp.hashed_files,
        "hash_seconds": round(fp.seconds, 4),
    }
    if memo is not None:
        memo[key] = dict(data)
    return data
