"""Data sets as a registry: CIFAR-10 and Fashion-MNIST located, downloaded, verified and loaded.

Every data set is described by a :class:`DatasetInfo` in :data:`DATASETS` (name, image shape
``(C, H, W)``, feature count, classes, split sizes, default preprocessing); code outside this
module asks :func:`dataset_info` instead of naming 3,072 or 784. :func:`load_dataset` returns
``(x float32 (N, C·H·W), y int64 (N,))`` for any registered name:

* ``"cifar10"``: the official python batches ``cifar-10-batches-py/`` (``data_batch_1`` …
  ``data_batch_5``, ``test_batch``), each image a row of 3,072 ``uint8`` in the official
  channel-major order (red 32×32 plane, then green, then blue, each row-major). The batches are
  pickles: they are read by a restricted unpickler that resolves only the numpy globals an array
  needs (no code from a data file is ever run). Default preprocessing ``"standardize"``.
* ``"fashion-mnist"``: the four official gzip-compressed IDX files (``train-images-idx3-ubyte.gz``
  …, :data:`FASHION_MNIST_FILES`), each image a row of 784 ``uint8`` (28×28, row-major). Magic
  numbers, dimensions, sizes and label range are validated and the md5 of the *decompressed*
  content is checked against the official data (so the official files, the Debian package's and
  any re-compressed copy all pass). Default preprocessing ``"unit"`` (÷255).

Where the data lives is never hard-coded: an explicit ``root`` wins, else the environment
variable ``TD_ANALYSIS_DATA``, else a per-user cache folder (:func:`default_data_root`). Under
that root, CIFAR-10 is ``cifar-10-batches-py/`` or the official ``cifar-10-python.tar.gz``
(:func:`find_cifar10`); Fashion-MNIST is a ``fashion-mnist/`` folder or the four files flat in
the root, else the Debian package's copy in ``/usr/share/datasets/fashion-mnist/``
(:func:`find_fashion_mnist`). ``td-analysis download --dataset NAME`` (:func:`download_dataset`)
fetches what is missing from the official address, with the md5 of the downloaded files checked
before they get their final names.

Splits, the same rule for every data set (:func:`split_indices`, ``holdout_fraction=0.2``,
``split_seed=0``):

* ``"train"`` / ``"holdout"``: the first 80% / last 20% of a fixed seeded permutation of the
  official training set (CIFAR-10 40,000 / 10,000; Fashion-MNIST 48,000 / 12,000); disjoint,
  together the whole training set.
* ``"train-full"``: the whole official training set in official order.
* ``"test"``: the official test set (10,000 images for both).

Preprocessing: ``"standardize"`` (per-channel mean/std of the whole official training set),
``"unit"`` (÷255) or ``"raw"`` (0–255 as float). Decoded files are cached in memory per process,
keyed on each file's path, size and mtime, so repeated loads (and the md5 check of 47 MB of
Fashion-MNIST images) cost the decoding once.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import pickle
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ARCHIVE_NAME",
    "BATCHES_DIR",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR10_URL_ENV",
    "CLASS_NAMES",
    "DATASETS",
    "DATASET_NAMES",
    "DATA_ENV_VAR",
    "DEFAULT_HOLDOUT_FRACTION",
    "DEFAULT_SPLIT_SEED",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "FASHION_MNIST_MIRROR_ENV",
    "PREPROCESSINGS",
    "SPLITS",
    "SYSTEM_FASHION_MNIST_DIR",
    "TEST_FILE",
    "TRAIN_FILES",
    "DataError",
    "DatasetInfo",
    "DownloadError",
    "IdxFile",
    "UnsafeArchiveError",
    "channel_stats",
    "cifar10_channel_stats",
    "clear_cache",
    "dataset_info",
    "default_data_root",
    "download_cifar10",
    "download_dataset",
    "download_fashion_mnist",
    "extract_archive",
    "file_md5",
    "find_cifar10",
    "find_dataset",
    "find_fashion_mnist",
    "load_cifar10",
    "load_cifar10_uint8",
    "load_dataset",
    "load_dataset_uint8",
    "resolve_data_root",
    "split_indices",
]

from td_analysis.dataset_registry import (  # noqa: F401  (re-exported: data.X still works)
    BATCHES_DIR,
    CLASS_NAMES,
    DATASET_NAMES,
    DATASETS,
    DEFAULT_HOLDOUT_FRACTION,
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_DIR,
    NUM_CHANNELS,
    DatasetInfo,
    dataset_info,
    holdout_count,
)

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

DATA_ENV_VAR = "TD_ANALYSIS_DATA"
SPLITS: tuple[str, ...] = ("train", "holdout", "train-full", "test")
PREPROCESSINGS: tuple[str, ...] = ("standardize", "unit", "raw")
DEFAULT_SPLIT_SEED = 0

# CIFAR-10 (python version)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_URL_ENV = "TD_ANALYSIS_CIFAR10_URL"  # overrides CIFAR10_URL (a mirror) when set
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"

NUM_CLASSES = len(CLASS_NAMES)
PIXELS_PER_CHANNEL = 32 * 32
NUM_FEATURES = NUM_CHANNELS * PIXELS_PER_CHANNEL  # 3072

# Fashion-MNIST
#: Base addresses tried in order by :func:`download_fashion_mnist` (each + "/" + file name).
FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
FASHION_MNIST_MIRROR_ENV = "TD_ANALYSIS_FASHION_MNIST_MIRROR"  # comma-separated base addresses
#: Where the Debian package ``dataset-fashion-mnist`` installs the four files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class IdxFile:
    """One official Fashion-MNIST file: its name, the md5 of the official ``.gz`` download, and
    the md5 and byte count of its decompressed IDX content (the same for every correct copy)."""

    name: str
    gz_md5: str
    md5: str
    size: int


#: The four official files by role (``"train-images"``, ``"train-labels"``, ``"test-images"``,
#: ``"test-labels"``), checksums from the data set's distribution.
FASHION_MNIST_FILES: Mapping[str, IdxFile] = MappingProxyType(
    {
        "train-images": IdxFile(
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            47_040_016,
        ),
        "train-labels": IdxFile(
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
            "9018921c3c673c538a1fc5bad174d6f9",
            60_008,
        ),
        "test-images": IdxFile(
            "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
            "8181f5470baa50b63fa0f6fddb340f0a",
            7_840_016,
        ),
        "test-labels": IdxFile(
            "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "15d484375f8d13e6eb1aabb0c3f46965",
            10_008,
        ),
    }
)

_CHUNK_BYTES = 1 << 20
_HINT = (
    "Run `td-analysis download`, or set the environment variable "
    f"{DATA_ENV_VAR} (or pass --data-dir) to the folder that contains {BATCHES_DIR}/."
)
_FASHION_HINT = (
    "Run `td-analysis download --dataset fashion-mnist`, install the Debian package "
    f"dataset-fashion-mnist, or set the environment variable {DATA_ENV_VAR} (or pass "
    f"--data-dir) to the folder that contains {FASHION_MNIST_DIR}/."
)


class DataError(ValueError):
    """The data on disk (a batch file, an archive, a download) is corrupt or invalid."""


class UnsafeArchiveError(DataError):
    """An archive member would be written outside the destination folder (or is not allowed)."""


class DownloadError(OSError):
    """The download itself failed (network error, HTTP error, incomplete transfer)."""


# --------------------------------------------------------------------------------------------
# Registry (the data itself: td_analysis.dataset_registry)
# --------------------------------------------------------------------------------------------


def _check_choice(value: str, valid: Sequence[str], what: str) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid values: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    """The data folder used when none is given.

    ``$TD_ANALYSIS_DATA`` if set (and non-empty), else ``$XDG_CACHE_HOME/td_analysis``, else
    ``~/.cache/td_analysis``.
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "td_analysis"


