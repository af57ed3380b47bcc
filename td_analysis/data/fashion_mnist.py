"""Fashion-MNIST IDX files: decompression, validation, md5 check and an in-memory cache."""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from . import registry
from .registry import CHUNK_BYTES, DATASETS, FASHION_HINT, DataError, IdxFile
from .roots import fashion_names

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
    return _IdxSpec(registry.FASHION_MNIST_FILES[role], item, info.num_classes)


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
                f.read(CHUNK_BYTES)
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
            f"{', '.join(fashion_names())}). {FASHION_HINT}"
        ) from None
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def idx_cached(key: tuple[str, int, int], spec: _IdxSpec) -> np.ndarray:
    """Decoded, verified IDX content (read-only, shared): decoded and md5-checked once per file
    version (path, mtime, size) and expected content; failures are never cached."""
    return _read_idx(Path(key[0]), spec)


def idx_array(folder: Path, role: str) -> np.ndarray:
    spec = _idx_spec(role)
    return idx_cached(_file_key(folder / spec.file.name), spec)


def fashion_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``(images, labels, key)`` of the ``"train"`` or ``"test"`` files (cached, read-only)."""
    images = idx_array(folder, f"{part}-images")
    labels = idx_array(folder, f"{part}-labels")
    if images.shape[0] != labels.shape[0]:
        names = (
            registry.FASHION_MNIST_FILES[f"{part}-labels"].name,
            registry.FASHION_MNIST_FILES[f"{part}-images"].name,
        )
        raise DataError(
            f"{folder / names[0]}: {labels.shape[0]:,} labels for {images.shape[0]:,} images "
            f"in {names[1]} (counts must match)"
        )
    key = tuple(
        _file_key(folder / registry.FASHION_MNIST_FILES[f"{part}-{kind}"].name)
        for kind in ("images", "labels")
    )
    return images, labels, key
