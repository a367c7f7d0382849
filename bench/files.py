"""Writing files safely, for every stage: atomic writes, permissions, folders made and cleaned up.

A reader sees a file whole or not at all (`atomic_write*`: a hidden temp file renamed into place),
with the permissions any file the user writes gets (0666 & ~umask, `current_umask`); the leftovers
of a write killed midway are found and removed by the next one (`remove_interrupted_writes`); a
command that fails removes the folders it made and nothing else (`make_folders`,
`remove_created_folders`). The module depends on nothing else in the package, so that features,
data, runs, reports and costs all write through it.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_folders(path: Path, created: list[Path] | None = None) -> list[Path]:
    """Create folder `path` and its missing parents. Each folder made here is appended to
    `created` (outermost first; returned) as soon as it exists, so that a caller can remove
    exactly what it made (`remove_created_folders`), even when a deeper one then failed. A folder
    that another process creates meanwhile is used, not recorded."""
    created = [] if created is None else created
    path = Path(path)
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir():
                continue
            raise
        created.append(folder)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    return created


def remove_created_folders(created: list[Path]) -> None:
    """Remove the folders `make_folders` recorded, innermost first, where they are still empty
    (a folder something was written into stays, and so do its parents)."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            pass


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> None:
    """Write `path` so that readers see the old file or the whole new one, never a part: `write`
    fills a hidden temp file ``.<name>.*.tmp`` in the same folder, which is then renamed over
    `path`. `fsync=False` skips the flush to disk (the feature cache: many small files that can be
    recomputed); a crash can then lose the file but still never expose half of it.

    The one atomic writer of the package: results, reports, cost files and the feature cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; a result is shared like any file the user writes: 0666 & ~umask
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A hidden folder `.<name>.*` beside `target` to fill and then rename onto it (the caller's
    `os.replace`, whose rules for an existing `target` differ between writers), with the umask's
    permissions (mkdtemp makes 0700); removed if anything in the block raises, so a failed or
    interrupted write leaves no half-filled `target`."""
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~current_umask())
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    atomic_write(path, lambda handle: handle.write(data), fsync=fsync)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_interrupted_writes(path: Path) -> list[Path]:
    """Delete what an atomic write of `path` left behind when its process was killed (SIGKILL,
    power loss: no `except` clause runs): hidden temp files ``.<name>.*.tmp`` (`atomic_write_*`)
    and temp folders ``.<name>.*`` (`embeddings_io`, renamed into place when complete). Nothing
    ever reads them. `write_result` and the sweep call this for the cell's own result path, so
    each cell cleans only its own leftovers (shards sharing a folder never touch each other's
    files; two processes writing the *same* result file at once are not supported). Returns what
    was removed."""
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.name.endswith(".tmp"):
            leftover.unlink(missing_ok=True)
        else:
            continue
        removed.append(leftover)
    return removed