def resolve_data_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` as a :class:`Path` if given (non-empty), else :func:`default_data_root`."""
    if root is None or os.fspath(root) == "":
        return default_data_root()
    return Path(root).expanduser()


def find_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> Path:
    """The folder holding data set ``name`` (:func:`find_cifar10`, :func:`find_fashion_mnist`)."""
    info = dataset_info(name)
    if info.name == "cifar10":
        return find_cifar10(root, download=download)
    return find_fashion_mnist(root, download=download)


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download and verify data set ``name`` into ``root``; return its folder.

    See :func:`download_cifar10` and :func:`download_fashion_mnist`. Without ``force``, valid
    data already in ``root`` is kept and nothing is fetched.
    """
    info = dataset_info(name)
    if info.name == "cifar10":
        return download_cifar10(root, force=force, progress=progress)
    return download_fashion_mnist(root, force=force, progress=progress)


@contextmanager
def _folder_removed_on_error(path: Path) -> Iterator[Path]:
    """Create ``path`` (and missing parents); if the block fails, remove those of them that were
    created here and are still empty, so a failed download leaves no new empty folder behind."""
    created: list[Path] = []
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        created.append(probe)  # deepest first
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (something was kept) or not ours any more
        raise


def _publish(tmp: Path, final: Path) -> None:
    """Give the temporary file ``tmp`` the usual permissions and rename it to ``final``."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600 files
    os.replace(tmp, final)


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex md5 digest of a file (read in chunks)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, out: Any, *, progress: bool, label: str, hint: str) -> str:
    """Stream ``url`` into the open binary file ``out``; return the hex md5 of what was read.

    With ``progress``: :func:`td_analysis.progress.progress_bar` (a byte bar on a terminal,
    plain periodic lines in a log). Errors name ``label`` and ``url`` and end with ``hint``, the
    way out; they never suggest running the download command again (that is what just failed).
    """
    from td_analysis.progress import progress_bar

    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "td-analysis"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with progress_bar(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"Downloading {label}",
                disable=not progress,
            ) as bar:
                while True:
                    chunk = response.read(_CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"Could not download {label} from {url}: HTTP {exc.code} {exc.reason}. {hint}"
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"Could not download {label} from {url}: {reason}. {hint}") from exc
    if total is not None and received != total:
        raise DownloadError(f"Download from {url} is incomplete: got {received} of {total} bytes.")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# CIFAR-10: locate, download, extract
# --------------------------------------------------------------------------------------------


def _looks_like_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".tar.gz", ".tgz", ".tar"))


def _is_batches_dir(path: Path) -> bool:
    """``path`` is (meant to be) a ``cifar-10-batches-py`` folder."""
    if not path.is_dir():
        return False
    if path.name == BATCHES_DIR:
        return True
    return any((path / name).is_file() for name in (*TRAIN_FILES, TEST_FILE))


def _cifar10_url(url: str | None) -> str:
    if url:
        return url
    return os.environ.get(CIFAR10_URL_ENV) or CIFAR10_URL


def find_cifar10(
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    *,
    url: str | None = None,
    md5: str = CIFAR10_MD5,
    progress: bool = True,
) -> Path:
    """Locate (extracting or downloading if needed) the ``cifar-10-batches-py`` folder.

    ``root`` (default :func:`default_data_root`) may be:

    1. the ``cifar-10-batches-py`` folder itself (or any folder holding ``data_batch_*`` /
       ``test_batch`` files);
    2. a folder that contains ``cifar-10-batches-py/``;
    3. a folder that contains the official ``cifar-10-python.tar.gz``: its md5 is verified
       against ``md5`` and it is extracted (safely, atomically) next to itself;
    4. the path of such an archive (extracted into its parent folder, unless a
       ``cifar-10-batches-py`` folder already sits beside it).

    If none applies: with ``download=True`` the archive is fetched from ``url`` (default
    ``$TD_ANALYSIS_CIFAR10_URL``, else :data:`CIFAR10_URL`) into the root folder
    (:func:`download_cifar10`); otherwise :class:`FileNotFoundError` names the paths looked at
    and how to get the data.

    Only the presence of the folder is checked here; the files are validated when loaded.
    """
    path = resolve_data_root(root)
    looked: list[Path] = []

    # 4. the archive path itself
    if path.is_file():
        sibling = path.parent / BATCHES_DIR
        if _is_batches_dir(sibling):
            return sibling
        return _extract_cifar_archive(path, path.parent, md5=md5)

    # 1. the batches folder itself
    looked.append(path)
    if _is_batches_dir(path):
        return path

    # 2. a folder containing it
    candidate = path / BATCHES_DIR
    looked.append(candidate)
    if _is_batches_dir(candidate):
        return candidate

    # 3. a folder containing the archive
    archive = path / ARCHIVE_NAME
    looked.append(archive)
    if archive.is_file():
        return _extract_cifar_archive(archive, path, md5=md5)

    if download:
        if path.name == BATCHES_DIR or _looks_like_archive(path):
            target = path.parent
        else:
            target = path
        return download_cifar10(target, url=url, md5=md5, progress=progress)

    shown = "\n".join(f"  - {p}" for p in looked)
    raise FileNotFoundError(
        f"CIFAR-10 not found. Looked for {BATCHES_DIR}/ or {ARCHIVE_NAME} at:\n{shown}\n{_HINT}"
    )


def _check_md5(path: Path, expected: str) -> None:
    actual = file_md5(path)
    if actual.lower() != expected.lower():
        raise DataError(
            f"{path} has md5 {actual}, expected {expected.lower()}: it is not the official "
            f"{ARCHIVE_NAME} (another file, or a corrupt or incomplete copy). Point --data-dir "
            f"or $TD_ANALYSIS_DATA at the folder holding {BATCHES_DIR}/ or the official archive, "
            "or run `td-analysis download --data-dir <an empty folder>`."
        )


def _fetch_verified(
    url: str, folder: Path, name: str, md5: str, *, progress: bool, label: str, hint: str
) -> Path:
    """Download ``url`` into a hidden temporary file in ``folder`` and return it once its md5 is
    ``md5``; on any failure the temporary file is removed (a mismatch raises DataError naming
    both sums, a transfer error DownloadError naming the address, with ``hint``)."""
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, progress=progress, label=label, hint=hint)
        if actual != md5.lower():
            raise DataError(
                f"Downloaded file from {url} has md5 {actual}, expected {md5.lower()}: the "
                "download is corrupt or the file changed; nothing was kept."
            )
        return tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    md5: str = CIFAR10_MD5,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download, verify and extract CIFAR-10 into ``root``; return the ``cifar-10-batches-py`` path.

    ``root`` (default :func:`default_data_root`) is created if needed (and removed again if the
    download fails and it is still empty). Without ``force``, an existing
    ``root/cifar-10-batches-py`` is returned as is, and an existing
    ``root/cifar-10-python.tar.gz`` with the right md5 is extracted instead of downloaded.

    ``url`` defaults to ``$TD_ANALYSIS_CIFAR10_URL``, else :data:`CIFAR10_URL`. The download
    goes to a hidden temporary file inside ``root`` (a byte progress bar on a terminal when
    ``progress``); its md5 is checked against ``md5`` and only then is it renamed atomically to
    ``cifar-10-python.tar.gz``. Extraction happens in a temporary folder inside ``root`` that is
    renamed into place at the end. So an interrupted or corrupt download never leaves a file
    with the final name nor a half-extracted folder.

    Raises:
        DownloadError: network/HTTP error or incomplete transfer (the message names the URL).
        DataError: md5 mismatch (the message gives expected and actual md5) or a bad archive.
    """
    url = _cifar10_url(url)
    root_path = resolve_data_root(root)
    if root_path.name == BATCHES_DIR:
        root_path = root_path.parent
    batches = root_path / BATCHES_DIR
    archive = root_path / ARCHIVE_NAME
    if not force:
        if _is_batches_dir(batches):
            return batches
        if archive.is_file():
            try:
                return _extract_cifar_archive(archive, root_path, md5=md5)
            except DataError:
                pass  # stale or foreign archive: download a fresh one (replaced atomically)

    with _folder_removed_on_error(root_path):
        tmp = _fetch_verified(
            url,
            root_path,
            ARCHIVE_NAME,
            md5,
            progress=progress,
            label=f"CIFAR-10 ({ARCHIVE_NAME})",
            hint=f"Check the network connection, or put {ARCHIVE_NAME} (or the extracted "
            f"{BATCHES_DIR}/) into {root_path} by hand, or set {DATA_ENV_VAR} (or "
            "--data-dir) to a folder that holds it.",
        )
        try:
            _publish(tmp, archive)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return _extract_cifar_archive(archive, root_path, md5=None, replace=force)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: locate and download
# --------------------------------------------------------------------------------------------


def _fashion_names() -> list[str]:
    return [record.name for record in FASHION_MNIST_FILES.values()]


def find_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Locate (or download) the folder holding the four Fashion-MNIST ``.gz`` files.

    Looked at in this order, the first folder holding all four files wins:

    1. ``root/fashion-mnist/`` (``root`` default :func:`default_data_root`);
    2. ``root`` itself (the files flat in it);
    3. :data:`SYSTEM_FASHION_MNIST_DIR` (``/usr/share/datasets/fashion-mnist``, the Debian
       package ``dataset-fashion-mnist``).

    Else, with ``download=True``, :func:`download_fashion_mnist` fetches them into
    ``root/fashion-mnist/``; otherwise :class:`FileNotFoundError` names the folders looked at,
    which files a partial folder lacks, and how to get the data. Only presence is checked here;
    the content is validated (and md5-verified) when loaded.
    """
    path = resolve_data_root(root)
    names = _fashion_names()
    candidates: list[Path] = []
    for folder in (path / FASHION_MNIST_DIR, path, Path(SYSTEM_FASHION_MNIST_DIR)):
        if folder not in candidates:
            candidates.append(folder)
    lines = []
    for folder in candidates:
        missing = [name for name in names if not (folder / name).is_file()]
        if not missing:
            return folder
        if len(missing) < len(names):
            lines.append(f"  - {folder} (lacks {', '.join(missing)})")
        else:
            lines.append(f"  - {folder}")
    if download:
        return download_fashion_mnist(path, mirrors=mirrors, progress=progress)
    shown = "\n".join(lines)
    raise FileNotFoundError(
        f"Fashion-MNIST not found. Looked for {', '.join(names)} in:\n{shown}\n{_FASHION_HINT}"
    )


def _fashion_mirrors(mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None:
        env = os.environ.get(FASHION_MNIST_MIRROR_ENV, "")
        mirrors = [m for m in env.replace(",", " ").split() if m] or list(FASHION_MNIST_MIRRORS)
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    if not mirrors:
        raise ValueError("no download address (mirror) given for Fashion-MNIST")
    return list(mirrors)


def _download_one(record: IdxFile, folder: Path, mirrors: list[str], progress: bool) -> Path:
    """Fetch ``record`` from the first mirror that serves it with the official ``.gz`` md5;
    return the verified temporary file inside ``folder`` (the caller renames or deletes it)."""
    errors: list[BaseException] = []
    for base in mirrors:
        url = f"{base.rstrip('/')}/{record.name}"
        try:
            return _fetch_verified(
                url,
                folder,
                record.name,
                record.gz_md5,
                progress=progress,
                label=f"Fashion-MNIST ({record.name})",
                hint=f"Check the network connection, or put the four files into {folder} by "
                "hand, install the Debian package dataset-fashion-mnist, or set "
                f"{DATA_ENV_VAR} (or --data-dir) to a folder that holds {FASHION_MNIST_DIR}/.",
            )
        except (DownloadError, DataError) as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError(
        f"Could not download {record.name} from any of {len(mirrors)} addresses: "
        + "; ".join(str(e) for e in errors)
    )


def download_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download and verify the four Fashion-MNIST files into ``root/fashion-mnist/``.

    ``root`` defaults to :func:`default_data_root`; a ``root`` named ``fashion-mnist`` is used
    as the folder itself. ``mirrors`` are base addresses tried in order (default
    ``$TD_ANALYSIS_FASHION_MNIST_MIRROR``, comma-separated, else :data:`FASHION_MNIST_MIRRORS`,
    the official address). Without ``force``, files already there whose decompressed content
    passes validation and the md5 check are kept; only missing or invalid ones are fetched.

    Every file is downloaded to a hidden temporary file (a byte progress bar on a terminal when
    ``progress``) and checked against the official ``.gz`` md5; the files get their final names
    only once all of them arrived, then their decompressed content is verified like any load. A
    failed download keeps nothing, and a folder created for it is removed again.

    Returns the folder. Raises :class:`DownloadError` (network/HTTP, naming the address) or
    :class:`DataError` (md5 mismatch, giving expected and actual).
    """
    path = resolve_data_root(root)
    folder = path if path.name == FASHION_MNIST_DIR else path / FASHION_MNIST_DIR
    roles = list(FASHION_MNIST_FILES)
    needed = []
    for role in roles:
        target = folder / FASHION_MNIST_FILES[role].name
        if not force and target.is_file():
            try:
                _idx_array(folder, role)
                continue
            except DataError:
                pass  # corrupt or foreign: replaced below
        needed.append(role)
    if not needed:
        return folder
    urls = _fashion_mirrors(mirrors)
    with _folder_removed_on_error(folder):
        temps: dict[str, Path] = {}
        try:
            for role in needed:
                temps[role] = _download_one(FASHION_MNIST_FILES[role], folder, urls, progress)
            for role, tmp in temps.items():
                _publish(tmp, folder / FASHION_MNIST_FILES[role].name)
        except BaseException:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
            raise
    for part in ("train", "test"):
        _fashion_part(folder, part)  # decompressed content: validated and md5-checked
    return folder


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


def _extract_cifar_archive(
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
            if not _is_batches_dir(target):  # another process may have won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / BATCHES_DIR


# --------------------------------------------------------------------------------------------
# CIFAR-10: reading and validating batch files (restricted unpickling)
# --------------------------------------------------------------------------------------------

# The only globals a pickled CIFAR-10 batch refers to: numpy's array/dtype reconstruction
# (numpy.core in numpy 1.x pickles, numpy._core in 2.x) and, in protocol-2 pickles of bytes,
# codecs.encode(text, "latin1"). Anything else (os.system, builtins.eval, numpy.load, …) is
# refused before it is even imported.
_SAFE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


def _latin1_encode(text: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in (
        "latin1",
        "latin-1",
    ):
        raise pickle.UnpicklingError(
            f"_codecs.encode with codec {encoding!r} is not allowed (latin1 text only)"
        )
    return text.encode("latin1", errors="strict")


def _numpy_dtype_class(name: str) -> type | None:
    """``numpy.dtypes.<name>`` if it is a dtype class (``Float64DType`` …), else ``None``."""
    dtypes = getattr(np, "dtypes", None)
    cls = getattr(dtypes, name, None) if dtypes is not None and not name.startswith("_") else None
    return cls if isinstance(cls, type) and issubclass(cls, np.dtype) else None


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR-10 batch needs (no code execution).

    Allowed: :data:`_SAFE_GLOBALS`, the dtype classes of ``numpy.dtypes`` and a latin-1-only
    ``_codecs.encode``. Every other global, and persistent ids, raise
    :class:`pickle.UnpicklingError`.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if module == "numpy.dtypes":
            cls = _numpy_dtype_class(name)
            if cls is not None:
                return cls
        elif (module, name) in _SAFE_GLOBALS:
            if module.startswith(("numpy.core.", "numpy._core.")):
                # pickles name numpy.core (numpy 1.x) or numpy._core (2.x): load from this numpy's
                module = f"{_NUMPY_CORE}.{module.split('.', 2)[2]}"
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _missing_file_error(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"CIFAR-10 file {path.name!r} is missing from {path.parent} (expected "
        f"{', '.join(TRAIN_FILES)} and {TEST_FILE}). {_HINT}"
    )


def _read_batch_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one batch pickle; return ``(data uint8 N×3072, labels int64 N)``."""
    if not path.is_file():
        raise _missing_file_error(path)
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="latin1").load()
    except MemoryError:
        raise
    except Exception as exc:  # any unpickling failure means the file is unusable
        raise DataError(
            f"{path} is truncated or not a CIFAR-10 pickle: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(
            f"{path} is not a CIFAR-10 batch: expected a pickled dict, got {type(obj).__name__}"
        )
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise DataError(
            f"{path} is not a CIFAR-10 batch: missing key(s) {missing} "
            f"(found {sorted(map(str, batch))})"
        )
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: 'data' must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must have dtype uint8, got {data.dtype}")
    if data.ndim != 2 or data.shape[1] != NUM_FEATURES:
        raise DataError(
            f"{path}: 'data' must have shape (N, {NUM_FEATURES}) (e.g. 10000×3072), "
            f"got {tuple(data.shape)}"
        )
    if data.shape[0] == 0:
        raise DataError(f"{path}: 'data' contains no images")
    try:
        labels = np.asarray(batch["labels"])
    except Exception as exc:
        raise DataError(f"{path}: 'labels' is not a sequence of integers: {exc}") from exc
    if labels.ndim != 1 or not (
        np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_
    ):
        raise DataError(
            f"{path}: 'labels' must be a flat list of integers, got dtype {labels.dtype} "
            f"and shape {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{path}: {labels.shape[0]} labels for {data.shape[0]} images (counts must match)"
        )
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: labels must be in 0..{NUM_CLASSES - 1}; {int(bad.sum())} are not "
            f"(first at index {i}: {labels[i]})"
        )
    return np.ascontiguousarray(data), labels.astype(np.int64)


def _files_key(folder: Path, names: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """Cache key: resolved path, mtime and size of each file (raises if one is missing)."""
    key = []
    for name in names:
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise _missing_file_error(path) from None
        key.append((str(path.resolve()), st.st_mtime_ns, st.st_size))
    return tuple(key)


@functools.lru_cache(maxsize=4)
def _load_files_cached(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded, validated, concatenated batches (read-only arrays shared by all callers)."""
    parts = [_read_batch_file(Path(path)) for path, _, _ in key]
    data = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    data.flags.writeable = False
    labels.flags.writeable = False
    return data, labels


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: reading and validating IDX files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IdxSpec:
    """What one IDX file must hold: ``item_shape`` per item (``()`` for labels)."""

    file: IdxFile
    item_shape: tuple[int, ...]
    num_classes: int  # labels must lie in 0..num_classes-1 (unused for images)

    @property
    def ndim(self) -> int:
        return 1 + len(self.item_shape)

    @property
    def what(self) -> str:
        return "images" if self.item_shape else "labels"


def _idx_spec(role: str) -> _IdxSpec:
    info = DATASETS["fashion-mnist"]
    item = info.image_shape[1:] if role.endswith("images") else ()
    return _IdxSpec(FASHION_MNIST_FILES[role], item, info.num_classes)


def _read_exact(f: IO[bytes], size: int, path: Path, what: str) -> bytes:
    blob = f.read(size)
    if len(blob) != size:
        raise DataError(
            f"{path} is truncated: {len(blob):,} of {size:,} bytes of {what} after decompression"
        )
    return blob


def _read_idx(path: Path, spec: _IdxSpec) -> np.ndarray:
    """Decompress, validate and md5-check one IDX file: ``(N, H·W)`` uint8 images or ``(N,)``
    int64 labels (read-only).

    IDX: a big-endian magic ``0x000008nd`` (``0x08`` = unsigned bytes, ``nd`` dimensions), the
    ``nd`` dimensions as big-endian uint32, then the bytes. The header is checked before the
    payload is read (so a crafted header cannot make it read more than the official size), the
    stream must end right after the payload, and the md5 of the whole decompressed content must
    be the official one.
    """
    record = spec.file
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            head = _read_exact(f, 4, path, "IDX header")
            magic = int.from_bytes(head, "big")
            expected = 0x0800 | spec.ndim
            if magic != expected:
                raise DataError(
                    f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected:08x} (IDX "
                    f"file of unsigned bytes with {spec.ndim} dimension(s), i.e. {spec.what}): "
                    f"not the Fashion-MNIST {record.name}"
                )
            dims_raw = _read_exact(f, 4 * spec.ndim, path, "IDX dimensions")
            dims = tuple(
                int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(spec.ndim)
            )
            if dims[1:] != spec.item_shape:
                raise DataError(
                    f"{path}: {spec.what} of shape {dims[1:]}, expected {spec.item_shape}"
                )
            count = dims[0]
            per_item = math.prod(spec.item_shape)
            header = 4 + 4 * spec.ndim
            total = header + count * per_item
            if count == 0 or total != record.size:
                official = (record.size - header) // per_item
                raise DataError(
                    f"{path}: the header announces {count:,} {spec.what}, the official "
                    f"{record.name} has {official:,}"
                )
            payload = _read_exact(f, count * per_item, path, spec.what)
            if f.read(1):
                # a corrupt stream often decodes to extra bytes: let gzip's CRC check speak first
                f.read(_CHUNK_BYTES)
                raise DataError(
                    f"{path} has data after the {count:,} {spec.what} its header announces"
                )
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} is truncated or not a valid gzip file: {exc}") from exc
    array = np.frombuffer(payload, dtype=np.uint8)
    if spec.item_shape:
        array = array.reshape(count, per_item)
    else:
        top = int(array.max())
        if top >= spec.num_classes:
            i = int(np.flatnonzero(array >= spec.num_classes)[0])
            raise DataError(
                f"{path}: labels must be in 0..{spec.num_classes - 1}; the first one outside is "
                f"{int(array[i])} at index {i} (the largest is {top})"
            )
    for blob in (head, dims_raw, payload):
        digest.update(blob)
    actual = digest.hexdigest()
    if actual != record.md5:
        raise DataError(
            f"{path}: decompressed content has md5 {actual}, expected {record.md5}: the file is "
            f"corrupt or not the official {record.name}. Replace it (e.g. `td-analysis download "
            "--dataset fashion-mnist --force`)."
        )
    if not spec.item_shape:
        array = array.astype(np.int64)
    array.flags.writeable = False
    return array


