"""Download the standard pix2pix / CycleGAN datasets (for users who are online), checked and safely extracted.

Usage::

    python -m mtbench.data.download pix2pix facades --root data --sha256 HEX   # -> data/facades/{train,val,test}
    python -m mtbench.data.download cyclegan horse2zebra --root data --sha256 HEX
    python -m mtbench.data.download pix2pix facades --root data --trust-unpinned  # explicit opt-in, unchecked

The archives are the ones the reference scripts fetch
(junyanz/pytorch-CycleGAN-and-pix2pix ``datasets/download_*_dataset.sh``), over https:

* pix2pix: ``https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/NAME.tar.gz``
* CycleGAN: ``https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/NAME.zip``

An archive is untrusted input until checked:

* **Digest.** Its SHA-256 is compared, before anything is extracted, with the
  pinned digest in :data:`SHA256` or with ``--sha256 HEX``. The table is empty:
  mtbench was written offline and pins no digest it could not compute itself.
  Without a digest the download is refused and its SHA-256 printed, so that it
  can be checked against a trusted source and passed with ``--sha256``;
  ``--trust-unpinned`` extracts it unchecked (and says so).
* **Members.** Every member is checked before extraction: no absolute path, no
  ``..`` component, nothing but regular files and folders (no symbolic or hard
  link, no device or FIFO). A tar is also extracted with ``filter="data"``
  where Python has it (3.10.12+, 3.11.4+). A bad member is one
  :class:`DataError` naming it; nothing is written outside ``ROOT``.
* **Atomic.** The archive is extracted into a temporary folder under ``ROOT``
  and its ``NAME/`` folder renamed into place once complete and laid out as
  expected; on any failure the temporary folder and the download are removed.

An existing non-empty ``ROOT/NAME`` is never overwritten (pix2pix and CycleGAN
both have ``facades``, ``maps`` and ``cityscapes``, in different layouts: give
them different roots).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

from mtbench.data.base import DataError
from mtbench.errors import ConfigError

PIX2PIX_DATASETS = ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day")
CYCLEGAN_DATASETS = (
    "horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo", "cezanne2photo",
    "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
)
DATASETS = {"pix2pix": PIX2PIX_DATASETS, "cyclegan": CYCLEGAN_DATASETS}
_URLS = {
    "pix2pix": "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz",
    "cyclegan": "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip",
}
#: Pinned SHA-256 of the archives, ``(kind, name) -> hex digest``. Only digests computed from an archive
#: whose content was checked belong here; none could be computed where mtbench was written (offline).
SHA256: dict[tuple[str, str], str] = {}
#: A folder each layout must have once extracted.
_EXPECTED = {"pix2pix": ("train",), "cyclegan": ("trainA", "trainB")}
_LAYOUT = {"pix2pix": "train/ (and val/, test/)", "cyclegan": "trainA/, trainB/, testA/ and testB/"}
#: Errors of a corrupt or truncated archive (tarfile, gzip, zipfile; an encrypted zip is a RuntimeError).
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError)
#: What ``filter="data"`` raises for a member it refuses (nothing on a Python without the filter).
_FILTER_ERROR = getattr(tarfile, "FilterError", ())
_TIMEOUT_S = 60.0


def dataset_url(kind: str, name: str) -> str:
    """The archive URL of dataset ``name`` of ``kind`` (``"pix2pix"`` or ``"cyclegan"``).

    Raises :class:`DataError` listing the choices for an unknown kind or name.
    """
    if kind not in DATASETS:
        raise DataError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASETS)}")
    if name not in DATASETS[kind]:
        raise DataError(f"unknown {kind} dataset {name!r}; choose one of {', '.join(DATASETS[kind])}")
    return _URLS[kind].format(name=name)


def download_command(kind: str, root: str | os.PathLike) -> str:
    """How to create the dataset folder ``root``, for error messages (the command in backquotes).

    When ``root``'s last component is a known dataset name, the command downloads
    exactly that folder; otherwise it shows the default dataset as an example.
    """
    root = Path(root)
    if root.name in DATASETS.get(kind, ()):
        return f"`python -m mtbench.data.download {kind} {root.name} --root {root.parent}`"
    example = "facades" if kind == "pix2pix" else "horse2zebra"
    return (f"`python -m mtbench.data.download {kind} {example} --root DIR` "
            f"(creates DIR/{example}; then set root to it)")


# -- digests ----------------------------------------------------------------------------------------------------
def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 lowercase hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def expected_sha256(kind: str, name: str, given: str | None) -> str | None:
    """The digest to check: ``given`` (``--sha256``, checked to be 64 hex digits) or the pinned one, or None.

    Raises :class:`ConfigError` for a malformed ``given`` or one that contradicts the pinned digest.
    """
    pinned = SHA256.get((kind, name))
    if given is None:
        return pinned
    digest = given.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"--sha256 must be 64 hex digits, got {given!r:.80}")
    if pinned is not None and digest != pinned:
        raise ConfigError(f"--sha256 {digest} differs from the pinned SHA-256 {pinned} of {kind} {name}; "
                          f"drop --sha256 to use the pinned one")
    return digest


def check_digest(archive: Path, url: str, expected: str | None, trust_unpinned: bool = False) -> str:
    """Compare the archive's SHA-256 with ``expected``; without one, refuse unless ``trust_unpinned``.

    Returns the digest. Raises :class:`DataError` (one line, the digest in it) on a mismatch, or when
    there is nothing to compare with and ``trust_unpinned`` is false.
    """
    digest = sha256_of(archive)
    if expected is None:
        if not trust_unpinned:
            raise DataError(f"no SHA-256 is pinned for {url}; the downloaded archive's SHA-256 is {digest}: "
                            f"check it against a source you trust and rerun with --sha256 {digest} "
                            f"(or --trust-unpinned to extract it unchecked); nothing was extracted")
        print(f"warning: extracting {url} UNCHECKED (--trust-unpinned); its SHA-256 is {digest}", file=sys.stderr)
    elif digest != expected:
        raise DataError(f"SHA-256 mismatch for {url}: got {digest}, expected {expected}; the download is "
                        f"corrupt or not the expected archive; nothing was extracted")
    return digest


# -- members ----------------------------------------------------------------------------------------------------
def _unsafe_path(name: str) -> str | None:
    """Why an archive member name could land outside the extraction folder, or None when it cannot."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "a '..' component"
    return None


