"""What the data sets are: constants, official files and checksums, errors.

The data set descriptions themselves (:class:`DatasetInfo`, :data:`DATASETS`) live in
:mod:`td_analysis.catalog.datasets` (plain data, importable without numpy or torch) and are
re-exported here. The values tests replace (:data:`FASHION_MNIST_FILES`,
:data:`FASHION_MNIST_MIRRORS`, :data:`SYSTEM_FASHION_MNIST_DIR`) are looked up as
``registry.NAME`` at call time by the modules that use them, so patching them here takes effect
everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from td_analysis.catalog.datasets import (  # noqa: F401  (re-exported: data.X still works)
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

CHUNK_BYTES = 1 << 20
CIFAR_HINT = (
    "Run `td-analysis download`, or set the environment variable "
    f"{DATA_ENV_VAR} (or pass --data-dir) to the folder that contains {BATCHES_DIR}/."
)
FASHION_HINT = (
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
# Registry (the data itself: td_analysis.catalog.datasets)
# --------------------------------------------------------------------------------------------


def check_choice(value: str, valid: Sequence[str], what: str) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid values: {', '.join(valid)}")
