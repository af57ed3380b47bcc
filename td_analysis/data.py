"""CIFAR-10 (python version): locate, download, safely extract, validate and load.

The loader reads the official ``cifar-10-batches-py`` layout (``data_batch_1`` … ``data_batch_5``,
``test_batch``). Every image is a row of 3,072 ``uint8`` values in the official channel-major
order: the red 32×32 plane, then green, then blue, each plane row-major. Returned images keep
that order (a row reshaped to ``(3, 32, 32)`` is a CHW image).

Where the data lives is never hard-coded: an explicit ``root`` argument wins, else the
environment variable ``TD_ANALYSIS_DATA``, else a per-user cache folder (see
:func:`default_data_root`). ``root`` may be the ``cifar-10-batches-py`` folder itself, a folder
that contains it, a folder that contains the official ``cifar-10-python.tar.gz``, or the path of
that archive (see :func:`find_cifar10`).

Splits (see :func:`load_cifar10`):

* ``"train"`` / ``"holdout"``: a fixed, seeded 80/20 split of the 50,000 training images
  (:func:`split_indices`); disjoint, together all 50,000.
* ``"train-full"``: all 50,000 training images in official order.
* ``"test"``: the 10,000 images of ``test_batch``.

Preprocessing: ``"standardize"`` (per-channel mean/std of all 50,000 training images),
``"unit"`` (÷255) or ``"raw"`` (0–255 as float).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import pickle
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ARCHIVE_NAME",
    "BATCHES_DIR",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CLASS_NAMES",
    "DATA_ENV_VAR",
    "PREPROCESSINGS",
    "SPLITS",
    "TEST_FILE",
    "TRAIN_FILES",
    "DataError",
    "DownloadError",
    "UnsafeArchiveError",
    "cifar10_channel_stats",
    "clear_cache",
    "default_data_root",
    "download_cifar10",
    "extract_archive",
    "file_md5",
    "find_cifar10",
    "load_cifar10",
    "load_cifar10_uint8",
    "resolve_data_root",
    "split_indices",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
DATA_ENV_VAR = "TD_ANALYSIS_DATA"
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
SPLITS: tuple[str, ...] = ("train", "holdout", "train-full", "test")
PREPROCESSINGS: tuple[str, ...] = ("standardize", "unit", "raw")

NUM_CLASSES = len(CLASS_NAMES)
NUM_CHANNELS = 3
PIXELS_PER_CHANNEL = 32 * 32
NUM_FEATURES = NUM_CHANNELS * PIXELS_PER_CHANNEL  # 3072

_CHUNK_BYTES = 1 << 20
_HINT = (
    "Run `td-analysis download`, or set the environment variable "
    f"{DATA_ENV_VAR} (or pass --data-dir) to the folder that contains {BATCHES_DIR}/."
)


class DataError(ValueError):
    """The data on disk (a batch file, an archive, a download) is corrupt or invalid."""


class UnsafeArchiveError(DataError):
    """An archive member would be written outside the destination folder (or is not allowed)."""


class DownloadError(OSError):
    """The download itself failed (network error, HTTP error, incomplete transfer)."""


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


def find_cifar10(
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    *,
    url: str = CIFAR10_URL,
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

    If none applies: with ``download=True`` the archive is fetched from ``url`` into the root
    folder (:func:`download_cifar10`); otherwise :class:`FileNotFoundError` names the paths looked
    at and how to get the data.

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


# --------------------------------------------------------------------------------------------
# Download and extraction
# --------------------------------------------------------------------------------------------


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex md5 digest of a file (read in chunks)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    actual = file_md5(path)
    if actual.lower() != expected.lower():
        raise DataError(
            f"{path} has md5 {actual}, expected {expected.lower()}: the file is corrupt, "
            f"incomplete or not the official {ARCHIVE_NAME}. Delete it and run "
            "`td-analysis download` again."
        )


def download_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download, verify and extract CIFAR-10 into ``root``; return the ``cifar-10-batches-py`` path.

    ``root`` (default :func:`default_data_root`) is created if needed. Without ``force``, an
    existing ``root/cifar-10-batches-py`` is returned as is, and an existing
    ``root/cifar-10-python.tar.gz`` with the right md5 is extracted instead of downloaded.

    The download goes to a hidden temporary file inside ``root`` (a tqdm byte progress bar shows
    the transfer when ``progress``); its md5 is checked against ``md5`` and only then is it renamed
    atomically to ``cifar-10-python.tar.gz``. Extraction happens in a temporary folder inside
    ``root`` that is renamed into place at the end. So an interrupted or corrupt download never
    leaves a file with the final name nor a half-extracted folder.

    Raises:
        DownloadError: network/HTTP error or incomplete transfer (the message names the URL).
        DataError: md5 mismatch (the message gives expected and actual md5) or a bad archive.
    """
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
    root_path.mkdir(parents=True, exist_ok=True)

    fd, tmp_name = tempfile.mkstemp(dir=root_path, prefix=f".{ARCHIVE_NAME}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, progress=progress)
        if actual != md5.lower():
            raise DataError(
                f"Downloaded file from {url} has md5 {actual}, expected {md5.lower()}: the "
                "download is corrupt or the file changed; nothing was kept."
            )
        os.replace(tmp, archive)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _extract_cifar_archive(archive, root_path, md5=None, replace=force)


def _fetch(url: str, out: Any, *, progress: bool) -> str:
    """Stream ``url`` into the open binary file ``out``; return the hex md5 of what was read."""
    from tqdm.auto import tqdm

    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "td-analysis"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"Downloading {ARCHIVE_NAME}",
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
            f"Could not download CIFAR-10 from {url}: HTTP {exc.code} {exc.reason}. {_HINT}"
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"Could not download CIFAR-10 from {url}: {reason}. Check the network connection, "
            f"or download {ARCHIVE_NAME} by hand into the data folder. {_HINT}"
        ) from exc
    if total is not None and received != total:
        raise DownloadError(f"Download from {url} is incomplete: got {received} of {total} bytes.")
    return digest.hexdigest()


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
# Reading and validating batch files
# --------------------------------------------------------------------------------------------

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
        ("_codecs", "encode"),
    }
)


