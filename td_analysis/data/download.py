"""Downloads: streamed with a progress bar, md5-verified in a temporary file, then published
atomically (CIFAR-10 archive, the four Fashion-MNIST files)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import registry
from .archive import extract_cifar_archive
from .fashion_mnist import fashion_part, idx_array
from .registry import (
    ARCHIVE_NAME,
    BATCHES_DIR,
    CHUNK_BYTES,
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR10_URL_ENV,
    DATA_ENV_VAR,
    FASHION_MNIST_DIR,
    FASHION_MNIST_MIRROR_ENV,
    DataError,
    DownloadError,
    IdxFile,
    dataset_info,
)
from .roots import is_batches_dir, resolve_data_root


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


def _fetch(url: str, out: Any, *, progress: bool, label: str, hint: str) -> str:
    """Stream ``url`` into the open binary file ``out``; return the hex md5 of what was read.

    With ``progress``: :func:`td_analysis.utils.progress.progress_bar` (a byte bar on a terminal,
    plain periodic lines in a log). Errors name ``label`` and ``url`` and end with ``hint``, the
    way out; they never suggest running the download command again (that is what just failed).
    """
    from td_analysis.utils.progress import progress_bar

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
                    chunk = response.read(CHUNK_BYTES)
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


def _cifar10_url(url: str | None) -> str:
    if url:
        return url
    return os.environ.get(CIFAR10_URL_ENV) or CIFAR10_URL


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
        if is_batches_dir(batches):
            return batches
        if archive.is_file():
            try:
                return extract_cifar_archive(archive, root_path, md5=md5)
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
    return extract_cifar_archive(archive, root_path, md5=None, replace=force)


def _fashion_mirrors(mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None:
        env = os.environ.get(FASHION_MNIST_MIRROR_ENV, "")
        mirrors = [m for m in env.replace(",", " ").split() if m] or list(
            registry.FASHION_MNIST_MIRRORS
        )
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
    roles = list(registry.FASHION_MNIST_FILES)
    needed = []
    for role in roles:
        target = folder / registry.FASHION_MNIST_FILES[role].name
        if not force and target.is_file():
            try:
                idx_array(folder, role)
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
                temps[role] = _download_one(
                    registry.FASHION_MNIST_FILES[role], folder, urls, progress
                )
            for role, tmp in temps.items():
                _publish(tmp, folder / registry.FASHION_MNIST_FILES[role].name)
        except BaseException:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
            raise
    for part in ("train", "test"):
        fashion_part(folder, part)  # decompressed content: validated and md5-checked
    return folder
