"""Many independent training runs, in parallel processes, each saved as a checkpoint.

:func:`train_many` trains a list of :class:`~td_analysis.training.loop.TrainConfig` (e.g. every
regulariser × bias on/off × seed of an experiment) in ``processes`` worker processes with one
intra-op thread each, writes one checkpoint per config into a runs folder and reuses the
checkpoints of configs that were trained before.  A run depends on its config only (seeded
initialisation, shuffling and dropout draws; one thread), so the weights are bit-for-bit the same
whatever the number of processes.

Checkpoint names are :func:`run_name`: readable fields and a hash of the whole config, so two
configs never share a file and a changed config is retrained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from td_analysis.nets.models import DenseNet
from td_analysis.training.executors import available_cores, map_jobs
from td_analysis.training.loop import (
    TrainConfig,
    load_checkpoint,
    load_data,
    save_checkpoint,
    train,
)

__all__ = [
    "RunResult",
    "config_key",
    "run_name",
    "checkpoint_path",
    "train_or_load",
    "available_cores",
    "train_many",
    "train_one",
    "snapshot_paths",
]


@dataclass(frozen=True)
class RunResult:
    """One run of :func:`train_many`: where its checkpoint is and how it went."""

    config: TrainConfig
    path: Path
    metrics: dict
    seconds: float
    reused: bool


def config_key(config: TrainConfig) -> str:
    """12 hex digits of the SHA-256 of the config's JSON (sorted keys)."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_name(config: TrainConfig) -> str:
    """``{task}-{regulariser}[-ramp]-{bias|nobias}-seed{seed}-{key}``, a file-name-safe stem."""
    reg = config.regulariser
    parts = [
        config.task or config.dataset,
        reg.kind + ("-ramp" if reg.ramp_steps else ""),
        "bias" if config.bias else "nobias",
        f"seed{config.seed}",
        config_key(config),
    ]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


_DATA: dict[tuple, tuple[Tensor, Tensor]] = {}  # per worker process: splits already loaded
_GIVEN: dict[str, tuple[Tensor, Tensor]] = {}  # per worker process: splits passed in as data


def _set_given(data: dict[str, tuple[Tensor, Tensor]] | None) -> None:
    _GIVEN.clear()
    _GIVEN.update(data or {})


def _data(config: TrainConfig, split: str, root: str | None) -> tuple[Tensor, Tensor]:
    if split in _GIVEN:
        return _GIVEN[split]
    key = (config.dataset, split, config.preprocessing, root)
    if key not in _DATA:
        _DATA[key] = load_data(config, split, root=root)
    return _DATA[key]


def train_one(
    config: TrainConfig,
    path: str | Path,
    *,
    data_root: str | Path | None = None,
    progress: bool = False,
    snapshots: Sequence[int] = (),
) -> RunResult:
    """Train ``config`` and save its checkpoint to ``path`` (atomically); one thread at least.

    ``config.train_limit`` trains on the first N examples of the training split.
    ``snapshots``: epochs e < ``config.epochs`` whose networks are saved on the way, next to
    ``path`` under the name of ``replace(config, epochs=e)`` (:func:`snapshot_paths`): the same
    checkpoints a run of that shorter config would write.
    """
    if config.num_threads is None:
        torch.set_num_threads(1)
    root = None if data_root is None else str(data_root)
    x, y = _data(config, config.train_split, root)
    eval_data = _data(config, config.eval_split, root) if config.eval_split else None
    folder = Path(path).parent

    def save_snapshot(snap) -> None:
        metrics = {"history": snap.history, **snap.final, "snapshot_of": run_name(config)}
        save_checkpoint(checkpoint_path(snap.config, folder), snap.model, snap.config, metrics)

    t0 = time.perf_counter()
    result = train(
        config,
        train_data=(x, y),
        eval_data=eval_data,
        progress=progress,
        snapshots=[e for e in snapshots if e < config.epochs],
        on_snapshot=save_snapshot,
    )
    seconds = time.perf_counter() - t0
    metrics = {"history": result.history, **result.final, "train_seconds": seconds}
    save_checkpoint(path, result.model, config, metrics)
    return RunResult(config, Path(path), metrics, seconds, reused=False)


