"""The data-set registry: what other modules may know about a data set, without torch.

:func:`dataset_info` (names, image shapes, class names, split sizes, default preprocessing) is
plain data, so the task registry and the command line's ``--help`` read it before torch is
imported; loading, downloading and preprocessing live in :mod:`td_analysis.data`, which
re-exports every name here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "DATASET_NAMES",
    "dataset_info",
    "holdout_count",
    "DEFAULT_HOLDOUT_FRACTION",
    "BATCHES_DIR",
    "CLASS_NAMES",
    "NUM_CHANNELS",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASS_NAMES",
]

DEFAULT_HOLDOUT_FRACTION = 0.2

# CIFAR-10 (python version)
BATCHES_DIR = "cifar-10-batches-py"
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
NUM_CHANNELS = 3

# Fashion-MNIST
FASHION_MNIST_DIR = "fashion-mnist"
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def holdout_count(n: int, holdout_fraction: float) -> int:
    return int(round(n * holdout_fraction))


@dataclass(frozen=True)
class DatasetInfo:
    """What other modules may know about a data set (never hard-code 3072 or 784).

    Attributes:
        name: registry key, the value of ``--dataset`` (``"cifar10"``, ``"fashion-mnist"``).
        title: display name (``"CIFAR-10"``).
        image_shape: ``(C, H, W)``; a loaded row reshaped to it is a CHW image.
        class_names: label ``i`` is ``class_names[i]``.
        train_size: images in the official training set (split ``"train-full"``).
        test_size: images in the official test set (split ``"test"``).
        default_preprocessing: what :func:`load_dataset` applies when not told.
        folder: name of the data set's folder under the data root.
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    train_size: int
    test_size: int
    default_preprocessing: str
    folder: str

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def num_features(self) -> int:
        """Inputs per image, ``C · H · W`` (3,072 for CIFAR-10, 784 for Fashion-MNIST)."""
        return math.prod(self.image_shape)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def split_sizes(self) -> dict[str, int]:
        """Images per split with the default 80/20 train/holdout split."""
        n_holdout = holdout_count(self.train_size, DEFAULT_HOLDOUT_FRACTION)
        return {
            "train": self.train_size - n_holdout,
            "holdout": n_holdout,
            "train-full": self.train_size,
            "test": self.test_size,
        }


#: The registered data sets by name (read-only).
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "cifar10": DatasetInfo(
            name="cifar10",
            title="CIFAR-10",
            image_shape=(NUM_CHANNELS, 32, 32),
            class_names=CLASS_NAMES,
            train_size=50_000,
            test_size=10_000,
            default_preprocessing="standardize",
            folder=BATCHES_DIR,
        ),
        "fashion-mnist": DatasetInfo(
            name="fashion-mnist",
            title="Fashion-MNIST",
            image_shape=(1, 28, 28),
            class_names=FASHION_MNIST_CLASS_NAMES,
            train_size=60_000,
            test_size=10_000,
            default_preprocessing="unit",
            folder=FASHION_MNIST_DIR,
        ),
    }
)
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; unknown: ValueError listing the valid names."""
    info = DATASETS.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return info
