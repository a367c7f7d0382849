"""Download a public data set archive, check it, and extract it without letting any path escape.

A data set plugin declares where its public copy is (`archive = ArchiveSource(...)`: URL, sha256,
archive name, the layout its loader reads); `ftbench data fetch NAME [--dest DIR]` lists and uses
those declarations: it downloads the archive, checks its size (and its sha256 when one is
declared or given), extracts it with `safe_extract`, checks the layout, and returns the folder to
pass as `--data-dir`.

Safe extraction (zip and tar): every member name is checked *before* anything is written:
absolute paths, drive letters, backslashes used as separators, ``..`` components, device files,
hard links and symlinks whose target resolves outside the destination are rejected, as are
archives above a member-count or total-size limit (zip bombs). Members are extracted into a
temporary folder inside the destination that is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination (or is otherwise unsafe)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what a download and its extraction may be: bytes downloaded, members, and the
    total uncompressed size."""

    max_download_bytes: int = 4 << 30
    min_download_bytes: int = 1
    max_members: int = 200_000
    max_total_bytes: int = 8 << 30


def default_data_root() -> Path:
    """``$FTBENCH_DATA_DIR``, else ``$XDG_CACHE_HOME/ftbench/data`` (``~/.cache/ftbench/data``)."""
    env = os.environ.get("FTBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ftbench" / "data"


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | Path,
    limits: Limits = Limits(),
    expected_sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> str:
    """Stream `url` to the file `dest` (via ``dest.part`` and an atomic rename); returns the
    sha256 hex digest. Fails, leaving no `dest`, if the size is outside `limits` or the digest
    differs from `expected_sha256`. `progress(done_bytes, total_bytes_or_None)` is called per
    block. Only http(s) and file URLs are accepted."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"refusing to download {url!r}: only http, https and file URLs are accepted")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:  # noqa: S310 (scheme checked)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limits.max_download_bytes:
                raise ValueError(f"{url}: {total} bytes announced, above the limit of {limits.max_download_bytes}")
            too_much = ValueError(f"{url}: more than {limits.max_download_bytes} bytes, download stopped")
            # done: the byte count so far, read after the loop; the generator got its start value once
            for block, done in _capped_blocks(resp.read, done, limits.max_download_bytes, too_much):  # noqa: B020
                h.update(block)
                out.write(block)
                if progress:
                    progress(done, total)
        if done < limits.min_download_bytes:
            raise ValueError(f"{url}: only {done} bytes downloaded, expected at least {limits.min_download_bytes}")
        digest = h.hexdigest()
        if expected_sha256 and digest != expected_sha256.lower():
            raise ValueError(f"{url}: sha256 {digest} differs from the expected {expected_sha256}")
        os.replace(part, dest)
        return digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


# ---------------------------------------------------------------------------------------------
# Safe extraction
# ---------------------------------------------------------------------------------------------


def _capped_blocks(read: Callable[[int], bytes], done: int, limit: int, too_much: Exception) -> Iterator[tuple[bytes, int]]:
    """The 1 MiB blocks `read` returns, each with the byte count so far (`done` before the first); raises
    `too_much` as soon as the count passes `limit` (a download or an archive's extracted total)."""
    while True:
        block = read(1 << 20)
        if not block:
            return
        done += len(block)
        if done > limit:
            raise too_much
        yield block, done


def _check_name(name: str, archive: Path) -> PurePosixPath:
    """A member name as a relative POSIX path with no ``..``; raises UnsafeArchiveError."""
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member name {name!r} contains a NUL byte")
    if "\\" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} uses backslashes (absolute or traversal on Windows)")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if p.parts and len(p.parts[0]) >= 2 and p.parts[0][1] == ":":
        raise UnsafeArchiveError(f"{archive}: member {name!r} starts with a drive letter")
    if any(part == ".." for part in p.parts):
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    parts = [q for q in p.parts if q not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _inside(root: Path, target: Path) -> bool:
    try:
        target.relative_to(root)
        return True
    except ValueError:
        return False


def _link_target_ok(root: Path, member_rel: PurePosixPath, link: str) -> bool:
    """Does a symlink at `member_rel` pointing to `link` resolve inside `root` (lexically)?"""
    if link.startswith("/") or "\\" in link or (len(link) >= 2 and link[1] == ":"):
        return False
    target = os.path.normpath(os.path.join(str(root), str(member_rel.parent), link))
    return _inside(root, Path(target))


def _plan_zip(zf: zipfile.ZipFile, archive: Path, root: Path, limits: Limits) -> list[tuple[zipfile.ZipInfo, PurePosixPath, str]]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchiveError(f"{archive}: {len(infos)} members, above the limit of {limits.max_members}")
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(f"{archive}: {total} bytes uncompressed, above the limit of {limits.max_total_bytes}")
    plan = []
    for info in infos:
        rel = _check_name(info.filename, archive)
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_ISLNK(mode):
            link = zf.read(info).decode("utf-8", errors="replace")
            if not _link_target_ok(root, rel, link):
                raise UnsafeArchiveError(f"{archive}: symlink {info.filename!r} -> {link!r} points outside the destination")
            plan.append((info, rel, "link:" + link))
        elif stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # 0: no type recorded
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is not a regular file or folder")
        else:
            plan.append((info, rel, "dir" if info.is_dir() else "file"))
    return plan


def _plan_tar(tf: tarfile.TarFile, archive: Path, root: Path, limits: Limits) -> list[tuple[tarfile.TarInfo, PurePosixPath, str]]:
    members = tf.getmembers()
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(f"{archive}: {len(members)} members, above the limit of {limits.max_members}")
    total = sum(m.size for m in members if m.isfile())
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(f"{archive}: {total} bytes uncompressed, above the limit of {limits.max_total_bytes}")
    plan = []
    for m in members:
        rel = _check_name(m.name, archive)
        if m.issym():
            if not _link_target_ok(root, rel, m.linkname):
                raise UnsafeArchiveError(f"{archive}: symlink {m.name!r} -> {m.linkname!r} points outside the destination")
            plan.append((m, rel, "link:" + m.linkname))
        elif m.islnk():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a hard link (not extracted)")
        elif m.isdir():
            plan.append((m, rel, "dir"))
        elif m.isfile():
            plan.append((m, rel, "file"))
        else:
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device, fifo or other special file")
    return plan


class DamagedArchiveError(ValueError):
    """An archive is truncated or corrupt (bad CRC, cut-off compressed stream, bad header)."""


# what zipfile, tarfile and the decompressors raise on a damaged archive
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


def safe_extract(archive: str | Path, dest: str | Path, limits: Limits = Limits()) -> list[Path]:
    """Extract a .zip, .tar, .tar.gz/.tgz, .tar.bz2 or .tar.xz `archive` into folder `dest`.

    All members are checked first (module docstring); on any unsafe member nothing is written.
    Files are written with permissions 0o644 (folders 0o755): no setuid bits, no ownership.
    Symlinks are recreated only when their target stays inside `dest`, and any path whose parent
    is a symlink is refused at write time too. Returns the top-level paths created in `dest`.

    A damaged archive (truncated, bad CRC, corrupt compressed stream) raises `DamagedArchiveError`
    naming it, and nothing is moved into `dest`: a compressed tar stream is read to its end, so
    its checksum is verified, before any member leaves the temporary folder.
    """
    try:
        return _extract(Path(archive), Path(dest), limits)
    except _DAMAGED as exc:
        raise DamagedArchiveError(
            f"{archive}: damaged or truncated archive ({type(exc).__name__}: {exc}); nothing was extracted"
        ) from None


def _extract(archive: Path, dest: Path, limits: Limits) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    name = archive.name.lower()
    opener: zipfile.ZipFile | tarfile.TarFile
    if zipfile.is_zipfile(archive):
        opener, kind = zipfile.ZipFile(archive), "zip"
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")) or tarfile.is_tarfile(archive):
        opener, kind = tarfile.open(archive), "tar"
    else:
        raise DamagedArchiveError(f"{archive}: not a zip or tar archive (or a damaged, truncated one)")
    with opener as arc:
        plan = _plan_zip(arc, archive, root, limits) if kind == "zip" else _plan_tar(arc, archive, root, limits)  # type: ignore[arg-type]  # arc's type follows kind
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
        try:
            written = 0
            for member, rel, what in plan:
                if str(rel) == ".":
                    continue
                target = staging / Path(*rel.parts)
                # refuse writing through a symlink created earlier in this archive
                for parent in list(target.parents)[::-1]:
                    if _inside(staging, parent) and parent != staging and parent.is_symlink():
                        raise UnsafeArchiveError(
                            f"{archive}: member {rel} would be written through symlink {parent.relative_to(staging)}"
                        )
                if what == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if what.startswith("link:"):
                    if target.exists() or target.is_symlink():
                        target.unlink()
                    os.symlink(what[5:], target)
                    continue
                src = arc.open(member) if kind == "zip" else arc.extractfile(member)  # type: ignore[arg-type, call-overload, union-attr]  # arc and member follow kind
                if src is None:
                    raise UnsafeArchiveError(f"{archive}: member {rel} has no data")
                with src, target.open("wb") as out:
                    too_much = UnsafeArchiveError(f"{archive}: more than {limits.max_total_bytes} bytes when extracted")
                    # written: the archive's extracted total so far, carried to the next member
                    for block, written in _capped_blocks(src.read, written, limits.max_total_bytes, too_much):  # noqa: B007, B020
                        out.write(block)
                os.chmod(target, 0o644)
            if kind == "tar":  # read a compressed stream to its end: its CRC is checked there
                fileobj = arc.fileobj  # type: ignore[union-attr]  # a TarFile when kind is tar
                while fileobj is not None and fileobj.read(1 << 20):
                    pass
            tops = []
            for child in sorted(staging.iterdir()):
                final = root / child.name
                if final.exists() or final.is_symlink():
                    if final.is_dir() and not final.is_symlink():
                        shutil.rmtree(final)
                    else:
                        final.unlink()
                os.replace(child, final)
                tops.append(final)
            return tops
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# A data set plugin's public archive
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveSource:
    """How a data set plugin's public copy is fetched (its `archive` class attribute): the archive
    `url`, its `sha256` when the publisher's bytes are fixed (None: a moving branch archive, size
    checked only), the name it is kept under until extracted, the `layout` (names the data folder
    holds, found at most three levels below the destination) and the download `limits`."""

    title: str
    url: str
    archive_name: str
    layout: tuple[str, ...]
    sha256: str | None = None
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if not self.layout:
            raise ValueError(f"{self.title}: an archive source needs the layout its data folder holds")
        if not self.archive_name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            raise ValueError(f"{self.title}: archive_name {self.archive_name!r} is not a zip or tar file name")

    def find_root(self, base: str | Path) -> Path:
        """The folder under `base` (itself, or at most three levels down) holding `layout`."""
        base = Path(base)

        def ok(p: Path) -> bool:
            return all((p / name).exists() for name in self.layout)

        if ok(base):
            return base
        for depth in (1, 2, 3):
            for p in sorted(base.glob("/".join(["*"] * depth))):
                if p.is_dir() and not p.is_symlink() and ok(p):
                    return p
        raise FileNotFoundError(f"no {self.title} layout under {base}: expected a folder with {', '.join(self.layout)}")

    def fetch(
        self,
        dest: str | Path,
        url: str | None = None,
        sha256: str | None = None,
        force: bool = False,
        limits: Limits | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Download, check and extract the archive into `dest`; returns the data folder for
        `--data-dir`. `url`, `sha256` and `limits` replace the declared ones (a mirror, a pinned
        copy). An existing complete copy is reused unless `force`. The archive is kept as
        ``dest/<archive_name>`` until extraction succeeds, then removed."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if not force:
            with contextlib.suppress(FileNotFoundError):
                return self.find_root(dest)
        archive = dest / self.archive_name
        download(url or self.url, archive, limits=limits or self.limits, expected_sha256=sha256 or self.sha256, progress=progress)
        safe_extract(archive, dest)
        root = self.find_root(dest)
        archive.unlink()
        return root


def fetchable(registry) -> dict[str, ArchiveSource]:
    """name -> archive source of every data set plugin in `registry` that declares one."""
    return {name: registry.get(name).archive for name in registry if getattr(registry.get(name), "archive", None)}
