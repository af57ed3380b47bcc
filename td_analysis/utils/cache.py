"""On-disk cache of heavy results (Hessians, coadaptation matrices), keyed by content.

The key is a SHA-256 over the model's parameters and buffers (bytes), the data (bytes), the
call's arguments and :func:`code_version` (the package version and a hash of the package's
source), so a changed model, data set or implementation never reuses a stale result.  Each entry
stores a SHA-256 checksum of its payload and its full key; an entry whose payload does not match
its checksum (zeroed, truncated, tampered with) or whose key differs is deleted and recomputed,
never used.  Entries are written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from td_analysis.utils.io import atomic_open

if TYPE_CHECKING:  # torch only where a cache entry is made or read: default_cache_dir is light
    from torch import Tensor

__all__ = ["default_cache_dir", "fingerprint", "cached", "code_version", "CACHE_FORMAT"]

CACHE_FORMAT = "td_analysis.cache/2"


@functools.cache
def code_version() -> str:
    """``<package version>+<first 16 hex digits of a SHA-256 over the package's .py files>``.

    Part of every cache key: a change to the code that computes a cached result (a fix to the
    maths) makes the old entries unreachable.
    """
    import td_analysis

    __version__ = td_analysis.__version__
    package = Path(td_analysis.__file__).resolve().parent  # every folder of the package
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:16]}"


def default_cache_dir() -> Path:
    """``$TD_ANALYSIS_CACHE``, else ``$XDG_CACHE_HOME/td_analysis/results`` (``~/.cache``).

    The one cache folder of ``reproduce``, ``explore`` and the notebooks (they all call this):
    the same Hessian is never stored twice."""
    if os.environ.get("TD_ANALYSIS_CACHE"):
        return Path(os.environ["TD_ANALYSIS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "td_analysis" / "results"


def _update(h: Any, obj: Any) -> None:
    import torch
    from torch import Tensor, nn

    if isinstance(obj, nn.Module):
        for name, t in [*obj.state_dict().items()]:
            h.update(name.encode())
            _update(h, t)
    elif isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}".encode())
        for item in obj:
            _update(h, item)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _update(h, obj[k])
    else:
        h.update(json.dumps(obj, default=str, sort_keys=True).encode())


def _storable(value: Any) -> bool:
    from torch import Tensor

    if isinstance(value, Tensor):
        return True
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items()
    )


def fingerprint(*parts: Any) -> str:
    """Hex SHA-256 of models (their state), tensors (their bytes) and JSON-able arguments."""
    h = hashlib.sha256()
    for part in parts:
        _update(h, part)
    return h.hexdigest()


def cached(
    name: str,
    compute: Callable[[], Tensor | dict[str, Tensor]],
    *parts: Any,
    cache_dir: str | Path | None = None,
    enabled: bool = True,
) -> Tensor | dict[str, Tensor]:
    """Return ``compute()``, loading it from ``cache_dir/name-<key>.pt`` if already there.

    ``parts`` (model, inputs, targets, arguments…) define the key.  ``enabled=False`` always
    computes and never writes.
    """
    import torch

    if not enabled:
        return compute()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = fingerprint(name, code_version(), *parts)
    path = folder / f"{name}-{key[:24]}.pt"
    if path.is_file():
        value = _load_entry(path, key)
        if value is not None:
            return value
        path.unlink(missing_ok=True)  # corrupt, tampered with or foreign: recompute
    value = compute()
    if not _storable(value):
        raise TypeError(
            f"cached({name!r}): compute() returned {type(value).__name__}; only a tensor or a "
            "dict of str → tensor can be cached"
        )
    entry = {"format": CACHE_FORMAT, "key": key, "sha256": fingerprint(value), "value": value}
    with atomic_open(path, "wb") as f:
        torch.save(entry, f)
    return value


def _load_entry(path: Path, key: str) -> Tensor | dict[str, Tensor] | None:
    """The value stored in ``path`` if the file is a cache entry for ``key`` whose payload still
    has its recorded SHA-256; ``None`` otherwise."""
    import torch

    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is recomputed, not trusted
        return None
    if not (
        isinstance(entry, dict)
        and entry.get("format") == CACHE_FORMAT
        and entry.get("key") == key
        and _storable(entry.get("value"))
    ):
        return None
    value = entry["value"]
    return value if fingerprint(value) == entry.get("sha256") else None