def _file_key(path: Path) -> tuple[str, int, int]:
    """Cache key of one file: resolved path, mtime and size; a missing file is named."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Fashion-MNIST file {path.name!r} is missing from {path.parent} (expected "
            f"{', '.join(_fashion_names())}). {_FASHION_HINT}"
        ) from None
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _idx_cached(key: tuple[str, int, int], spec: _IdxSpec) -> np.ndarray:
    """Decoded, verified IDX content (read-only, shared): decoded and md5-checked once per file
    version (path, mtime, size) and expected content; failures are never cached."""
    return _read_idx(Path(key[0]), spec)


def _idx_array(folder: Path, role: str) -> np.ndarray:
    spec = _idx_spec(role)
    return _idx_cached(_file_key(folder / spec.file.name), spec)


def _fashion_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``(images, labels, key)`` of the ``"train"`` or ``"test"`` files (cached, read-only)."""
    images = _idx_array(folder, f"{part}-images")
    labels = _idx_array(folder, f"{part}-labels")
    if images.shape[0] != labels.shape[0]:
        names = (
            FASHION_MNIST_FILES[f"{part}-labels"].name,
            FASHION_MNIST_FILES[f"{part}-images"].name,
        )
        raise DataError(
            f"{folder / names[0]}: {labels.shape[0]:,} labels for {images.shape[0]:,} images "
            f"in {names[1]} (counts must match)"
        )
    key = tuple(
        _file_key(folder / FASHION_MNIST_FILES[f"{part}-{kind}"].name)
        for kind in ("images", "labels")
    )
    return images, labels, key


