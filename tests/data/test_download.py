"""mtbench.data.download: https URLs, SHA-256 checked before extraction, crafted archives refused, atomic extraction.

No network: the download itself (``_fetch``) is replaced by a copy of an archive built in tmp_path.
"""

from __future__ import annotations

import http.client
import io
import stat
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest

from mtbench.data import download as dl
from mtbench.data.base import DataError
from mtbench.errors import ConfigError


# -- archives built in the test --------------------------------------------------------------------------------
def _tar_add(tf: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    if info.isreg():
        tf.addfile(info, io.BytesIO(data))
    else:
        info.size = 0
        tf.addfile(info)


def make_tar(path: Path, extra: list[tuple[str, dict]] = (), name: str = "facades") -> Path:
    """A pix2pix-like tar.gz: name/train/1.jpg, name/val/1.jpg, then the ``extra`` members (name, TarInfo attrs)."""
    with tarfile.open(path, "w:gz") as tf:
        _tar_add(tf, f"{name}/train", type=tarfile.DIRTYPE, mode=0o755)
        _tar_add(tf, f"{name}/train/1.jpg", b"one")
        for member, attrs in extra:
            _tar_add(tf, member, b"pwned", **attrs)
        _tar_add(tf, f"{name}/val/1.jpg", b"two")
    return path


def make_zip(path: Path, extra: list[tuple[str, int]] = (), name: str = "horse2zebra") -> Path:
    """A CycleGAN-like zip: name/trainA/1.jpg, name/trainB/1.jpg, then ``extra`` members (name, st_mode)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/trainA/1.jpg", b"a")
        for member, mode in extra:
            info = zipfile.ZipInfo(member)
            info.external_attr = mode << 16
            zf.writestr(info, b"/etc/passwd" if stat.S_ISLNK(mode) else b"pwned")
        zf.writestr(f"{name}/trainB/1.jpg", b"b")
    return path


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def serve(monkeypatch):
    """serve(archive): the next downloads copy ``archive``; returns the list of URLs asked for."""
    urls: list[str] = []
    source: dict[str, Path] = {}

    def fake_fetch(url: str, dest: Path) -> None:
        urls.append(url)
        dest.write_bytes(source["archive"].read_bytes())

    monkeypatch.setattr(dl, "_fetch", fake_fetch)

    def _serve(archive: Path) -> list[str]:
        source["archive"] = archive
        return urls

    return _serve


# -- crafted archives: nothing outside root, one DataError naming the member -------------------------------------
TAR_ATTACKS = [
    ("../evil", {}, "'..' component"),
    ("facades/../../evil", {}, "'..' component"),
    ("/tmp/mtbench-test-absolute-evil", {}, "absolute path"),
    ("facades/passwd", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "symbolic link"),
    ("facades/up", {"type": tarfile.SYMTYPE, "linkname": "../.."}, "symbolic link"),
    ("facades/hard", {"type": tarfile.LNKTYPE, "linkname": "../outside.txt"}, "hard link"),
    ("facades/hardabs", {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, "hard link"),
    ("facades/dev", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "device"),
    ("facades/fifo", {"type": tarfile.FIFOTYPE}, "FIFO"),
]


@pytest.mark.parametrize("member, attrs, reason", TAR_ATTACKS, ids=[a[0] for a in TAR_ATTACKS])
def test_a_crafted_tar_is_refused_naming_the_member_and_writes_nothing(tmp_path, member, attrs, reason):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "outside.txt").write_text("mine")
    root = outside / "root"
    archive = make_tar(tmp_path / "facades.tar.gz", [(member, attrs)])
    before = tree(tmp_path)
    with pytest.raises(DataError) as err:
        dl.extract_archive(archive, root, "facades", ("train",))
    msg = str(err.value)
    assert repr(member) in msg and reason in msg and "\n" not in msg
    assert tree(tmp_path) == before | {"outside/root"}  # root created, empty: nothing half-extracted anywhere
    assert list(root.iterdir()) == [] and (outside / "outside.txt").read_text() == "mine"
    assert not Path("/tmp/mtbench-test-absolute-evil").exists()


ZIP_ATTACKS = [
    ("../evil", stat.S_IFREG | 0o644, "'..' component"),
    ("horse2zebra/../../evil", stat.S_IFREG | 0o644, "'..' component"),
    ("/tmp/mtbench-test-absolute-evil", stat.S_IFREG | 0o644, "absolute path"),
    ("horse2zebra/passwd", stat.S_IFLNK | 0o777, "symbolic link"),
    ("horse2zebra/fifo", stat.S_IFIFO | 0o644, "FIFO"),
]


@pytest.mark.parametrize("member, mode, reason", ZIP_ATTACKS, ids=[a[0] for a in ZIP_ATTACKS])
def test_a_crafted_zip_is_refused_naming_the_member_and_writes_nothing(tmp_path, member, mode, reason):
    root = tmp_path / "outside" / "root"
    archive = make_zip(tmp_path / "horse2zebra.zip", [(member, mode)])
    with pytest.raises(DataError) as err:
        dl.extract_archive(archive, root, "horse2zebra", ("trainA", "trainB"))
    msg = str(err.value)
    assert repr(member) in msg and reason in msg and "\n" not in msg
    assert tree(tmp_path) == {"horse2zebra.zip", "outside", "outside/root"}
    assert not Path("/tmp/mtbench-test-absolute-evil").exists()


def test_a_crafted_archive_through_download_leaves_nothing(tmp_path, serve):
    root = tmp_path / "data"
    serve(make_tar(tmp_path / "facades.tar.gz", [("../evil", {})]))
    with pytest.raises(DataError, match="'../evil'"):
        dl.download("pix2pix", "facades", root, trust_unpinned=True)
    assert list(root.iterdir()) == [] and not (tmp_path / "evil").exists()


# -- good archives -----------------------------------------------------------------------------------------------
def test_a_good_tar_and_zip_are_extracted_and_the_download_removed(tmp_path, serve, capsys):
    root = tmp_path / "data"
    tar = make_tar(tmp_path / "facades.tar.gz")
    urls = serve(tar)
    assert dl.download("pix2pix", "facades", root, sha256=dl.sha256_of(tar)) == root / "facades"
    assert tree(root) == {"facades", "facades/train", "facades/train/1.jpg", "facades/val", "facades/val/1.jpg"}
    assert (root / "facades" / "val" / "1.jpg").read_bytes() == b"two"
    zipped = make_zip(tmp_path / "horse2zebra.zip")
    serve(zipped)
    (root / "horse2zebra").mkdir()  # an empty folder is fine
    assert dl.download("cyclegan", "horse2zebra", root, sha256=dl.sha256_of(zipped).upper()) == root / "horse2zebra"
    assert (root / "horse2zebra" / "trainB" / "1.jpg").read_bytes() == b"b"
    assert sorted(p.name for p in root.iterdir()) == ["facades", "horse2zebra"]  # no archive, no temp folder left
    assert urls == ["https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz",
                    "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"]


def test_urls_are_https():
    for kind, names in dl.DATASETS.items():
        assert all(dl.dataset_url(kind, n).startswith("https://") for n in names)


# -- SHA-256: verified before extraction; no pinned digest -> refuse unless --sha256 or --trust-unpinned ---------
def test_no_pinned_digest_refuses_and_prints_the_digest(tmp_path, serve, capsys):
    tar = make_tar(tmp_path / "facades.tar.gz")
    digest = dl.sha256_of(tar)
    serve(tar)
    root = tmp_path / "data"
    assert dl.main(["pix2pix", "facades", "--root", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no SHA-256 is pinned") and f"--sha256 {digest}" in err and "--trust-unpinned" in err
    assert list(root.iterdir()) == []  # neither the download nor anything extracted
    assert dl.main(["pix2pix", "facades", "--root", str(root), "--trust-unpinned"]) == 0
    assert "UNCHECKED" in capsys.readouterr().err and (root / "facades" / "train" / "1.jpg").is_file()


def test_a_digest_mismatch_extracts_nothing(tmp_path, serve, capsys):
    serve(make_tar(tmp_path / "facades.tar.gz"))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="SHA-256 mismatch") as err:
        dl.download("pix2pix", "facades", root, sha256="0" * 64, trust_unpinned=True)
    assert "0" * 64 in str(err.value) and list(root.iterdir()) == []
    assert dl.main(["pix2pix", "facades", "--root", str(root), "--sha256", "abc"]) == 1
    assert "--sha256 must be 64 hex digits" in capsys.readouterr().err


def test_a_pinned_digest_is_checked(tmp_path, serve, monkeypatch):
    tar = make_tar(tmp_path / "facades.tar.gz")
    serve(tar)
    monkeypatch.setitem(dl.SHA256, ("pix2pix", "facades"), "1" * 64)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        dl.download("pix2pix", "facades", tmp_path / "a")
    with pytest.raises(ConfigError, match="differs from the pinned"):
        dl.download("pix2pix", "facades", tmp_path / "a", sha256=dl.sha256_of(tar))
    monkeypatch.setitem(dl.SHA256, ("pix2pix", "facades"), dl.sha256_of(tar))
    assert dl.download("pix2pix", "facades", tmp_path / "b") == tmp_path / "b" / "facades"


# -- failures leave nothing half-extracted ------------------------------------------------------------------------
def test_a_truncated_archive_or_a_wrong_layout_leaves_nothing(tmp_path, serve):
    tar = make_tar(tmp_path / "facades.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tar.read_bytes()[: len(tar.read_bytes()) // 2])
    root = tmp_path / "data"
    with pytest.raises(DataError, match="corrupt or truncated"):
        dl.extract_archive(cut, root, "facades", ("train",))
    assert list(root.iterdir()) == []
    with pytest.raises(DataError, match="lacks facades/test"):
        dl.extract_archive(tar, root, "facades", ("train", "test"))
    assert list(root.iterdir()) == []
    with pytest.raises(DataError, match="holds no folder maps/"):
        dl.extract_archive(tar, root, "maps")
    assert list(root.iterdir()) == []


def test_a_full_disk_while_extracting_leaves_nothing(tmp_path, monkeypatch):
    tar = make_tar(tmp_path / "facades.tar.gz")
    root = tmp_path / "data"
    real = tarfile.TarFile.extractall

    def full(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)  # everything written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(DataError, match="No space left on device") as err:
        dl.extract_archive(tar, root, "facades", ("train",))
    assert "\n" not in str(err.value) and list(root.iterdir()) == []


# -- what was there before -----------------------------------------------------------------------------------------
def test_download_unknown_name(serve, tmp_path, capsys):
    urls = serve(make_tar(tmp_path / "facades.tar.gz"))
    with pytest.raises(DataError) as err:
        dl.download("pix2pix", "horse2zebra", tmp_path)
    assert "facades" in str(err.value) and "night2day" in str(err.value)
    assert dl.main(["cyclegan", "zebras", "--root", str(tmp_path)]) == 1
    assert "apple2orange" in capsys.readouterr().err
    assert urls == []


def test_download_refuses_non_empty_target(serve, tmp_path):
    urls = serve(make_tar(tmp_path / "facades.tar.gz"))
    root = tmp_path / "data"
    (root / "facades").mkdir(parents=True)
    (root / "facades" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not overwriting") as err:
        dl.download("pix2pix", "facades", root, trust_unpinned=True)
    assert str(root / "facades") in str(err.value) and urls == []
    (root / "link").symlink_to(tmp_path)  # a link is never extracted through
    with pytest.raises(DataError, match="not overwriting"):
        dl.extract_archive(tmp_path / "facades.tar.gz", root, "link")
    assert (root / "facades" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("exc", [urllib.error.URLError("no route to host"), TimeoutError("timed out"),
                                 http.client.IncompleteRead(b"half", 100), OSError(28, "No space left on device")])
def test_download_network_failure(monkeypatch, tmp_path, exc):
    def offline(url, dest):
        dest.write_bytes(b"half")
        raise exc

    monkeypatch.setattr(dl, "_fetch", offline)
    with pytest.raises(DataError) as err:
        dl.download("cyclegan", "monet2photo", tmp_path, trust_unpinned=True)
    msg = str(err.value)
    assert "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/monet2photo.zip" in msg
    assert "by hand" in msg and str(tmp_path) in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # the partial download is removed


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="this Python's tarfile has no filter='data'")
def test_the_data_filter_is_a_second_line_of_defence(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "check_tar_members", lambda archive, members: None)  # as if the checks missed it
    root = tmp_path / "outside" / "root"
    archive = make_tar(tmp_path / "facades.tar.gz", [("facades/passwd", {"type": tarfile.SYMTYPE,
                                                                          "linkname": "/etc/passwd"})])
    with pytest.raises(DataError, match="'facades/passwd'") as err:
        dl.extract_archive(archive, root, "facades", ("train",))
    assert "\n" not in str(err.value) and list(root.iterdir()) == []
