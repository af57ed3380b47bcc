"""Statistics, splits and the public loaders (:func:`load_dataset`, CIFAR-10 entry points)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .cifar10 import cifar_part, load_files_cached
from .fashion_mnist import fashion_part, idx_cached
from .locate import find_dataset
from .registry import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_SPLIT_SEED,
    PREPROCESSINGS,
    SPLITS,
    DatasetInfo,
    check_choice,
    dataset_info,
    holdout_count,
)

_PARTS: dict[str, Callable[[Path, str], tuple[np.ndarray, np.ndarray, tuple]]] = {
    "cifar10": cifar_part,
    "fashion-mnist": fashion_part,
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
    load_files_cached.cache_clear()
    idx_cached.cache_clear()
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
    check_choice(split, SPLITS, "split")
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
    check_choice(split, SPLITS, "split")
    if preprocessing is None:
        preprocessing = info.default_preprocessing
    check_choice(preprocessing, PREPROCESSINGS, "preprocessing")
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