def _cifar_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``(data, labels, key)`` of the CIFAR-10 training or test batches (cached, read-only)."""
    key = _files_key(folder, TRAIN_FILES if part == "train" else (TEST_FILE,))
    data, labels = _load_files_cached(key)
    return data, labels, key


_PARTS: dict[str, Callable[[Path, str], tuple[np.ndarray, np.ndarray, tuple]]] = {
    "cifar10": _cifar_part,
    "fashion-mnist": _fashion_part,
}


# --------------------------------------------------------------------------------------------
# Statistics, splits and the public loaders
# --------------------------------------------------------------------------------------------

_STATS_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _histogram_stats(data: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and (population) std of uint8 rows ``(N, C·P)``, in 0–255 units
    (float64), from a 256-bin histogram per channel (no float rounding over N·P values).

    Counted two pixels at a time: a channel's adjacent byte pair read as one uint16 falls in one
    of 65,536 bins, and the two 256-bin marginals of those counts are the counts of the pair's
    first and second pixels (either byte order), so their sum is the histogram (6× faster than
    one bin index per pixel: the explorer's first page loads the data in a fresh kernel)."""
    n, per = data.shape[0], data.shape[1] // channels
    even = per - per % 2 if data.dtype == np.uint8 else 0  # pixels counted in pairs
    counts = np.zeros((channels, 256), dtype=np.int64)
    pairs = np.zeros((channels, 65536), dtype=np.int64)
    step = 2048
    for start in range(0, n, step):  # histogram in chunks: exact and memory-light
        block = data[start : start + step].reshape(min(step, n - start), channels, per)
        for c in range(channels):
            if even:
                plane = np.ascontiguousarray(block[:, c, :even]).view(np.uint16)
                pairs[c] += np.bincount(plane.ravel(), minlength=65536)
            rest = block[:, c, even:].astype(np.intp).ravel()  # odd pixel / other dtypes
            counts[c] += np.bincount(rest, minlength=256)[:256]
    pairs = pairs.reshape(channels, 256, 256)
    hist = (counts + pairs.sum(axis=1) + pairs.sum(axis=2)).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    total = hist.sum(axis=1)
    mean = (hist * values).sum(axis=1) / total
    var = (hist * (values - mean[:, None]) ** 2).sum(axis=1) / total
    return mean, np.sqrt(var)


