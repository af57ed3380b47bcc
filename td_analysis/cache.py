"""On-disk cache of heavy results (Hessians, coadaptation matrices), keyed by content.

The key is a SHA-256 over the model's parameters and buffers (bytes), the data (bytes) and the
call's arguments, so a changed model or data set never reuses a stale result.  Entries are
written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from td_analysis.io import atomic_open

__all__ = ["default_cache_dir", "fingerprint", "cached"]


def default_cache_dir() -> Path:
    """``$TD_ANALYSIS_CACHE``, else ``$XDG_CACHE_HOME/td_analysis/results`` (``~/.cache``)."""
    if os.environ.get("TD_ANALYSIS_CACHE"):
        return Path(os.environ["TD_ANALYSIS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "td_analysis" / "results"


def _update(h: Any, obj: Any) -> None:
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
    if not enabled:
        return compute()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{name}-{fingerprint(name, *parts)[:24]}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a corrupt entry is recomputed, not trusted
            path.unlink(missing_ok=True)
    value = compute()
    if not _storable(value):
        raise TypeError(
            f"cached({name!r}): compute() returned {type(value).__name__}; only a tensor or a "
            "dict of str → tensor can be cached"
        )
    with atomic_open(path, "wb") as f:
        torch.save(value, f)
    return value
