"""The second experiment: the deep ReLU MLP of seed 002 (task ``"fashion-mlp"``), pruned by weight
and by unit, with and without targeted dropout and biases, analysed through Hessian-vector
products only (``td-analysis reproduce --experiment fashion-mlp``).

Per network (regulariser × bias × seed, trained in parallel processes):

* ``pruning.json``: loss and accuracy on the test split after the seed's per-layer weight and
  unit pruning (:func:`td_analysis.analysis.pruning.pruning_table`) at every k;
* ``taylor.json``: for every pruning (k > 0) the Taylor terms of the deleted vector d = θ − θ_pruned
  over all parameters (−∇ᵀd, ½dᵀHd by one HVP, OBD ½Σ Hᵢᵢdᵢ² with the exact diagonal) and the
  measured ΔE = E(θ − d) − E(θ), mean cross-entropy in float64 on ``analysis_examples`` holdout
  images, and Spearman's ρ between each estimator and the measured ΔE;
* ``coadaptation.json`` (one seed, one bias setting, every regulariser): the B × B block sums of
  θᵀ⊙H⊙θ over all weights ordered by |θ| (B HVPs, U never stored) and the layer × layer sums of
  the same matrix, over all weights and over the weights that pruning at k = 100·γ deletes.

The task definition (:mod:`td_analysis.training.tasks`) is the only place naming the data set and
the widths; everything here reads it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from td_analysis.analysis.coadaptation import (
    magnitude_order,
    pooled_coadaptation_record,
    projection_bytes,
)
from td_analysis.analysis.pruning import (
    pruning_table,
    reference_pruning_masks,
    validate_percent,
)
from td_analysis.analysis.taylor import (
    ESTIMATORS,
    deletion_vector_all,
    grouped_rank_correlations,
    taylor_records,
)
from td_analysis.curvature import HessianMemoryError, available_memory_bytes
from td_analysis.pipelines.common import (
    DTYPES,
    analysis_cache_path,
    collected,
    load_average,
    load_split,
    network_result,
    pooled_maps,
    read_cached_analysis,
)
from td_analysis.report.fashion import fashion_readme
from td_analysis.report.fashion_files import network_text as _network_text
from td_analysis.report.fashion_files import (
    training_length_study,
    write_differences,
    write_pruning,
    write_reports,
)
from td_analysis.training.loop import TrainConfig
from td_analysis.training.tasks import Task, get_task
from td_analysis.utils.io import (
    KEEP_IN_RESULT_FOLDER,
    atomic_write_json,
    atomic_write_text,
    staged_directory,
)

__all__ = [
    "FASHION_KS",
    "FASHION_REGULARISERS",
    "CONTROL_REGULARISERS",
    "fashion_regulariser",
    "PRUNING_KINDS",
    "FashionSettings",
    "network_config",
    "load_split",
    "deletion_vector_all",
    "taylor_records",
    "coadaptation_maps",
    "analyse_network",
    "analysis_path",
    "network_jobs",
    "rank_correlation_table",
    "write_outputs",
    "write_differences",
    "write_reports",
    "reproduce_fashion",
    "load_results",
]

FASHION_KS = (0, 25, 50, 60, 70, 80, 90, 95, 97, 99)
CONTROL_REGULARISERS = ("dropout", "dropconnect")
FASHION_REGULARISERS = ("none", "targeted-weight", "targeted-unit", *CONTROL_REGULARISERS)
PRUNING_KINDS = ("weight", "unit")


@dataclass
class FashionSettings:
    """What ``reproduce --experiment fashion-mlp`` runs; :meth:`quick` is the CI setting.

    ``epochs``/``hidden`` override the task's protocol and widths (``None``: the task's);
    ``train_limit``/``test_limit`` use only the first images of the train/test splits.
    The networks without biases are ``bias_off_regularisers`` × the first
    ``bias_off_seed_count`` seeds (``None``: all regularisers/seeds): the main comparisons
    (with biases) get 5 seeds, the rest 3.  ``pooled_regularisers`` get the pooled
    coadaptation maps (``None``: all).
    """

    task: str = "fashion-mlp"
    protocol: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    regularisers: tuple[str, ...] = FASHION_REGULARISERS
    biases: tuple[bool, ...] = (True, False)
    bias_off_seed_count: int | None = 3
    bias_off_regularisers: tuple[str, ...] | None = ("none", "targeted-weight", "targeted-unit")
    pooled_regularisers: tuple[str, ...] | None = ("none", "targeted-weight", "targeted-unit")
    ks: tuple[float, ...] = FASHION_KS
    epochs: int | None = None
    hidden: tuple[int, ...] | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    analysis_split: str = "holdout"
    analysis_examples: int = 500
    taylor_dtype: str = "float64"
    pooled_bins: int = 128
    pooled_dtype: str = "float32"
    pooled_bias: bool = True
    workers: int = 2

    @classmethod
    def quick(cls, **overrides) -> FashionSettings:
        """One seed, a 4× narrower network, 1 epoch on 6,000 images: the whole pipeline in
        well under two minutes."""
        defaults = dict(
            seeds=(0,),
            bias_off_seed_count=None,
            epochs=1,
            hidden=(250, 250, 125, 50),
            train_limit=6000,
            test_limit=2000,
            analysis_examples=300,
            pooled_bins=32,
        )
        defaults.update(overrides)
        return cls(**defaults)

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.ks = tuple(validate_percent(k) for k in self.ks)
        self.biases = tuple(bool(b) for b in self.biases)
        self.regularisers = tuple(self.regularisers)
        for name in ("bias_off_regularisers", "pooled_regularisers"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))
        if self.bias_off_seed_count is not None and self.bias_off_seed_count < 1:
            raise ValueError(f"bias_off_seed_count must be ≥ 1, got {self.bias_off_seed_count}")
        for name in ("bias_off_regularisers", "pooled_regularisers"):
            extra = [r for r in getattr(self, name) or () if r not in self.regularisers]
            if extra:
                raise ValueError(f"{name} {extra} are not among the regularisers")
        if self.hidden is not None:
            self.hidden = tuple(int(h) for h in self.hidden)
        task = get_task(self.task)
        task.protocol(self.protocol)  # raises on an unknown protocol
        for reg in self.regularisers:
            task.regulariser(reg)  # raises on an unknown regulariser
        if not self.seeds or not self.regularisers or not self.biases or not self.ks:
            raise ValueError("seeds, regularisers, biases and ks must not be empty")
        for name in ("taylor_dtype", "pooled_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(
                    f"{name} must be one of {tuple(DTYPES)}, got {getattr(self, name)}"
                )
        if self.analysis_examples < 1 or self.pooled_bins < 1 or self.workers < 1:
            raise ValueError("analysis_examples, pooled_bins and workers must be ≥ 1")
        if self.epochs is not None and self.epochs < 0:
            raise ValueError(f"epochs must be ≥ 0, got {self.epochs}")

    @property
    def task_def(self) -> Task:
        """The task, with ``hidden`` replaced when the settings override it."""
        task = get_task(self.task)
        return task if self.hidden is None else task.replace(hidden=self.hidden)

    def grid(self) -> list[tuple[str, bool, int]]:
        """Every network as ``(regulariser, bias, seed)``: all regularisers × seeds with
        biases; ``bias_off_regularisers`` × the first ``bias_off_seed_count`` seeds without."""
        out = []
        for reg in self.regularisers:
            for bias in self.biases:
                seeds = self.seeds
                if not bias:
                    if self.bias_off_regularisers is not None and (
                        reg not in self.bias_off_regularisers
                    ):
                        continue
                    seeds = seeds[: self.bias_off_seed_count]
                out += [(reg, bias, seed) for seed in seeds]
        return out

    @property
    def pooled_seed(self) -> int:
        """The seed whose networks get the (expensive) pooled coadaptation maps."""
        return self.seeds[0]

    def to_dict(self) -> dict:
        """A JSON-able dict of the settings."""
        return asdict(self)


# ----------------------------------------------------------------------------- per network
def network_config(
    settings: FashionSettings, regulariser: str, bias: bool, seed: int
) -> TrainConfig:
    """The :class:`TrainConfig` of one network of the experiment."""
    task = settings.task_def
    overrides: dict = {"regulariser": fashion_regulariser(task, regulariser), "bias": bias}
    overrides["seed"] = seed
    if settings.hidden is not None:
        overrides["hidden"] = settings.hidden
    if settings.epochs is not None:
        overrides["epochs"] = settings.epochs
    return task.config(settings.protocol, **overrides)


def fashion_regulariser(task: Task, name: str):
    """The :class:`~td_analysis.nn.dropout.RegulariserConfig` of regulariser ``name``: the task's
    targeted kinds at its (γ, α); the controls ``"dropout"`` and ``"dropconnect"`` at the same
    expected drop rate γ·α (the share of weights, or hidden units, a targeted step drops)."""
    if name in CONTROL_REGULARISERS:
        return task.regulariser(name, alpha=task.gamma * task.alpha)
    return task.regulariser(name)


def coadaptation_maps(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    bins: int,
    *,
    prune_k: float,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> dict:
    """Pooled B × B block sums of the |θ|-ordered θᵀ⊙H⊙θ over all weights, the layer × layer
    sums of the same matrix, and those over the weights deleted by weight pruning at ``prune_k``
    (mean loss; one operator for all of them)."""
    order = magnitude_order(model, "weights")
    masks = reference_pruning_masks(model, prune_k, "weight")
    return pooled_coadaptation_record(
        model, inputs, targets, order, masks, bins, prune_k=prune_k, dtype=dtype, progress=progress
    )


#: The settings that shape one network's analysis (the rest, e.g. ``seeds`` or ``workers``, do
#: not): part of the key of its cached result.
ANALYSIS_FIELDS = (
    "task",
    "protocol",
    "ks",
    "epochs",
    "hidden",
    "train_limit",
    "test_limit",
    "analysis_split",
    "analysis_examples",
    "taylor_dtype",
    "pooled_bins",
    "pooled_dtype",
)


def analysis_path(job: dict, checkpoint: str | Path) -> Path:
    """Where the analysis of ``job`` on the network in ``checkpoint`` is kept:
    ``<runs>/analysis/<run name>-<key>.json``, the key a hash of the network's config, the
    checkpoint's bytes and the settings that shape the analysis (:data:`ANALYSIS_FIELDS`), so
    a retrained network or changed settings are analysed again, never misread
    (:func:`~td_analysis.pipelines.common.analysis_cache_path`)."""
    from td_analysis.training.runs import run_name

    settings = job["settings"]
    fields = {
        "config": job["config"],
        "pooled": job["pooled"],
        "regulariser": job["regulariser"],
        **{k: settings.get(k) for k in ANALYSIS_FIELDS},
    }
    name = run_name(TrainConfig.from_dict(job["config"]))
    return analysis_cache_path(Path(job["runs_dir"]) / "analysis", name, fields, checkpoint)


def analyse_network(job: dict) -> dict:
    """Train (or load) one network, then its pruning records, Taylor records and (if asked)
    coadaptation maps.  Runs in a worker process; everything in and out is plain data.

    The result is kept next to the checkpoints (:func:`analysis_path`) and reused by a later
    run with the same network and analysis settings (``reused_analysis`` then says so): an
    interrupted ``reproduce`` continues where it stopped, also in the analysis."""

    from td_analysis.training.runs import checkpoint_path, train_or_load

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    settings = FashionSettings(**job["settings"])
    config = TrainConfig.from_dict(job["config"])
    root, dl = job["data_root"], job["download"]
    train = load_split(
        config, config.train_split, root=root, limit=settings.train_limit, download=dl
    )
    held = load_split(config, config.eval_split, root=root, download=dl)
    t_data = time.perf_counter() - t0
    reused_network = checkpoint_path(config, job["runs_dir"]).is_file()
    model = train_or_load(
        config,
        job["runs_dir"],
        data={config.train_split: train, config.eval_split: held},
        data_root=root,
        progress=False,
    )
    model.eval()
    t_train = time.perf_counter() - t0
    stages = {"data": t_data, "train": t_train - t_data}
    cached = analysis_path(job, checkpoint_path(config, job["runs_dir"]))
    result = read_cached_analysis(cached)
    if result is not None:
        return {
            **result,
            "train_seconds": t_train,
            "seconds": time.perf_counter() - t0,
            "stage_seconds": stages,
            "reused_network": reused_network,
            "reused_analysis": True,
        }
    result = _analyse(job, settings, config, model, t0, t_train)
    for name, seconds in result["stage_seconds"].items():  # the test and analysis splits' loads
        stages[name] = stages.get(name, 0.0) + seconds
    result["stage_seconds"] = stages
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cached, result)
    return {**result, "reused_network": reused_network, "reused_analysis": False}


def _analyse(
    job: dict, settings: FashionSettings, config: TrainConfig, model: nn.Module, t0, t_train
) -> dict:
    root, dl = job["data_root"], job["download"]
    task = settings.task_def
    x_test, y_test = load_split(
        config, task.test_split, root=root, limit=settings.test_limit, download=dl
    )
    tag = {"regulariser": job["regulariser"], "bias": config.bias, "seed": config.seed}
    clock = time.perf_counter()
    stages = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - clock
        clock = now

    lap("data")
    rows = pruning_table(model, x_test, y_test, settings.ks, PRUNING_KINDS)
    lap("pruning")
    records = [
        {
            **tag,
            "kind": r["kind"],
            "k": r["k"],
            "accuracy": r["accuracy"],
            "loss": r["loss"],
            "removed_share": r["removed_share"],
        }
        for r in rows
    ]
    xa, ya = load_split(
        config, settings.analysis_split, root=root, limit=settings.analysis_examples, download=dl
    )
    lap("data")
    taylor = [
        {**tag, **r}
        for r in taylor_records(model, xa, ya, settings.ks, dtype=DTYPES[settings.taylor_dtype])
    ]
    lap("taylor")
    maps = None
    if job["pooled"]:
        maps = pooled_maps(coadaptation_maps, model, xa, ya, tag, settings, task.gamma)
        lap("pooled")
    return network_result(tag, records, taylor, maps, t_train, t0, stage_seconds=stages)


# ----------------------------------------------------------------------------- summaries
def rank_correlation_table(taylor: Sequence[dict]) -> list[dict]:
    """Spearman ρ of each estimator vs the measured ΔE, per (regulariser, bias, kind) over all
    seeds and k (and ``"all"`` kinds together)."""
    return grouped_rank_correlations(taylor, ("regulariser", "bias"), ESTIMATORS)


# ----------------------------------------------------------------------------- outputs
def write_accuracy_curves(out: Path, records: list[dict], settings: FashionSettings) -> None:
    """``accuracy_vs_k.png/pdf``: accuracy vs k, weight and unit pruning, mean ± std bands."""
    from td_analysis.report import plotting

    fig = plotting.plot_accuracy_vs_k(
        records,
        title=f"{_network_text(settings)}: test accuracy after pruning the hidden layers "
        f"(mean ± std over {len(settings.seeds)} seed(s))",
    )
    plotting.save_figure(fig, out / "accuracy_vs_k.png")


def write_estimators(out: Path, taylor: list[dict], settings: FashionSettings) -> list[dict]:
    """``taylor.json`` and ``estimators.png``: Taylor estimates vs measured ΔE; returns ρ."""
    from td_analysis.report import plotting

    rho = rank_correlation_table(taylor)
    atomic_write_json(out / "taylor.json", {"records": taylor, "rank_correlations": rho})
    fig = plotting.plot_taylor_records(
        taylor,
        title=f"Taylor estimates vs measured ΔE of every pruning (mean loss, "
        f"{settings.analysis_examples:,} {settings.analysis_split} images, float64)",
    )
    plotting.save_figure(fig, out / "estimators.png", formats=("png",))
    return rho


def write_coadaptation(out: Path, maps: list[dict], settings: FashionSettings) -> None:
    """``coadaptation.json``, ``coadaptation_pooled.png`` (none vs targeted weight vs targeted
    unit) and ``coadaptation_layers.png`` (layer × layer sums)."""
    from td_analysis.report import plotting

    atomic_write_json(out / "coadaptation.json", maps)
    if not maps:
        return
    labels = [f"{m['regulariser']}" for m in maps]
    mats = [np.asarray(m["pooled"]) for m in maps]
    n = maps[0]["num_weights"]
    fig = plotting.coadaptation_panels(
        dict(zip(labels, mats, strict=True)),
        gamma=get_task(settings.task).gamma,
        suptitle=f"θᵀ⊙H⊙θ of all {n:,} weights ordered by |θ|, {settings.pooled_bins}×"
        f"{settings.pooled_bins} block sums (mean loss, {settings.analysis_examples:,} images, "
        f"seed {settings.pooled_seed}, bias {'on' if settings.pooled_bias else 'off'})",
    )
    plotting.save_figure(fig, out / "coadaptation_pooled.png", formats=("png",))
    fig = plotting.plot_layer_maps(
        {m["regulariser"]: np.asarray(m["layer_sums"]) for m in maps},
        {m["regulariser"]: np.asarray(m["pruned_layer_sums"]) for m in maps},
        maps[0]["layers"],
        prune_k=maps[0]["prune_k"],
    )
    plotting.save_figure(fig, out / "coadaptation_layers.png", formats=("png",))


def write_outputs(out: Path, results: dict, settings: FashionSettings, command: str) -> None:
    """Every file of ``figures/fashion_mlp/`` from the collected ``results``."""
    import matplotlib.pyplot as plt

    write_pruning(out, results["records"], settings, results["n_test"], command)
    write_accuracy_curves(out, results["records"], settings)
    results["rank_correlations"] = write_estimators(out, results["taylor"], settings)
    write_coadaptation(out, results["coadaptation"], settings)
    plt.close("all")
    summary = {k: v for k, v in results.items() if k not in ("records", "taylor", "coadaptation")}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(
        out / "README.md",
        fashion_readme(
            settings.to_dict(),
            network=_network_text(settings),
            command=command,
            summary=summary,
            training_length=training_length_study(out),
        ),
    )


def check_pooled_memory(settings: FashionSettings) -> None:
    """Refuse up front (:class:`HessianMemoryError`) a pooled projection that cannot fit."""
    task = settings.task_def
    widths = (task.in_features, *task.hidden, task.num_classes)
    p = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    if settings.pooled_bins > p:
        raise ValueError(f"pooled_bins must be ≤ the {p:,} weights, got {settings.pooled_bins}")
    itemsize = torch.empty((), dtype=DTYPES[settings.pooled_dtype]).element_size()
    need = projection_bytes(p, settings.pooled_bins, 1, itemsize)
    avail = available_memory_bytes("cpu")
    if avail is not None and need * max(1, min(settings.workers, 2)) > avail:
        raise HessianMemoryError(
            f"the pooled projection of {p:,} weights into {settings.pooled_bins:,} bins needs "
            f"{need / 1e9:.2f} GB per process but only {avail / 1e9:.2f} GB are available; "
            "use fewer bins"
        )


def network_jobs(
    settings: FashionSettings,
    *,
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    download: bool = False,
) -> list[dict]:
    """One :func:`analyse_network` job per network of ``settings.grid()``, the ones with
    pooled maps (the longest) first."""
    jobs = []
    pooled_regs = settings.pooled_regularisers or settings.regularisers
    for reg, bias, seed in settings.grid():
        config = network_config(settings, reg, bias, seed)
        pooled = (
            seed == settings.pooled_seed and bias == settings.pooled_bias and reg in pooled_regs
        )
        jobs.append(
            {
                "settings": settings.to_dict(),
                "config": config.to_dict(),
                "regulariser": reg,
                "runs_dir": str(runs_dir),
                "data_root": None if data_root is None else str(data_root),
                "download": download,
                "pooled": pooled,
            }
        )
    jobs.sort(key=lambda j: not j["pooled"])  # the longest jobs first
    return jobs


def reproduce_fashion(
    settings: FashionSettings | None = None,
    *,
    out_dir: str | Path = "figures/fashion_mlp",
    runs_dir: str | Path = "runs",
    data_root: str | Path | None = None,
    download: bool = False,
    progress: bool = True,
    command: str = "td-analysis reproduce --experiment fashion-mlp",
    scheduler: object = None,
) -> dict:
    """Train (or reuse) every network, analyse each, and write ``out_dir`` (swapped in whole at
    the end: an interrupted run leaves the previous results untouched).  Returns the summary.
    ``scheduler``: a Dask scheduler address (or ``distributed.Client``) whose cluster analyses
    the networks instead of ``settings.workers`` local processes
    (:func:`td_analysis.training.executors.map_jobs`; the same results)."""
    from td_analysis.training.executors import map_jobs
    from td_analysis.utils.progress import progress_bar

    settings = settings or FashionSettings()
    check_pooled_memory(settings)
    t0 = time.perf_counter()
    load_start = load_average()
    jobs = network_jobs(settings, runs_dir=runs_dir, data_root=data_root, download=download)
    # data present (or downloaded) once, before the workers start
    first = TrainConfig.from_dict(jobs[0]["config"])
    x_test, _ = load_split(
        first,
        settings.task_def.test_split,
        root=data_root,
        limit=settings.test_limit,
        download=download,
    )
    workers = max(1, min(settings.workers, len(jobs), os.cpu_count() or 1))
    bar = progress_bar(total=len(jobs), desc="fashion-mlp networks", disable=not progress)
    done = []
    if workers == 1 and scheduler is None:
        for job in jobs:
            done.append(analyse_network(job))
            bar.update()
    else:
        # Ctrl-C / SIGTERM stop the workers within seconds (not after their running jobs)
        # closing: Ctrl-C stops the workers now, not when the generator is collected
        with closing(
            map_jobs(analyse_network, jobs, processes=workers, scheduler=scheduler)
        ) as results:
            for _, result in results:
                done.append(result)
                bar.update()
    bar.close()
    key = {r: i for i, r in enumerate(settings.regularisers)}
    done.sort(key=lambda d: (key[d["tag"]["regulariser"]], not d["tag"]["bias"], d["tag"]["seed"]))
    results = {
        "command": command,
        "settings": settings.to_dict(),
        "network": _network_text(settings),
        "n_test": int(x_test.shape[0]),
        **collected(done),
        "network_seconds": [
            {
                **d["tag"],
                "train": d["train_seconds"],
                "total": d["seconds"],
                "stages": d.get("stage_seconds", {}),
            }
            for d in done
        ],
        "reused_networks": sum(bool(d.get("reused_network")) for d in done),
        "reused_analyses": sum(bool(d.get("reused_analysis")) for d in done),
    }
    # the training-length study (td_analysis.pipelines.training_length) shares the folder: keep it
    with staged_directory(out_dir, keep=(*KEEP_IN_RESULT_FOLDER, "training_length.*")) as staging:
        results["seconds"] = time.perf_counter() - t0
        results["load_average"] = [load_start, load_average()]
        write_outputs(Path(staging), results, settings, command)
    return results


def load_results(out_dir: str | Path = "figures/fashion_mlp") -> dict:
    """The results a finished run wrote to ``out_dir``, in the form :func:`reproduce_fashion`
    returns them (``summary.json`` plus ``records``, ``taylor`` and ``coadaptation``)."""
    import json

    out = Path(out_dir)
    missing = [
        f
        for f in ("summary.json", "pruning.json", "taylor.json", "coadaptation.json")
        if not (out / f).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{out} has no {', '.join(missing)}: run reproduce_fashion first")
    results = json.loads((out / "summary.json").read_text())
    results["records"] = json.loads((out / "pruning.json").read_text())
    results["taylor"] = json.loads((out / "taylor.json").read_text())["records"]
    results["coadaptation"] = json.loads((out / "coadaptation.json").read_text())
    return results