_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR-10 batch needs (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in _SAFE_GLOBALS or (
            module == "numpy.dtypes" and name.endswith("DType")
        )
        if not allowed:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        if module.startswith(("numpy.core.", "numpy._core.")):
            # pickles name numpy.core (numpy 1.x) or numpy._core (2.x): load from this numpy's
            module = f"{_NUMPY_CORE}.{module.split('.', 2)[2]}"
        return super().find_class(module, name)


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


@functools.lru_cache(maxsize=4)
def _channel_stats_cached(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and (population) std of the batches, in 0–255 units (float64)."""
    data, _ = _load_files_cached(key)
    n = data.shape[0]
    offsets = (np.arange(NUM_CHANNELS, dtype=np.intp) * 256)[None, :, None]
    counts = np.zeros(NUM_CHANNELS * 256, dtype=np.int64)
    step = 2048
    for start in range(0, n, step):  # histogram in chunks: exact and memory-light
        block = data[start : start + step].reshape(-1, NUM_CHANNELS, PIXELS_PER_CHANNEL)
        idx = block.astype(np.intp) + offsets
        counts += np.bincount(idx.ravel(), minlength=NUM_CHANNELS * 256)
    hist = counts.reshape(NUM_CHANNELS, 256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    total = hist.sum(axis=1)
    mean = (hist * values).sum(axis=1) / total
    var = (hist * (values - mean[:, None]) ** 2).sum(axis=1) / total
    return mean, np.sqrt(var)


def clear_cache() -> None:
    """Forget the in-memory copies of decoded batches and channel statistics."""
    _load_files_cached.cache_clear()
    _channel_stats_cached.cache_clear()


def _check_choice(value: str, valid: Sequence[str], what: str) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid values: {', '.join(valid)}")


def split_indices(
    n: int = 50_000, holdout_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, holdout)`` of a fixed seeded split of ``range(n)``.

    ``perm = numpy.random.default_rng(seed).permutation(n)``; ``holdout`` gets
    ``round(n * holdout_fraction)`` indices: ``train = perm[:n - n_holdout]``,
    ``holdout = perm[n - n_holdout:]`` (both int64, in permutation order, disjoint, together
    ``range(n)``).
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    n_holdout = int(round(n * holdout_fraction))
    if not 0 < n_holdout < n:
        raise ValueError(
            f"holdout_fraction={holdout_fraction} of n={n} gives {n_holdout} holdout images; "
            "both parts must be non-empty"
        )
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_train = n - n_holdout
    return perm[:n_train], perm[n_train:]


def load_cifar10_uint8(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    *,
    holdout_fraction: float = 0.2,
    split_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Images as fresh ``uint8`` arrays ``(N, 3072)`` and int64 labels ``(N,)`` of a split.

    Arguments as in :func:`load_cifar10`. Decoded files are cached in memory per folder (keyed on
    the files' paths, mtimes and sizes); the returned arrays are copies the caller may modify.
    """
    _check_choice(split, SPLITS, "split")
    folder = find_cifar10(root, download=download)
    data, labels = _split_arrays(folder, split, holdout_fraction, split_seed)
    return np.array(data), np.array(labels)  # fresh, writable copies


def _split_arrays(
    folder: Path, split: str, holdout_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A split's arrays; may be the shared read-only cached arrays themselves (do not modify)."""
    if split == "test":
        return _load_files_cached(_files_key(folder, (TEST_FILE,)))
    data, labels = _load_files_cached(_files_key(folder, TRAIN_FILES))
    if split == "train-full":
        return data, labels
    train_idx, holdout_idx = split_indices(data.shape[0], holdout_fraction, split_seed)
    idx = train_idx if split == "train" else holdout_idx
    return data[idx], labels[idx]


def cifar10_channel_stats(
    root: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[Tensor, Tensor]:
    """Per-channel (R, G, B) mean and std of all training images, in 0–1 units.

    Computed exactly over all pixels of ``data_batch_1..5`` (population std, ``ddof=0``); about
    ``(0.4914, 0.4822, 0.4465)`` and ``(0.2470, 0.2435, 0.2616)`` for CIFAR-10. Returned as two
    float32 tensors of shape ``(3,)``.
    """
    folder = find_cifar10(root, download=download)
    mean, std = _channel_stats_cached(_files_key(folder, TRAIN_FILES))
    return (
        torch.tensor(mean / 255.0, dtype=torch.float32),
        torch.tensor(std / 255.0, dtype=torch.float32),
    )


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    preprocessing: str = "standardize",
    *,
    holdout_fraction: float = 0.2,
    split_seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Load a CIFAR-10 split as ``(x float32 (N, 3072), y int64 (N,))``.

    Args:
        root: data location (see :func:`find_cifar10`); default :func:`default_data_root`.
        split: ``"train"`` (first ``1 - holdout_fraction`` of a seeded permutation of the 50,000
            training images, 40,000 by default), ``"holdout"`` (the rest, 10,000),
            ``"train-full"`` (all 50,000, official order) or ``"test"`` (10,000).
        download: fetch the data if it is not found.
        preprocessing: ``"standardize"`` (subtract the per-channel mean, divide by the
            per-channel std, both from all 50,000 training images), ``"unit"`` (÷255) or
            ``"raw"`` (0–255 as float).
        holdout_fraction: share of the training images in ``"holdout"``.
        split_seed: seed of the train/holdout permutation (:func:`split_indices`).

    Pixels keep the official channel-major order (R plane, G plane, B plane; 1,024 values each).
    The tensors are new on every call (safe to modify in place).

    Raises:
        ValueError: unknown ``split``/``preprocessing`` (the message lists the valid values).
        FileNotFoundError: data or a batch file is missing (the message says which).
        DataError: a batch file is corrupt or invalid (the message names file and problem).
    """
    _check_choice(split, SPLITS, "split")
    _check_choice(preprocessing, PREPROCESSINGS, "preprocessing")
    folder = find_cifar10(root, download=download)
    data, labels = _split_arrays(folder, split, holdout_fraction, split_seed)
    x = torch.from_numpy(data.astype(np.float32))  # astype always copies: fresh tensors
    y = torch.from_numpy(labels.astype(np.int64))
    if preprocessing == "unit":
        x.div_(255.0)
    elif preprocessing == "standardize":
        mean, std = _channel_stats_cached(_files_key(folder, TRAIN_FILES))
        planes = x.view(-1, NUM_CHANNELS, PIXELS_PER_CHANNEL)
        planes.sub_(torch.tensor(mean, dtype=torch.float32).view(1, NUM_CHANNELS, 1))
        planes.div_(torch.tensor(std, dtype=torch.float32).view(1, NUM_CHANNELS, 1))
    return x, y
