"""Finding a data set under a root: the CIFAR-10 batches folder (extracting the archive if
needed), the Fashion-MNIST files (root, flat, or the Debian package's copy), downloading on
request."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import registry
from .archive import extract_cifar_archive
from .download import download_cifar10, download_fashion_mnist
from .registry import (
    ARCHIVE_NAME,
    BATCHES_DIR,
    CIFAR10_MD5,
    CIFAR_HINT,
    FASHION_HINT,
    FASHION_MNIST_DIR,
    dataset_info,
)
from .roots import fashion_names, is_batches_dir, looks_like_archive, resolve_data_root


def find_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> Path:
    """The folder holding data set ``name`` (:func:`find_cifar10`, :func:`find_fashion_mnist`)."""
    info = dataset_info(name)
    if info.name == "cifar10":
        return find_cifar10(root, download=download)
    return find_fashion_mnist(root, download=download)


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
        if is_batches_dir(sibling):
            return sibling
        return extract_cifar_archive(path, path.parent, md5=md5)

    # 1. the batches folder itself
    looked.append(path)
    if is_batches_dir(path):
        return path

    # 2. a folder containing it
    candidate = path / BATCHES_DIR
    looked.append(candidate)
    if is_batches_dir(candidate):
        return candidate

    # 3. a folder containing the archive
    archive = path / ARCHIVE_NAME
    looked.append(archive)
    if archive.is_file():
        return extract_cifar_archive(archive, path, md5=md5)

    if download:
        if path.name == BATCHES_DIR or looks_like_archive(path):
            target = path.parent
        else:
            target = path
        return download_cifar10(target, url=url, md5=md5, progress=progress)

    shown = "\n".join(f"  - {p}" for p in looked)
    raise FileNotFoundError(
        f"CIFAR-10 not found. Looked for {BATCHES_DIR}/ or {ARCHIVE_NAME} at:\n{shown}\n"
        f"{CIFAR_HINT}"
    )


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
    names = fashion_names()
    candidates: list[Path] = []
    for folder in (path / FASHION_MNIST_DIR, path, Path(registry.SYSTEM_FASHION_MNIST_DIR)):
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
        f"Fashion-MNIST not found. Looked for {', '.join(names)} in:\n{shown}\n{FASHION_HINT}"
    )
