"""`ftbench data fetch`: download from a loopback HTTP server, checks, and safe extraction
(malicious zip and tar archives must not write outside the destination)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import typer
from ftbench.data.fetch import ArchiveSource, Limits, UnsafeArchiveError, download, fetchable, safe_extract
from ftbench.datasets import DATASETS
from ftbench.datasets.grocery_store import GroceryStore
from typer.testing import CliRunner

# what the grocery-store plugin declares: `ftbench data fetch grocery-store` uses it
fetch_grocery_store = GroceryStore.archive.fetch
find_grocery_root = GroceryStore.archive.find_root

MINI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grocery_store_mini"
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")


@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www over http on 127.0.0.1 (ephemeral port) in a thread."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _github_style_zip(path: Path) -> None:
    """The mini copy laid out like GitHub's archive: GroceryStoreDataset-master/dataset/..."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(MINI.rglob("*")):
            if f.is_file():
                zf.write(f, "GroceryStoreDataset-master/dataset/" + f.relative_to(MINI).as_posix())


@needs_mini
def test_fetch_from_loopback_server_then_build(http_dir, tmp_path):
    www, base = http_dir
    _github_style_zip(www / "master.zip")
    digest = hashlib.sha256((www / "master.zip").read_bytes()).hexdigest()
    dest = tmp_path / "data"
    root = fetch_grocery_store(dest, url=f"{base}/master.zip", sha256=digest)
    assert root == dest / "GroceryStoreDataset-master" / "dataset"
    for rel in ("classes.csv", "train.txt", "iconic-images-and-descriptions/Fruit/Banana/Banana_Iconic.jpg"):
        assert (root / rel).read_bytes() == (MINI / rel).read_bytes()
    assert not (dest / "GroceryStoreDataset.zip").exists()  # archive removed after success
    assert not list(dest.glob(".extract-*"))
    # the loader reads the fetched copy unchanged
    ds = GroceryStore().build(
        GroceryStore.Config(
            data_dir=str(root),
            image_backbone="hash",
            text_backbone="hash",
            max_photos_per_product=1,
            cache_dir=str(tmp_path / "cache"),
        )
    )
    assert ds.catalog.num_items == 12
    # a second fetch reuses the complete copy without downloading (the server file is gone)
    (www / "master.zip").unlink()
    assert fetch_grocery_store(dest, url=f"{base}/master.zip") == root


@needs_mini
def test_fetch_command(http_dir, tmp_path):
    from ftbench.cli import data as data_cmd

    www, base = http_dir
    _github_style_zip(www / "a.zip")
    app = typer.Typer()
    data_cmd.register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["data", "fetch", "grocery-store", "--dest", str(tmp_path / "d"), "--url", f"{base}/a.zip"])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / "d" / "GroceryStoreDataset-master" / "dataset") in res.output
    res = runner.invoke(app, ["data", "fetch", "imagenet"])
    flat = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code != 0 and "unknown data set 'imagenet'" in flat


def test_download_checks_digest_size_and_scheme(http_dir, tmp_path):
    www, base = http_dir
    (www / "blob.bin").write_bytes(b"x" * 5000)
    out = tmp_path / "blob.bin"
    assert download(f"{base}/blob.bin", out) == hashlib.sha256(b"x" * 5000).hexdigest()
    out.unlink()
    with pytest.raises(ValueError, match="differs from the expected"):
        download(f"{base}/blob.bin", out, expected_sha256="0" * 64)
    assert not out.exists() and not (tmp_path / "blob.bin.part").exists()
    with pytest.raises(ValueError, match="above the limit"):
        download(f"{base}/blob.bin", out, limits=Limits(max_download_bytes=1000))
    with pytest.raises(ValueError, match="at least"):
        download(f"{base}/blob.bin", out, limits=Limits(min_download_bytes=10_000))
    with pytest.raises(ValueError, match="only http, https and file"):
        download("ftp://example.org/x.zip", out)
    assert not out.exists()


def test_wrong_layout_is_reported(http_dir, tmp_path):
    www, base = http_dir
    with zipfile.ZipFile(www / "other.zip", "w") as zf:
        zf.writestr("repo-main/README.md", "not the data set")
    with pytest.raises(FileNotFoundError, match="no Grocery Store layout"):
        fetch_grocery_store(tmp_path / "d", url=f"{base}/other.zip", limits=Limits(min_download_bytes=1))
    with pytest.raises(ValueError, match="expected at least 1024"):  # the default minimum size
        fetch_grocery_store(tmp_path / "e", url=f"{base}/other.zip")


def _zip_with(path: Path, name: str, data: bytes = b"evil", symlink: bool = False) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/readme.txt", "fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)