def checkpoint_path(config: TrainConfig, runs_dir: str | Path) -> Path:
    """Where :func:`train_or_load` keeps the checkpoint of ``config``:
    ``<runs>/<task>-<regulariser>-<bias>-seed<seed>-<config hash>.pt``, the one name scheme of
    ``train`` and ``reproduce`` (:func:`run_name`): the name says the task."""
    return Path(runs_dir) / f"{run_name(config)}.pt"


def snapshot_paths(
    config: TrainConfig, runs_dir: str | Path, snapshots: Sequence[int]
) -> dict[int, Path]:
    """Epoch → checkpoint of the shorter runs a run of ``config`` saves on the way
    (``snapshots`` below ``config.epochs``; :func:`train_one`)."""
    return {
        int(e): checkpoint_path(dataclasses.replace(config, epochs=int(e)), runs_dir)
        for e in sorted(set(snapshots))
        if 1 <= e < config.epochs
    }


def train_or_load(
    config: TrainConfig,
    runs_dir: str | Path,
    *,
    data: dict[str, tuple[Tensor, Tensor]] | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
) -> DenseNet:
    """The trained model of ``config``: loaded from ``runs_dir`` if a checkpoint of exactly this
    config exists, else trained and saved. The file name is ``train``'s
    (:func:`checkpoint_path`: task, regulariser, bias, seed, config hash)."""
    path = checkpoint_path(config, runs_dir)
    if path.is_file():
        ckpt = load_checkpoint(path)
        if ckpt.config.to_dict() == config.to_dict():
            return ckpt.model
    data = data or {}
    result = train(
        config,
        train_data=data.get(config.train_split),
        eval_data=data.get(config.eval_split),
        data_root=data_root,
        progress=progress,
    )
    save_checkpoint(path, result.model, config, {"history": result.history, **result.final})
    return result.model


def _init_worker(data: dict[str, tuple[Tensor, Tensor]] | None) -> None:
    torch.set_num_threads(1)
    _set_given(data)


def _worker(
    config_dict: dict, path: str, data_root: str | None, snapshots: Sequence[int] = ()
) -> tuple[str, dict, float]:
    result = train_one(
        TrainConfig.from_dict(config_dict), path, data_root=data_root, snapshots=snapshots
    )
    return str(result.path), result.metrics, result.seconds


def _worker_job(job: tuple) -> tuple[str, dict, float]:
    return _worker(*job)


def _reusable(path: Path, config: TrainConfig) -> dict | None:
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
    except ValueError:
        return None  # corrupt or foreign: trained again and replaced atomically
    return ckpt.metrics if ckpt.config.to_dict() == config.to_dict() else None


