"""Safe tar extraction and the verified, atomic extraction of the CIFAR-10 archive."""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from .registry import (
    ARCHIVE_NAME,
    BATCHES_DIR,
    CHUNK_BYTES,
    DataError,
    UnsafeArchiveError,
)
from .roots import is_batches_dir


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex md5 digest of a file (read in chunks)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    actual = file_md5(path)
    if actual.lower() != expected.lower():
        raise DataError(
            f"{path} has md5 {actual}, expected {expected.lower()}: it is not the official "
            f"{ARCHIVE_NAME} (another file, or a corrupt or incomplete copy). Point --data-dir "
            f"or $TD_ANALYSIS_DATA at the folder holding {BATCHES_DIR}/ or the official archive, "
            "or run `td-analysis download --data-dir <an empty folder>`."
        )


# --------------------------------------------------------------------------------------------
# CIFAR-10: safe extraction
# --------------------------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a tar member that could write outside the extraction folder."""
    name = member.name

    def refuse(why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"Refusing to extract {archive}: member {name!r} {why}.")

    if not name or "\x00" in name:
        raise refuse("has an empty or invalid name")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise refuse("has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise refuse("contains '..' (path traversal)")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise refuse("is a device, FIFO or other special file")
    if member.issym() or member.islnk():
        link = member.linkname
        if not link or link.startswith(("/", "\\")) or (len(link) > 1 and link[1] == ":"):
            raise refuse(f"links to an absolute path {link!r}")
        # symlink targets are relative to the member's folder, hard links to the archive root
        base = posixpath.dirname(name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
        if target == ".." or target.startswith("../") or target.startswith("/"):
            raise refuse(f"links outside the destination ({link!r})")


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Safely extract a tar archive (``.tar``, ``.tar.gz``…) into ``dest``; return ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    symlinks or hard links pointing outside ``dest`` and device/FIFO members are refused with
    :class:`UnsafeArchiveError` (a :class:`DataError`). Extraction then uses ``tarfile``'s
    ``filter="data"`` (where available) into a temporary folder inside ``dest``, and each
    top-level entry is renamed into ``dest`` only once everything was extracted (an existing
    entry of the same name is replaced).
    """
    archive_path = Path(archive)
    dest_path = Path(dest)
    try:
        tf = tarfile.open(archive_path, "r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{archive_path} is not a readable tar archive: {exc}") from exc
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise DataError(f"{archive_path} is truncated or corrupt: {exc}") from exc
        for member in members:
            _check_member(member, archive_path)

        dest_path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest_path, prefix=".extract-"))
        try:
            try:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tf.extractall(tmp, members=members)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise DataError(f"Could not extract {archive_path}: {exc}") from exc
            for entry in sorted(os.listdir(tmp)):
                _move_into_place(tmp / entry, dest_path / entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_path


def _move_into_place(src: Path, dst: Path, *, replace: bool = True) -> None:
    """Rename ``src`` to ``dst``; an existing ``dst`` is replaced (``replace``) or kept."""
    if dst.is_dir() and not dst.is_symlink():
        if not replace:
            return
        trash = Path(tempfile.mkdtemp(dir=dst.parent, prefix=".old-"))
        os.replace(dst, trash / dst.name)
        try:
            os.replace(src, dst)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def extract_cifar_archive(
    archive: Path, root: Path, *, md5: str | None, replace: bool = False
) -> Path:
    """Verify (if ``md5``) and extract the CIFAR-10 archive; return ``root/cifar-10-batches-py``."""
    if md5 is not None:
        _check_md5(archive, md5)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".cifar10-"))
    try:
        extract_archive(archive, staging)
        extracted = staging / BATCHES_DIR
        if not extracted.is_dir():
            raise DataError(f"{archive} does not contain a {BATCHES_DIR}/ folder.")
        target = root / BATCHES_DIR
        try:
            _move_into_place(extracted, target, replace=replace)
        except OSError:
            if not is_batches_dir(target):  # another process may have won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / BATCHES_DIR