def _refuse(archive: str, member: str, reason: str) -> DataError:
    return DataError(f"archive {archive} holds member {member!r}, {reason}; refusing to extract it "
                     f"(a dataset archive needs only files and folders inside it); nothing was extracted")


def check_tar_members(archive: str, members: list[tarfile.TarInfo]) -> None:
    """Refuse (:class:`DataError` naming it) any member with an unsafe path or that is not a file or folder."""
    for m in members:
        reason = _unsafe_path(m.name)
        if reason is None and m.issym():
            reason = f"a symbolic link to {m.linkname!r}"
        elif reason is None and m.islnk():
            reason = f"a hard link to {m.linkname!r}"
        elif reason is None and not (m.isfile() or m.isdir()):
            reason = "a device, FIFO or other special file"
        if reason is not None:
            raise _refuse(archive, m.name, reason)


def check_zip_members(archive: str, members: list[zipfile.ZipInfo]) -> None:
    """Refuse (:class:`DataError` naming it) any member with an unsafe path, or a link or special file."""
    for info in members:
        reason = _unsafe_path(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if reason is None and kind == stat.S_IFLNK:
            reason = "a symbolic link"
        elif reason is None and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            reason = "a device, FIFO or other special file"
        if reason is not None:
            raise _refuse(archive, info.filename, reason)


def _extract_members(archive: Path, dest: Path, label: str) -> None:
    """Check every member of the tar or zip ``archive``, then extract it into ``dest``."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            check_zip_members(label, members)
            zf.extractall(dest, members)
        return
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        check_tar_members(label, members)
        if hasattr(tarfile, "data_filter"):  # a second line of defence where Python has it
            tf.extractall(dest, members, filter="data")
        else:
            tf.extractall(dest, members)


def extract_archive(archive: str | os.PathLike, root: str | os.PathLike, name: str,
                    expected: tuple[str, ...] = (), source: str | None = None) -> Path:
    """Extract the folder ``name/`` of a tar or zip ``archive`` into ``root/name``; returns ``root/name``.

    Every member is checked first (module doc). The archive goes into a temporary folder under
    ``root``; ``name/`` is renamed into place only when complete and holding the ``expected``
    sub-folders. On any failure nothing extracted remains. Raises :class:`DataError` (one line):
    an unsafe member (named), a corrupt archive, no ``name/`` folder, a missing sub-folder, a
    non-empty ``root/name``, or an OS error such as a full disk. ``source`` names the archive in
    the messages (its URL; default: its path).
    """
    archive, root = Path(archive), Path(root)
    label = source or str(archive)
    target = root / name
    _refuse_non_empty(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.extracting-", dir=root))
    try:
        _extract_members(archive, tmp, label)
        got = tmp / name
        if got.is_symlink() or not got.is_dir():
            raise DataError(f"archive {label} holds no folder {name}/; nothing was extracted")
        missing = [d for d in expected if not (got / d).is_dir()]
        if missing:
            raise DataError(f"archive {label} lacks {name}/{', '.join(missing)}; check the archive's layout; "
                            f"nothing was extracted")
        if target.is_dir() and not target.is_symlink():
            target.rmdir()  # empty (checked above); fails if something arrived meanwhile
        os.rename(got, target)
    except DataError:
        raise
    except _FILTER_ERROR as exc:  # filter="data" refused a member the checks above let through
        raise _refuse(label, exc.tarinfo.name, _one_line(exc)) from exc
    except _ARCHIVE_ERRORS as exc:
        raise DataError(f"archive {label} is corrupt or truncated ({type(exc).__name__}: {_one_line(exc)}); "
                        f"download it again; nothing was extracted") from exc
    except OSError as exc:
        raise DataError(f"could not extract {label} into {root} ({_one_line(exc)}); nothing was extracted") \
            from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _refuse_non_empty(target: Path) -> None:
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise DataError(f"{target} already exists and is not empty; not overwriting it "
                        f"(delete it, or choose another --root)")


# -- download ---------------------------------------------------------------------------------------------------
def _fetch(url: str, dest: Path) -> None:
    """Stream ``url`` into the new file ``dest`` (https; the caller checks the digest and removes it)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mtbench"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def download(kind: str, name: str, root: str | os.PathLike = "data", sha256: str | None = None,
             trust_unpinned: bool = False) -> Path:
    """Download dataset ``name`` of ``kind``, check its SHA-256, extract it safely into ``root``; returns ``root/name``.

    Parameters
    ----------
    kind:
        ``"pix2pix"`` (aligned A|B layout ``train/val/test``) or ``"cyclegan"``
        (unaligned ``trainA/trainB/testA/testB``).
    name:
        One of :data:`PIX2PIX_DATASETS` / :data:`CYCLEGAN_DATASETS`.
    root:
        Folder the archive's ``name/`` folder is extracted into (created if needed).
    sha256:
        The archive's expected SHA-256 (64 hex digits); None uses the pinned one (:data:`SHA256`).
    trust_unpinned:
        Extract an archive that has no digest to check, unchecked (a warning says so).

    Raises
    ------
    ConfigError
        A malformed ``sha256``.
    DataError
        Unknown name (lists the choices); ``root/name`` exists and is not empty
        (never overwritten); the download failed (names the URL and says how to
        install it by hand); no digest to check (prints the archive's) or a
        mismatch; an unsafe member or a corrupt archive (see :func:`extract_archive`).
        The downloaded archive is always removed.
    """
    url = dataset_url(kind, name)
    expected = expected_sha256(kind, name, sha256)
    root = Path(root)
    target = root / name
    _refuse_non_empty(target)
    root.mkdir(parents=True, exist_ok=True)
    filename = url.rsplit("/", 1)[-1]
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix="-" + filename, dir=root)  # keeps the suffix
    os.close(fd)
    archive = Path(tmp)
    try:
        print(f"downloading {url}", file=sys.stderr)
        try:
            _fetch(url, archive)
        except (OSError, http.client.HTTPException, ValueError) as exc:  # network, HTTP or disk errors
            raise DataError(f"could not download {url} ({type(exc).__name__}: {_one_line(exc)}); download it by "
                            f"hand, check its SHA-256 and extract it into {root} so that {target} holds "
                            f"{'/'.join(_EXPECTED[kind])}") from exc
        check_digest(archive, url, expected, trust_unpinned)
        return extract_archive(archive, root, name, _EXPECTED[kind], source=url)
    finally:
        archive.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 and one ``error:`` line on failure)."""
    parser = argparse.ArgumentParser(
        prog="python -m mtbench.data.download",
        description="Download a standard pix2pix or CycleGAN dataset into ROOT/NAME (its SHA-256 checked, "
                    "then extracted safely).",
        epilog="pix2pix: " + ", ".join(PIX2PIX_DATASETS) + ". cyclegan: " + ", ".join(CYCLEGAN_DATASETS) + ".",
    )
    parser.add_argument("kind", choices=sorted(DATASETS), help="dataset family")
    parser.add_argument("name", help="dataset name (see below)")
    parser.add_argument("--root", default="data", help="folder to extract into (default: data)")
    parser.add_argument("--sha256", metavar="HEX", default=None,
                        help="the archive's expected SHA-256; checked before anything is extracted")
    parser.add_argument("--trust-unpinned", action="store_true",
                        help="extract an archive with no pinned or given SHA-256, unchecked")
    args = parser.parse_args(argv)
    try:
        target = download(args.kind, args.name, args.root, sha256=args.sha256, trust_unpinned=args.trust_unpinned)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.kind} dataset {args.name!r} is in {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