def train_many(
    configs: Sequence[TrainConfig],
    runs_dir: str | Path,
    *,
    processes: int | None = None,
    data_root: str | Path | None = None,
    reuse: bool = True,
    progress: bool = True,
    data: dict[str, tuple[Tensor, Tensor]] | None = None,
    in_process: bool = False,
    snapshots: Sequence[int] = (),
    scheduler: Any = None,
) -> list[RunResult]:
    """Train every config (in parallel processes) into ``runs_dir``; results in config order.

    Args:
        configs: the runs; each is trained with ``config.num_threads`` intra-op threads (1 by
            default, also when it is ``None``).
        runs_dir: folder of the checkpoints ``{run_name(config)}.pt``.
        processes: worker processes (default: one per available core, at most one per run to
            train).  Every run is trained in a fresh worker process of its own, so its weights
            do not depend on the number of processes nor on the runs before it (MKL's products
            can differ in the last bits between processes with different histories).  The
            workers inherit this process's environment, the pinned CPU kernels with it (the
            ``td-analysis`` command pins them before torch starts; a spawned worker imports
            torch before any code of ours runs in it, so it cannot pin them itself:
            :mod:`td_analysis.utils.reproducibility`).
        data_root: data folder (:func:`td_analysis.data.load_dataset`); each worker loads a
            split once.
        reuse: take an existing checkpoint of exactly the same config instead of training.
        data: splits given in memory, ``{"train": (x, y), "holdout": (x, y)}``, used instead of
            loading them (sent once to each worker); the others are loaded.
        progress: one line per finished run on stderr (and a bar over steps when in-process).
        in_process: train one run after the other in this process instead (no start-up cost,
            for small runs; weights equal to a worker's up to MKL's last-bit differences).
        snapshots: epochs whose networks each run also saves on the way, as the checkpoints
            of the same config with fewer epochs (:func:`snapshot_paths`).  A run is reused
            only when its snapshots exist too.
        scheduler: a Dask scheduler address (``tcp://host:8786``) or ``distributed.Client``:
            the runs are trained on that cluster instead of local processes (``processes`` is
            then ignored), each in a fresh process with this process's kernel and thread
            settings, so the checkpoints are bit-for-bit the local ones
            (:func:`td_analysis.training.executors.map_jobs`).  ``runs_dir`` must be a folder every
            worker sees.
    """
    configs = list(configs)
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise TypeError(f"train_many takes TrainConfig objects, got {type(c).__name__}")
    if processes is not None and processes < 1:
        raise ValueError(f"processes must be ≥ 1, got {processes}")
    if in_process and scheduler is not None:
        raise ValueError("in_process trains here: it cannot go with a scheduler")
    runs_dir = Path(runs_dir)
    paths = [runs_dir / f"{run_name(c)}.pt" for c in configs]
    if len(set(paths)) != len(paths):
        raise ValueError("train_many got the same config twice")
    results: list[RunResult | None] = [None] * len(configs)
    todo = []
    for i, (c, p) in enumerate(zip(configs, paths, strict=True)):
        metrics = _reusable(p, c) if reuse else None
        if metrics is not None and snapshots:
            snaps = snapshot_paths(c, runs_dir, snapshots)
            if any(
                _reusable(sp, dataclasses.replace(c, epochs=e)) is None for e, sp in snaps.items()
            ):
                metrics = None
        if metrics is not None:
            results[i] = RunResult(c, p, metrics, 0.0, reused=True)
        else:
            todo.append(i)
    if processes is None:
        processes = available_cores()
    processes = max(1, min(processes, len(todo)))
    root = None if data_root is None else str(data_root)
    t_start = time.perf_counter()

    def report(i: int, done: int) -> None:
        if not progress:
            return
        r = results[i]
        acc = r.metrics.get("eval_accuracy")
        shown = f"{r.config.eval_split} accuracy {acc:.2%}, " if acc is not None else ""
        print(
            f"trained {done}/{len(todo)}: {r.path.stem} ({shown}{r.seconds:.0f} s; "
            f"{time.perf_counter() - t_start:.0f} s elapsed)",
            file=sys.stderr,
            flush=True,
        )

    if in_process or not todo:
        saved = dict(_GIVEN)
        _set_given(data)
        try:
            for done, i in enumerate(todo, 1):
                results[i] = train_one(
                    configs[i], paths[i], data_root=root, progress=progress, snapshots=snapshots
                )
                report(i, done)
        finally:
            _set_given(saved)
    else:
        runs_dir.mkdir(parents=True, exist_ok=True)
        # one fresh process per run: a run never depends on what its worker did before;
        # Ctrl-C / SIGTERM stop the workers within seconds
        jobs = [
            (configs[i].to_dict(), str(paths[i].absolute()), root, tuple(snapshots)) for i in todo
        ]
        runs = map_jobs(
            _worker_job,
            jobs,
            processes=processes,
            scheduler=scheduler,
            fresh=True,
            initializer=_init_worker,
            initargs=(data,),
        )
        with closing(runs):  # Ctrl-C here stops the workers now, not when ``runs`` is collected
            for done, (j, (_, metrics, seconds)) in enumerate(runs, 1):
                i = todo[j]
                results[i] = RunResult(configs[i], paths[i], metrics, seconds, reused=False)
                report(i, done)
    return [r for r in results if r is not None]