@pytest.mark.parametrize(
    "name, data, symlink, message",
    [
        ("../escaped.txt", b"evil", False, "contains '..'"),
        ("ok/../../escaped.txt", b"evil", False, "contains '..'"),
        ("/tmp/ftbench-escaped.txt", b"evil", False, "absolute path"),
        ("C:/escaped.txt", b"evil", False, "drive letter"),
        ("ok\\..\\..\\escaped.txt", b"evil", False, "backslashes"),
        ("ok/link", b"../../escaped-dir", True, "points outside"),
        ("ok/abs-link", b"/etc", True, "points outside"),
    ],
)
def test_malicious_zip_is_refused_and_writes_nothing(tmp_path, name, data, symlink, message):
    archive = tmp_path / "bad.zip"
    _zip_with(archive, name, data, symlink)
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, dest)
    assert not list(dest.iterdir())  # nothing extracted, not even the harmless member
    assert not (tmp_path / "a" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/ftbench-escaped.txt").exists()


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("ok/readme.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        tf.addfile(member, io.BytesIO(data) if data else None)


def _member(name, kind=tarfile.REGTYPE, link="", size=0):
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, link, size
    return m


@pytest.mark.parametrize(
    "member, data, message",
    [
        (_member("../escaped.txt", size=4), b"evil", "contains '..'"),
        (_member("/abs.txt", size=4), b"evil", "absolute path"),
        (_member("ok/out", tarfile.SYMTYPE, "../../outside"), b"", "points outside"),
        (_member("ok/hard", tarfile.LNKTYPE, "/etc/passwd"), b"", "hard link"),
        (_member("ok/dev", tarfile.CHRTYPE), b"", "special file"),
    ],
)
def test_malicious_tar_is_refused(tmp_path, member, data, message):
    archive = tmp_path / "bad.tar.gz"
    _tar_with(archive, member, data)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, dest)
    assert not list(dest.iterdir())


def test_symlink_then_write_through_it_is_refused(tmp_path):
    """A link that stays inside is allowed, but no member may be written through a link."""
    archive = tmp_path / "trick.tar"
    with tarfile.open(archive, "w") as tf:
        tf.addfile(_member("d", tarfile.DIRTYPE))
        tf.addfile(_member("d/inner-link", tarfile.SYMTYPE, "."))
        evil = _member("d/inner-link/x.txt", size=1)
        tf.addfile(evil, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError, match="through symlink"):
        safe_extract(archive, tmp_path / "dest")


def test_safe_archive_extracts_with_inside_symlink_and_limits(tmp_path):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.txt", "A")
        zf.writestr("top/sub/b.txt", "B")
        link = zipfile.ZipInfo("top/sub/link-to-a")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../a.txt")
    tops = safe_extract(archive, tmp_path / "dest")
    assert tops == [tmp_path / "dest" / "top"]
    assert (tmp_path / "dest" / "top" / "sub" / "link-to-a").read_text() == "A"
    with pytest.raises(UnsafeArchiveError, match="members, above the limit"):
        safe_extract(archive, tmp_path / "d2", Limits(max_members=2))
    with pytest.raises(UnsafeArchiveError, match="bytes uncompressed"):
        safe_extract(archive, tmp_path / "d3", Limits(max_total_bytes=2))


def test_find_grocery_root_depth(tmp_path):
    deep = tmp_path / "x" / "y"
    (deep / "iconic-images-and-descriptions").mkdir(parents=True)
    for name in ("classes.csv", "train.txt", "val.txt", "test.txt"):
        (deep / name).write_text("")
    assert find_grocery_root(tmp_path) == deep
    with pytest.raises(FileNotFoundError):
        find_grocery_root(tmp_path / "x" / "y" / "iconic-images-and-descriptions")


def test_fetch_lists_and_uses_what_data_set_plugins_declare(http_dir, tmp_path, monkeypatch):
    """A plugin with an `archive` is fetchable by name without any edit to the fetch code or the
    command: here a tar.gz with a declared sha256 and its own layout."""
    from ftbench.cli import data as data_cmd
    from ftbench.datasets.base import DatasetPlugin

    www, base = http_dir
    with tarfile.open(www / "toy.tar.gz", "w:gz") as tf:
        for name, text in (("toy-1.0/data/items.csv", "id\n1\n"), ("toy-1.0/data/qrels.tsv", "1\t1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    digest = hashlib.sha256((www / "toy.tar.gz").read_bytes()).hexdigest()

    class Toy(DatasetPlugin):
        archive = ArchiveSource(
            title="Toy", url=f"{base}/toy.tar.gz", archive_name="toy.tar.gz", layout=("items.csv", "qrels.tsv"), sha256=digest
        )

    monkeypatch.setitem(DATASETS._entries, "toy", Toy)
    assert fetchable(DATASETS) == {"grocery-store": GroceryStore.archive, "toy": Toy.archive}
    app = typer.Typer()
    data_cmd.register(app)
    runner = CliRunner()
    listing = runner.invoke(app, ["data", "fetch"])
    assert listing.exit_code == 0 and f"toy              {base}/toy.tar.gz" in listing.output
    assert "grocery-store    https://github.com/marcusklasson/GroceryStoreDataset" in listing.output
    monkeypatch.setenv("FTBENCH_DATA_DIR", str(tmp_path / "cache"))
    res = runner.invoke(app, ["data", "fetch", "toy"])
    assert res.exit_code == 0, res.output
    root = tmp_path / "cache" / "toy" / "toy-1.0" / "data"
    assert res.output.splitlines()[-1] == str(root) and (root / "qrels.tsv").read_text() == "1\t1\n"
    assert not (tmp_path / "cache" / "toy" / "toy.tar.gz").exists()
    # the declared digest is checked
    monkeypatch.setattr(
        Toy,
        "archive",
        ArchiveSource(title="Toy", url=f"{base}/toy.tar.gz", archive_name="toy.tar.gz", layout=("items.csv",), sha256="0" * 64),
    )
    res = runner.invoke(app, ["data", "fetch", "toy", "--dest", str(tmp_path / "other")])
    assert res.exit_code == 2 and "differs from the expected" in " ".join(res.output.split())
    # a registered data set without an archive is named as such
    res = runner.invoke(app, ["data", "fetch", "esci"])
    flat = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code != 0 and "data set 'esci' declares no public archive" in flat and "knows grocery-store, toy" in flat


def test_an_archive_source_needs_a_layout_and_an_archive_file_name():
    with pytest.raises(ValueError, match="Toy: an archive source needs the layout"):
        ArchiveSource(title="Toy", url="https://x/t.zip", archive_name="t.zip", layout=())
    with pytest.raises(ValueError, match="Toy: archive_name 't.rar' is not a zip or tar file name"):
        ArchiveSource(title="Toy", url="https://x/t.rar", archive_name="t.rar", layout=("a",))
