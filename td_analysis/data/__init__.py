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

Modules, data flowing one way (each imports only those above it):

* :mod:`.registry`: constants, official files and checksums, errors (data set descriptions from
  :mod:`td_analysis.catalog.datasets`);
* :mod:`.roots`: the data root and what a data set folder looks like;
* :mod:`.archive`: safe tar extraction, the verified CIFAR-10 archive;
* :mod:`.cifar10`, :mod:`.fashion_mnist`: reading and validating the files (cached);
* :mod:`.download`: verified, atomic downloads;
* :mod:`.locate`: ``find_*`` (extracting or downloading on request);
* :mod:`.splits`: statistics, splits, preprocessing and the public loaders.

Everything public is re-exported here (``from td_analysis.data import load_dataset``). To
replace a private function in a test, patch it in its own module (e.g.
``td_analysis.data.cifar10._read_batch_file``); the constants tests replace
(``FASHION_MNIST_FILES``, ``FASHION_MNIST_MIRRORS``, ``SYSTEM_FASHION_MNIST_DIR``) in
:mod:`.registry`.
"""

from __future__ import annotations

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


from .archive import extract_archive, file_md5
from .download import download_cifar10, download_dataset, download_fashion_mnist
from .locate import find_cifar10, find_dataset, find_fashion_mnist
from .registry import (
    ARCHIVE_NAME,
    BATCHES_DIR,
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR10_URL_ENV,
    CLASS_NAMES,
    DATA_ENV_VAR,
    DATASET_NAMES,
    DATASETS,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_SPLIT_SEED,
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRROR_ENV,
    FASHION_MNIST_MIRRORS,
    PREPROCESSINGS,
    SPLITS,
    SYSTEM_FASHION_MNIST_DIR,
    TEST_FILE,
    TRAIN_FILES,
    DataError,
    DatasetInfo,
    DownloadError,
    IdxFile,
    UnsafeArchiveError,
    dataset_info,
)

# public names of the former data.py outside __all__ (explicit re-exports)
from .registry import NUM_CHANNELS as NUM_CHANNELS
from .registry import NUM_CLASSES as NUM_CLASSES
from .registry import NUM_FEATURES as NUM_FEATURES
from .registry import PIXELS_PER_CHANNEL as PIXELS_PER_CHANNEL
from .registry import holdout_count as holdout_count
from .roots import default_data_root, resolve_data_root
from .splits import (
    channel_stats,
    cifar10_channel_stats,
    clear_cache,
    load_cifar10,
    load_cifar10_uint8,
    load_dataset,
    load_dataset_uint8,
    split_indices,
)
