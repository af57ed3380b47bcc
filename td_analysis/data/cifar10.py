"""CIFAR-10 batch files: restricted unpickling, validation and an in-memory cache."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .registry import CIFAR_HINT, NUM_CLASSES, NUM_FEATURES, TEST_FILE, TRAIN_FILES, DataError

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
        f"{', '.join(TRAIN_FILES)} and {TEST_FILE}). {CIFAR_HINT}"
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
def load_files_cached(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded, validated, concatenated batches (read-only arrays shared by all callers)."""
    parts = [_read_batch_file(Path(path)) for path, _, _ in key]
    data = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    data.flags.writeable = False
    labels.flags.writeable = False
    return data, labels


def cifar_part(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``(data, labels, key)`` of the CIFAR-10 training or test batches (cached, read-only)."""
    key = _files_key(folder, TRAIN_FILES if part == "train" else (TEST_FILE,))
    data, labels = load_files_cached(key)
    return data, labels, key
