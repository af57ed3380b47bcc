"""What the experiment pipelines share: the analysis precisions by name, each split of a task's
data set preprocessed as trained (cached per process), and the machine's load for the run's
summary.  The analysis itself (pruning records, Taylor records, pooled coadaptation) is in
:mod:`td_analysis.analysis`; a pipeline names its grid and outputs."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from td_analysis.training.config import TrainConfig
from td_analysis.training.loop import load_data

__all__ = [
    "DTYPES",
    "analysis_cache_path",
    "collected",
    "load_average",
    "load_split",
    "network_result",
    "pooled_maps",
    "read_cached_analysis",
]

#: The precisions of the Taylor and pooled analyses by the names settings use.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_average() -> float | None:
    """The 1-minute load average (``None`` where the OS has none): a busy machine explains a
    slow run."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _load(dataset: str, preprocessing: str, in_features: int, split: str, root, limit, download):
    config = TrainConfig(dataset=dataset, preprocessing=preprocessing, in_features=in_features)
    x, y = load_data(config, split, root=root, download=download)
    return (x[:limit], y[:limit]) if limit else (x, y)


def load_split(
    config: TrainConfig,
    split: str,
    *,
    root: str | Path | None = None,
    limit: int | None = None,
    download: bool = False,
) -> tuple[Tensor, Tensor]:
    """Split ``split`` of the network's data set, preprocessed as trained (first ``limit``);
    cached per process (every network of a task shares its data; do not modify in place)."""
    root = None if root is None else str(root)
    return _load(
        config.dataset, config.preprocessing, config.in_features, split, root, limit, download
    )


def analysis_cache_path(
    folder: str | Path, stem: str, fields: dict, checkpoint: str | Path
) -> Path:
    """``<folder>/<stem>-<key>.json``: where one network's analysis is kept, the key the first
    12 hex digits of SHA-256 over ``fields`` (what shapes the analysis) and the checkpoint's
    own SHA-256, so a retrained network or other settings are analysed again, never misread."""
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    payload = {**fields, "checkpoint": digest}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return Path(folder) / f"{stem}-{key[:12]}.json"


def read_cached_analysis(path: Path) -> dict | None:
    """The kept analysis at ``path``, or ``None`` when there is none or it cannot be read (it is
    then analysed again and replaced atomically)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pooled_maps(maps_fn, model, x: Tensor, y: Tensor, tag: dict, settings, gamma: float, **kw):
    """One network's pooled coadaptation maps, tagged: ``maps_fn(model, x, y, bins,
    prune_k=100·γ, dtype=…, **kw)`` with the experiment's ``settings.pooled_bins`` and
    ``settings.pooled_dtype`` (the pruned set at the training γ: the weights targeted dropout
    targets)."""
    maps = maps_fn(
        model,
        x,
        y,
        settings.pooled_bins,
        prune_k=100 * gamma,
        dtype=DTYPES[settings.pooled_dtype],
        **kw,
    )
    return {**tag, **maps}


def network_result(
    tag: dict, records: list, taylor: list, maps: dict | None, t_train: float, t0: float, **extra
) -> dict:
    """What a per-network job of an experiment returns (plain data, from a worker process):
    its tag, pruning and Taylor records, pooled maps (or ``None``), seconds spent training and
    in all (``t0``: ``time.perf_counter()`` at the job's start), and ``extra`` fields."""
    import time

    return {
        "tag": tag,
        **extra,
        "records": records,
        "taylor": taylor,
        "coadaptation": maps,
        "train_seconds": t_train,
        "seconds": time.perf_counter() - t0,
    }


def collected(done: list[dict]) -> dict:
    """The per-network results of :func:`network_result` merged, in their order: every pruning
    record, every Taylor record and the pooled maps of the networks that have them."""
    return {
        "records": [r for d in done for r in d["records"]],
        "taylor": [r for d in done for r in d["taylor"]],
        "coadaptation": [d["coadaptation"] for d in done if d["coadaptation"]],
    }