def _train_stats(info: DatasetInfo, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std (0–255, float64) of the whole official training set, cached."""
    data, _, key = _PARTS[info.name](folder, "train")
    cache_key = (info.name, key)
    stats = _STATS_CACHE.get(cache_key)
    if stats is None:
        stats = _histogram_stats(data, info.num_channels)
        _STATS_CACHE[cache_key] = stats
    return stats


def clear_cache() -> None:
    """Forget the in-memory copies of decoded files and channel statistics."""
    _load_files_cached.cache_clear()
    _idx_cached.cache_clear()
    _STATS_CACHE.clear()


def split_indices(
    n: int = 50_000, holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, holdout)`` of a fixed seeded split of ``range(n)``.

    ``perm = numpy.random.default_rng(seed).permutation(n)``; ``holdout`` gets
    ``round(n * holdout_fraction)`` indices: ``train = perm[:n - n_holdout]``,
    ``holdout = perm[n - n_holdout:]`` (both int64, in permutation order, disjoint, together
    ``range(n)``).
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    n_holdout = holdout_count(n, holdout_fraction)
    if not 0 < n_holdout < n:
        raise ValueError(
            f"holdout_fraction={holdout_fraction} of n={n} gives {n_holdout} holdout images; "
            "both parts must be non-empty"
        )
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_train = n - n_holdout
    return perm[:n_train], perm[n_train:]


def _split_arrays(
    info: DatasetInfo, folder: Path, split: str, holdout_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A split's arrays; may be the shared read-only cached arrays themselves (do not modify)."""
    part = _PARTS[info.name]
    if split == "test":
        data, labels, _ = part(folder, "test")
        return data, labels
    data, labels, _ = part(folder, "train")
    if split == "train-full":
        return data, labels
    train_idx, holdout_idx = split_indices(data.shape[0], holdout_fraction, split_seed)
    idx = train_idx if split == "train" else holdout_idx
    return data[idx], labels[idx]


def load_dataset_uint8(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Images as fresh ``uint8`` arrays ``(N, C·H·W)`` and int64 labels ``(N,)`` of a split.

    Arguments as in :func:`load_dataset`; the arrays are copies the caller may modify.
    """
    info = dataset_info(name)
    _check_choice(split, SPLITS, "split")
    folder = find_dataset(info.name, root, download=download)
    data, labels = _split_arrays(info, folder, split, holdout_fraction, split_seed)
    return np.array(data), np.array(labels)  # fresh, writable copies


def channel_stats(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of all official training images, in 0–1 units.

    Exact over every pixel of the training set (population std, ``ddof=0``), e.g. CIFAR-10
    about ``(0.4914, 0.4822, 0.4465)`` / ``(0.2470, 0.2435, 0.2616)``, Fashion-MNIST about
    ``0.2860`` / ``0.3530``. Two float32 tensors of shape ``(C,)``.
    """
    info = dataset_info(name)
    folder = find_dataset(info.name, root, download=download)
    mean, std = _train_stats(info, folder)
    return (
        torch.tensor(mean / 255.0, dtype=torch.float32),
        torch.tensor(std / 255.0, dtype=torch.float32),
    )


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    preprocessing: str | None = None,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> tuple[Tensor, Tensor]:
    """Load a split of data set ``name`` as ``(x float32 (N, C·H·W), y int64 (N,))``.

    Args:
        name: a key of :data:`DATASETS` (``"cifar10"``, ``"fashion-mnist"``).
        split: ``"train"`` (the first ``1 - holdout_fraction`` of a seeded permutation of the
            official training set: CIFAR-10 40,000, Fashion-MNIST 48,000), ``"holdout"`` (the
            rest: 10,000 / 12,000), ``"train-full"`` (the whole training set, official order)
            or ``"test"`` (the official test set, 10,000).
        root: data location (:func:`find_cifar10`, :func:`find_fashion_mnist`); default
            :func:`default_data_root`.
        download: fetch the data if it is not found.
        preprocessing: ``"standardize"`` (``(x - μ_c) / σ_c`` with the per-channel mean and
            std over every pixel of the whole official training set), ``"unit"`` (``x / 255``)
            or ``"raw"`` (0–255 as float); ``None``: the data set's
            :attr:`DatasetInfo.default_preprocessing` (CIFAR-10 ``"standardize"``,
            Fashion-MNIST ``"unit"``).
        holdout_fraction: share of the training set in ``"holdout"``.
        split_seed: seed of the train/holdout permutation (:func:`split_indices`).

    Pixels keep the files' order (channel-major planes, each row-major); a row reshaped to
    ``dataset_info(name).image_shape`` is a CHW image. The tensors are new on every call (safe
    to modify in place).

    Raises:
        ValueError: unknown ``name``/``split``/``preprocessing`` (the message lists the valid
            values).
        FileNotFoundError: data or one of its files is missing (the message says which).
        DataError: a file is corrupt or invalid (the message names file and problem).
    """
    info = dataset_info(name)
    _check_choice(split, SPLITS, "split")
    if preprocessing is None:
        preprocessing = info.default_preprocessing
    _check_choice(preprocessing, PREPROCESSINGS, "preprocessing")
    folder = find_dataset(info.name, root, download=download)
    data, labels = _split_arrays(info, folder, split, holdout_fraction, split_seed)
    x = torch.from_numpy(data.astype(np.float32))  # astype always copies: fresh tensors
    y = torch.from_numpy(labels.astype(np.int64))
    if preprocessing == "unit":
        x.div_(255.0)
    elif preprocessing == "standardize":
        mean, std = _train_stats(info, folder)
        c = info.num_channels
        planes = x.view(x.shape[0], c, -1)
        planes.sub_(torch.tensor(mean, dtype=torch.float32).view(1, c, 1))
        planes.div_(torch.tensor(std, dtype=torch.float32).view(1, c, 1))
    return x, y


# --------------------------------------------------------------------------------------------
# CIFAR-10 entry points (thin calls, unchanged behaviour)
# --------------------------------------------------------------------------------------------


def load_cifar10_uint8(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as fresh ``uint8`` ``(N, 3072)`` and int64 labels: :func:`load_dataset_uint8`."""
    return load_dataset_uint8(
        "cifar10",
        split,
        root=root,
        download=download,
        holdout_fraction=holdout_fraction,
        split_seed=split_seed,
    )


def cifar10_channel_stats(
    root: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[Tensor, Tensor]:
    """CIFAR-10's per-channel (R, G, B) mean and std in 0–1 units: :func:`channel_stats`."""
    return channel_stats("cifar10", root, download)


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    preprocessing: str = "standardize",
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> tuple[Tensor, Tensor]:
    """CIFAR-10 as ``(x float32 (N, 3072), y int64 (N,))``: ``load_dataset("cifar10", …)``.

    ``"train"`` is 40,000 images, ``"holdout"`` 10,000, ``"train-full"`` 50,000, ``"test"``
    10,000; preprocessing ``"standardize"`` by default. See :func:`load_dataset`.
    """
    return load_dataset(
        "cifar10",
        split,
        root=root,
        download=download,
        preprocessing=preprocessing,
        holdout_fraction=holdout_fraction,
        split_seed=split_seed,
    )
